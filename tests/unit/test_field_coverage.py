"""Every field of both specs does something: changing it changes what runs, or how results are judged.

The walk is generic: it visits every leaf field of QuantJobSpec and ServeBenchmarkSpec (recursively; the
`Engine` model is the one generated from the registered engines, per-engine options included) and, for
each, builds specs that differ only in that field, from a few minimal valid contexts (one per kind of run:
each engine, a context sweep, an endpoint, a QuantJob reference; GGUF and llm-compressor QuantJobs with
and without scoring). The candidate values come from the field's type (literals, bounds, booleans) or
from a small table where the type alone cannot give a valid one. A field is covered when two specs that
the apiserver accepts (full local validation: schema and CEL, `servelab.api.validate`) differ in:

- what runs: the objects the pure core decides on a fresh run (`servelab.core.decide_*` with
  `cluster_site(Settings())`, rendered by `controller.render.decision_objects`: server Deployment and
  Service, Jobs), every plan step rendered as its Job (server command, workers' argv/env), the
  teardown of a finished or failed run, and a QuantJob's scoring children;
- how results are judged: the verdict on canned results (spec.slo, spec.baseline, QuantJob acceptance).

What the backends look up by name (a referenced QuantJob, a baseline) comes from a small store, as
`controller.kube` reads them. Fields that change neither are either refused at admission or listed in
ALLOWED with the reason. A new field without coverage fails here; so does a stale ALLOWED entry.
"""

from __future__ import annotations

import copy
import json
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any, Literal, get_args, get_origin

import pytest
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from servelab.api.base import ApiModel
from servelab.api.quantjob import QuantJobSpec, QuantJobStatus
from servelab.api.results import (
    EvalScore,
    LatencyPercentiles,
    LoadPointResult,
    PointPercentiles,
    QuantVariantResult,
)
from servelab.api.servebenchmark import ServeBenchmarkSpec, ServeBenchmarkStatus
from servelab.api.validate import SpecError, validate_object
from servelab.controller import render
from servelab.controller.kube import cluster_site
from servelab.controller.settings import Settings
from servelab.core import (
    Observed,
    Owner,
    ServerState,
    decide_benchmark,
    decide_quantjob,
    plan_benchmark,
    resolve_quantjob_model,
    server_gpus,
)
from servelab.engines import ENGINES, ServedModel
from servelab.plan import quant_score_runs, served_model
from servelab.verdict import benchmark_verdict, quant_verdict

pytestmark = pytest.mark.unit

NOW = datetime(2026, 1, 1, tzinfo=UTC)
SETTINGS = Settings()
SITE = cluster_site(SETTINGS)
UNSET = object()
ITEM = "[]"  # a path segment: the first item of a list of objects

# Fields that change neither what runs nor how results are judged, and why they exist anyway.
ALLOWED: dict[str, str] = {
    "ServeBenchmark spec.load.api": "a single value (openai): evalscope's --api, always sent",
    "ServeBenchmark spec.evaluations[].name": "a display name: the eval step's title in status.progress "
    "and Events (what runs is the same; a QuantJob's passes it to its scoring children's specs)",
}

# ---- minimal valid contexts -----------------------------------------------------------------------------
LOAD = {"parallel": [1], "number": [2]}
HF = {"huggingFace": {"id": "org/model"}}
SB_BASES: list[dict[str, Any]] = [
    {"model": HF, "engine": {"name": "vllm"}, "load": LOAD},
    {"model": HF, "engine": {"name": "sglang"}, "load": LOAD},
    {"model": HF, "engine": {"name": "llamacpp"}, "load": LOAD},
    {"model": {"path": "/m"}, "engine": {"name": "vllm"}, "contextSweep": {"depths": [0]}},
    {"model": HF, "engine": {"name": "vllm"}, "evaluations": [{"datasets": [{"name": "gsm8k"}]}]},
    {"quantJobRef": {"name": "qj"}, "engine": {"name": "llamacpp"}, "load": LOAD},
    {"endpoint": {"url": "http://e:8000", "servedModelName": "m", "tokenizer": "/tok"}, "engine": {"name": "vllm"},
     "load": LOAD},
    {"model": {"path": "/m.gguf"}, "engine": {"name": "llamacpp"}, "llamaBench": {}},
]  # fmt: skip
GGUF = {"model": HF, "method": "gguf", "gguf": {"imatrix": False, "variants": [{"type": "Q4_K_M"}]},
        "output": {"pvc": {"claimName": "models", "path": "out"}}}  # fmt: skip
GPTQ = {"model": HF, "method": "gptq", "compressor": {}, "calibration": {"source": {"path": "/c.txt"}},
        "output": {"path": "/out"}}  # fmt: skip
SCORE = {"evalscope": {"datasets": [{"name": "gsm8k"}]}}
QJ_BASES: list[dict[str, Any]] = [GGUF, GPTQ, {**GGUF, "evaluation": SCORE}, {**GPTQ, "evaluation": SCORE}]

# Required fields of an object created on the way to a leaf, by model.
REQUIRED: dict[str, dict[str, Any]] = {
    "ModelSource": HF,
    "HuggingFaceSource": {"id": "org/model"},
    "ModelScopeSource": {"id": "org/model"},
    "HuggingFaceDataset": {"id": "org/data"},
    "DataSource": {"path": "/d.txt"},
    "PvcSource": {"claimName": "models"},
    "ConfigMapKeyRef": {"name": "cm", "key": "k"},
    "SecretKeyRef": {"name": "sec"},
    "EnvVar": {"name": "X"},
    "Toleration": {"key": "gpu"},
    "SpeculativeDecoding": {"method": "ngram"},
    "Endpoint": {"url": "http://e:8000", "servedModelName": "m", "tokenizer": "/tok"},
    "QuantJobRef": {"name": "qj"},
    "Load": LOAD,
    "QuantSpeed": {"concurrency": [1], "requests": [2]},
    "ContextSweep": {"depths": [0]},
    "Evaluation": {"datasets": [{"name": "gsm8k"}]},
    "EvalscopeDataset": {"name": "gsm8k"},
    "Calibration": {"source": {"path": "/c.txt"}},
    "PerplexityEval": {"text": {"path": "/e.txt"}},
    "GgufOptions": {"variants": [{"type": "Q4_K_M"}]},
    "GgufVariant": {"type": "Q4_K_M"},
    "Slo": {"ttftSeconds": 1.0},
    "Baseline": {"name": "base"},
    "Acceptance": {"maxMeanKld": 0.1},
    "ScoreDrop": {"dataset": "gsm8k", "maxDrop": 1.0},
    "Engine": {"name": "vllm"},
}
# Objects of which exactly one key may be set: creating one key drops its siblings.
ONE_OF: dict[str, set[str]] = {
    "ModelSource": {"huggingFace", "modelScope", "pvc", "path"},
    "DataSource": {"huggingFace", "path", "pvc", "configMap"},
    "OutputLocation": {"pvc", "path"},
    "Baseline": {"name", "configMapName"},
    "ServeBenchmarkSpec": {"model", "quantJobRef", "endpoint"},
}
# Values where the type alone cannot give a valid one (wire paths, `[]` for a list item).
VALUES: dict[str, list[Any]] = {
    "spec.endpoint.url": ["http://e:8000", "https://other:443/v1"],
    "spec.endpoint.metricsUrl": ["http://e:8000/metrics"],
    "spec.model.modelScope.id": ["org/model", "org/alt"],
    "spec.quantJobRef.name": ["qj", "alt"],
    "spec.quantJobRef.variant": ["Q8_0", "F16"],
    "spec.baseline.name": ["base", "alt"],
    "spec.baseline.configMapName": ["base", "alt"],
    "spec.evaluation.variants": [["Q4_K_M"], ["F16"]],
    "spec.placement.affinity": [{"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [{"key": "k", "operator": "Exists"}]}]}}}],
    "spec.load.datasetPath": ["/prompts-a.txt", "/prompts-b.txt"],
    "spec.compressor.scheme": ["W4A16", "W8A16"],
    "spec.load.parallel": [[1], [2]],
    "spec.load.number": [[2], [3]],
    "spec.evaluation.speed.concurrency": [[1], [2]],
    "spec.evaluation.speed.requests": [[2], [3]],
    "engine.transformers.device": ["cpu", "cuda:1"],
    "engine.ollama.keepAlive": ["5m", "-1"],
    "engine.speculative.model": ["/draft.gguf", "/other.gguf"],
    "spec.evaluations[].datasets[].name": ["gsm8k", "math_500"],
    "spec.evaluation.evalscope.datasets[].name": ["gsm8k", "math_500"],
    "spec.acceptance.maxScoreDrop[].dataset": ["gsm8k", "math_500"],
    "spec.acceptance.maxScoreDrop[].metric": ["acc", "mean_acc"],
}  # fmt: skip
# Siblings a leaf needs to be valid (relative to the leaf's parent object).
SIBLINGS: dict[str, dict[str, Any]] = {
    "spec.placement.tolerations[].tolerationSeconds": {"effect": "NoExecute"},
    "spec.load.datasetPath": {"dataset": "custom"},
    "spec.load.maxRelativeSpread": {"repetitions": 2},
}
# Spec-level patches a leaf needs to be valid (e.g. an importance matrix needs calibration data).
PATCHES: dict[str, dict[str, Any]] = {
    "spec.gguf.imatrix": {"calibration": {"source": {"path": "/c.txt"}}},
    "spec.gguf.variants[].imatrix": {"calibration": {"source": {"path": "/c.txt"}}},
}
# Fields that cannot be set in this kind of resource: every spec setting them is refused at admission.
REFUSED: dict[str, str] = {
    "QuantJob spec.model.huggingFace.file": "the quantizers convert a whole repository",
    "ServeBenchmark spec.images.quantize": "the QuantJob's quantizer image: a ServeBenchmark runs none",
}
STRINGS = ["alt", "other", "3Gi", "org/alt", "http://alt:8000"]


# ---- the walk ---------------------------------------------------------------------------------------------
def _unwrap(t: Any) -> Any:
    origin = get_origin(t)
    if origin is typing.Annotated:
        return _unwrap(get_args(t)[0])
    if origin in (typing.Union, types.UnionType):
        args = [a for a in get_args(t) if a is not type(None)]
        return _unwrap(args[0]) if len(args) == 1 else t
    return t


def _model(t: Any) -> type[BaseModel] | None:
    return t if isinstance(t, type) and issubclass(t, BaseModel) else None


@dataclass(frozen=True)
class Leaf:
    kind: str
    path: tuple[str, ...]  # wire names from spec, ITEM for the first item of a list
    models: tuple[type[BaseModel], ...]  # the model of each object on the way (spec's first)
    info: FieldInfo

    @property
    def name(self) -> str:
        return f"{self.kind} " + ".".join(("spec", *self.path)).replace("." + ITEM, ITEM)


def leaves(kind: str, model: type[BaseModel], path: tuple[str, ...] = (),
           models: tuple[type[BaseModel], ...] = ()) -> Iterator[Leaf]:  # fmt: skip
    for name, info in model.model_fields.items():
        key = info.alias or name
        t = _unwrap(info.annotation)
        sub = _model(t)
        if sub is not None:
            yield from leaves(kind, sub, (*path, key), (*models, model))
            continue
        if get_origin(t) is list and (item := _model(_unwrap(get_args(t)[0]))) is not None:
            yield from leaves(kind, item, (*path, key, ITEM), (*models, model))
            continue
        yield Leaf(kind, (*path, key), (*models, model), info)


def candidates(leaf: Leaf) -> list[Any]:
    dotted = leaf.name.split(" ", 1)[1]
    engine = dotted[dotted.index("engine.") :] if "engine." in dotted else None  # either kind's engine
    for key in (dotted, engine):
        if key in VALUES:
            return VALUES[key]
    t = _unwrap(leaf.info.annotation)
    if get_origin(t) is Literal:
        return list(get_args(t))
    if t is bool:
        return [True, False]
    lo, hi = _bounds(leaf.info)
    if t is int:
        lo_i, hi_i = int(lo if lo is not None else 0), int(hi if hi is not None else 1 << 20)
        d = leaf.info.default if isinstance(leaf.info.default, int) else 1
        return sorted({v for v in (lo_i, lo_i + 1, 2, 3, 16, d + 1, 2 * d, hi_i) if lo_i <= v <= hi_i})
    if t is float:
        return [v for v in (0.5, 0.9, 2.0, 50.0) if (lo is None or v > lo) and (hi is None or v <= hi)][:3]
    if t is str:
        return STRINGS
    if get_origin(t) is list:
        item = _unwrap(get_args(t)[0])
        return [[2], [4, 8]] if item is int else [["alt"], ["Linear", "alt"]]
    if get_origin(t) is dict:
        return [{"alt": "v"}]
    raise AssertionError(f"{leaf.name}: no candidate values for {t}; add them to VALUES")


def _bounds(info: FieldInfo) -> tuple[float | None, float | None]:
    lo = hi = None
    for m in info.metadata:
        for attr in ("ge", "gt"):
            if getattr(m, attr, None) is not None:
                lo = getattr(m, attr) + (1e-9 if attr == "gt" else 0)
        for attr in ("le", "lt"):
            if getattr(m, attr, None) is not None:
                hi = getattr(m, attr) - (1e-9 if attr == "lt" else 0)
    return lo, hi


# ---- building specs ---------------------------------------------------------------------------------------
def context(base: dict[str, Any], leaf: Leaf) -> tuple[dict[str, Any], dict[str, Any]]:
    """The base with every object on the way to the leaf present (required fields filled, one-of
    siblings dropped); returns (spec, the leaf's parent object in it)."""
    spec = copy.deepcopy(base)
    obj: dict[str, Any] = spec
    path = leaf.path
    for i, key in enumerate(path[:-1]):
        if key == ITEM:
            continue
        _drop_siblings(obj, _model_at(leaf, i), key)
        child = REQUIRED.get(_model_at(leaf, i + 1).__name__, {})
        if path[i + 1] == ITEM:
            items = obj.setdefault(key, [])
            if not items:
                items.append(copy.deepcopy(child))
            obj = items[0]
        else:
            obj = obj.setdefault(key, copy.deepcopy(child))
    obj.update(copy.deepcopy(SIBLINGS.get(leaf.name.split(" ", 1)[1], {})))
    _drop_siblings(obj, leaf.models[-1], path[-1])
    return spec, obj


def _drop_siblings(obj: dict[str, Any], model: type[BaseModel], key: str) -> None:
    group = ONE_OF.get(model.__name__, set())
    for other in group - {key} if key in group else ():
        obj.pop(other, None)


def _model_at(leaf: Leaf, i: int) -> type[BaseModel]:
    """The model of the object that leaf.path[:i] reaches (models[0] is the spec's)."""
    return leaf.models[sum(1 for k in leaf.path[:i] if k != ITEM)]


def variants(kind: str, base: dict[str, Any], leaf: Leaf) -> list[tuple[Any, dict[str, Any]]]:
    base = {**base, **copy.deepcopy(PATCHES.get(leaf.name.split(" ", 1)[1], {}))}
    try:
        spec, parent = context(base, leaf)
    except (IndexError, KeyError, AttributeError, TypeError):
        return []
    out = []
    key = leaf.path[-1]
    for value in [UNSET, *candidates(leaf)]:
        parent_copy = copy.deepcopy(parent)
        if value is UNSET:
            parent.pop(key, None)
        else:
            parent[key] = copy.deepcopy(value)
        out.append((value, copy.deepcopy(spec)))
        parent.clear()
        parent.update(parent_copy)
    return out


SPEC_MODELS: dict[str, type[ApiModel]] = {"ServeBenchmark": ServeBenchmarkSpec, "QuantJob": QuantJobSpec}


def typed(kind: str, spec: dict[str, Any]) -> ApiModel | None:
    try:
        return SPEC_MODELS[kind].model_validate(spec, by_alias=True, by_name=False)
    except ValidationError:
        return None


@cache
def _admitted(kind: str, wire: str) -> bool:
    body = {"apiVersion": "servelab.dev/v1alpha1", "kind": kind, "metadata": {"name": "cov"},
            "spec": json.loads(wire)}  # fmt: skip
    try:
        validate_object(body)
    except SpecError:
        return False
    return True


def admitted(kind: str, spec: dict[str, Any]) -> bool:
    return _admitted(kind, json.dumps(spec, sort_keys=True))


# ---- what runs, and how results are judged -----------------------------------------------------------------
def _qj_store(name: str) -> dict[str, Any]:
    spec = {**GGUF, "output": {"pvc": {"claimName": "models", "path": name}},
            "gguf": {"imatrix": False, "variants": [{"type": "Q4_K_M"}, {"type": "Q8_0"}]}}  # fmt: skip
    out = f"/models/models/{name}"
    status = {"phase": "Succeeded", "base": {"name": "F16", "path": f"{out}/model-f16.gguf"},
              "variants": [{"name": t, "path": f"{out}/model-{t}.gguf"} for t in ("Q4_K_M", "Q8_0")]}  # fmt: skip
    return {"spec": spec, "status": status}


QUANTJOBS = {n: _qj_store(n) for n in ("qj", "alt")}


def _point(c: int, scale: float) -> LoadPointResult:
    def pct(base: float) -> LatencyPercentiles:
        return LatencyPercentiles(p50=base, p90=base * 1.5, p95=base * 2, p99=base * 3)

    return LoadPointResult(
        concurrency=c, requests=4 * c, succeeded=4 * c - 1, success_rate=(4 * c - 1) / (4 * c),
        output_tokens_per_second=100.0 * c * scale, avg_ttft_seconds=0.2 * c, p99_ttft_seconds=0.6 * c * scale,
        p99_tpot_seconds=0.03 * scale, p99_latency_seconds=2.0 * scale, valid=True,
        percentiles=PointPercentiles(ttft_seconds=pct(0.2 * c * scale), tpot_seconds=pct(0.01 * scale),
                                     latency_seconds=pct(0.7 * scale)),
    )  # fmt: skip


def _results(spec: ServeBenchmarkSpec, scale: float) -> list[LoadPointResult]:
    return [_point(c, scale) for c in (spec.load.parallel if spec.load else [1, 4])]


def _baseline(spec: ServeBenchmarkSpec) -> dict[str, Any] | None:
    b = spec.baseline
    name = b and (b.name or b.config_map_name)
    if not name:
        return None
    scale = {"base": 1.0, "alt": 2.0}.get(name)
    if scale is None:
        return None
    status = ServeBenchmarkStatus(phase="Succeeded", results=_results(spec, scale))
    return {"spec": spec.to_wire(), "status": status.to_wire()}


def benchmark_outcome(spec: ServeBenchmarkSpec) -> Any:
    owner = Owner("ServeBenchmark", "cov", "ns", "uid", 1)
    qj = QUANTJOBS.get(spec.quant_job_ref.name) if spec.quant_job_ref else None
    d = decide_benchmark(owner, spec, Observed(generation=1, status={}, now=NOW, quantjob=qj), SITE)
    objects, deleted = render.decision_objects(owner, spec, d, SETTINGS)
    out: dict[str, Any] = {"objects": objects, "deleted": deleted}
    model: ServedModel | None = None
    if spec.endpoint:
        model = ServedModel(spec.endpoint.url, spec.endpoint.tokenizer, name=spec.endpoint.served_model_name)
    elif spec.model:
        model = served_model(spec.model, SITE.model_root, name=owner.name, engine=spec.engine.name)
    elif qj is not None:
        model = resolve_quantjob_model(spec, qj, SITE.model_root)[0]
    if model is not None:  # every step as the Job it becomes
        source = spec.model or (
            resolve_quantjob_model(spec, qj, SITE.model_root)[2] if qj is not None else None
        )
        plan = plan_benchmark(owner, spec, model, SITE, source)
        out["steps"] = [render.benchmark_step_job(owner, spec, s, SETTINGS) for s in plan.steps]
    for phase in ("Succeeded", "Failed"):  # what is torn down after the run
        done = ServeBenchmarkStatus(phase=phase, observed_generation=1).to_wire()
        obs = Observed(generation=1, status=done, now=NOW, server=ServerState(exists=True))
        out[phase] = [type(a).__name__ for a in decide_benchmark(owner, spec, obs, SITE).actions]
    if spec.slo or spec.baseline:
        status = ServeBenchmarkStatus(phase="Succeeded", results=_results(spec, 1.5))
        out["verdict"] = benchmark_verdict(spec, status, _baseline(spec), server_gpus(spec)).to_wire()
    return out


def _quant_status(spec: QuantJobSpec) -> QuantJobStatus:
    def scores(shift: float) -> list[EvalScore]:
        return [EvalScore(dataset=d, metric=m, score=50.0 - shift) for d in ("gsm8k", "math_500")
                for m in ("acc", "mean_acc")]  # fmt: skip

    if spec.method == "gguf" and spec.gguf:
        names = [v.type for v in spec.gguf.variants]
        base = QuantVariantResult(name="F16", path="/models/models/out/model-f16.gguf", perplexity=10.0,
                                  scores=scores(0))  # fmt: skip
    else:
        names = ["W4A16-G128"]
        base = QuantVariantResult(name="BASE", path="org/model", perplexity=10.0, scores=scores(0))
    variants = [QuantVariantResult(name=n, path=f"/models/models/out/model-{n}.gguf", perplexity=10.5 + i,
                                   kl_divergence=0.05 * (i + 1), scores=scores(2 + i)) for i, n in enumerate(names)]  # fmt: skip
    return QuantJobStatus(phase="Running", base=base, variants=variants)


def quant_outcome(spec: QuantJobSpec) -> Any:
    owner = Owner("QuantJob", "cov", "ns", "uid", 1)
    d = decide_quantjob(owner, spec, Observed(generation=1, status={}, now=NOW), SITE)
    objects, deleted = render.decision_objects(owner, spec, d, SETTINGS)
    status = _quant_status(spec)
    runs = quant_score_runs(spec, status)
    out: dict[str, Any] = {"objects": objects, "deleted": deleted,
                           "scoring": [render.score_benchmark(owner, owner.child(r.suffix), r, SETTINGS) for r in runs]}  # fmt: skip
    if spec.acceptance:
        out["verdict"] = quant_verdict(spec, status).to_wire()
    return out


def outcome(kind: str, spec: ApiModel) -> str:
    result = (
        benchmark_outcome(spec) if isinstance(spec, ServeBenchmarkSpec) else quant_outcome(spec)  # type: ignore[arg-type]
    )
    return json.dumps(result, sort_keys=True, default=str)


# ---- coverage -----------------------------------------------------------------------------------------------
BASES = {"ServeBenchmark": SB_BASES, "QuantJob": QJ_BASES}


def contexts(leaf: Leaf) -> list[dict[str, Any]]:
    """The contexts a leaf is tried in (under an engine, each with every registered engine), those that
    already hold most of the leaf's path first (fewer refused specs to validate)."""
    found = list(BASES[leaf.kind])
    if "engine" in leaf.path:
        at = leaf.path[: leaf.path.index("engine")]
        for base in BASES[leaf.kind]:
            for name in ENGINES:
                spec = copy.deepcopy(base)
                obj = spec
                for key in at:
                    obj = obj.setdefault(key, {})
                obj["engine"] = {"name": name}
                found.append(spec)

    def held(spec: dict[str, Any]) -> int:
        obj: Any = spec
        depth = 0
        for key in leaf.path[:-1]:
            if key == ITEM:
                obj = obj[0] if isinstance(obj, list) and obj else None
                continue
            if not isinstance(obj, dict) or key not in obj:
                break
            obj, depth = obj[key], depth + 1
            if isinstance(obj, dict) and obj.get("name") in ENGINES and obj.get("name") in leaf.path:
                depth += 1  # the engine whose options the leaf is
        return depth

    return sorted(found, key=held, reverse=True)


def _describe(spec: dict[str, Any]) -> str:
    return ", ".join(
        f"{k} {v['name']}" if isinstance(v, dict) and "name" in v else k for k, v in spec.items()
    )


def judged(leaf: Leaf) -> tuple[str | None, bool]:
    """How the field is shown to matter ('<value a> -> <value b> (context i)') or None, and whether any
    admitted spec sets it (checked only when it is not shown to matter: validation is the slow part)."""
    tried: list[dict[str, Any]] = []
    for i, base in enumerate(contexts(leaf)):
        found = []
        for value, spec in variants(leaf.kind, base, leaf):
            model = typed(leaf.kind, spec)
            if model is None:
                continue
            try:
                found.append((value, spec, outcome(leaf.kind, model)))
            except Exception as exc:  # only what the apiserver refuses may fail to run
                if admitted(leaf.kind, spec):
                    raise AssertionError(f"{leaf.name} = {value!r} in context {i}: {exc!r}") from exc
        tried += [s for v, s, _ in found if v is not UNSET]
        for a in range(len(found)):
            for b in range(a + 1, len(found)):
                (va, sa, oa), (vb, sb, ob) = found[a], found[b]
                if oa != ob and admitted(leaf.kind, sa) and admitted(leaf.kind, sb):
                    show = ["unset" if v is UNSET else repr(v) for v in (va, vb)]
                    return f"{show[0]} -> {show[1]} ({_describe(base)})", True
    return None, any(admitted(leaf.kind, s) for s in tried)


def all_leaves() -> list[Leaf]:
    return [leaf for kind, model in SPEC_MODELS.items() for leaf in leaves(kind, model)]


@cache
def coverage() -> dict[str, tuple[str | None, bool]]:
    return {leaf.name: judged(leaf) for leaf in all_leaves()}


def test_the_contexts_are_valid() -> None:
    for kind, bases in BASES.items():
        for i, base in enumerate(bases):
            assert typed(kind, base) is not None and admitted(kind, base), f"{kind} context {i} is refused"


def test_every_field_changes_what_runs_or_how_results_are_judged() -> None:
    result = coverage()
    missing = sorted(
        n for n, (how, accepted) in result.items() if how is None and accepted and n not in ALLOWED
    )
    assert not missing, (
        "fields that change neither what runs nor how results are judged (implement them, refuse them at "
        "admission, delete them, or add a value to VALUES / a reason to ALLOWED):\n  " + "\n  ".join(missing)
    )
    refused = sorted(n for n, (how, accepted) in result.items() if not accepted)
    assert refused == sorted(REFUSED), "fields no admitted spec can set (list them in REFUSED, with why)"


def test_the_allow_list_is_small_and_current() -> None:
    result = coverage()
    stale = sorted(n for n in ALLOWED if n not in result or result[n][0] is not None)
    assert not stale, f"ALLOWED names fields that do not exist or are covered: {stale}"
    assert len(ALLOWED) <= 5
