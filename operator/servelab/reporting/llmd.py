"""servelab's load points as llm-d Benchmark Reports (schema v0.2, vendored in servelab/data/llmd/), so
llm-d-prism and other readers of llm-d reports load servelab's results.

One report per valid load point (llm-d's unit is one stage of a load generator at one rate/concurrency):
`run.eid` is common to the points of one ServeBenchmark run, `scenario.stack` is the served engine and
`scenario.load` the workload at that concurrency. Invalid points are left out (their figures are not the
server's); QuantJobs have no place in this schema (it describes serving performance)."""

from __future__ import annotations

import hashlib
import json
from importlib.resources import files
from typing import Any

from servelab.api.results import LatencyPercentiles, LoadPointResult
from servelab.api.servebenchmark import ServeBenchmarkSpec
from servelab.reporting import workload as workloads
from servelab.reporting.sources import Run

SCHEMA_VERSION = "0.2"


def schema() -> dict[str, Any]:
    """The vendored JSON schema of Benchmark Report v0.2."""
    text = files("servelab").joinpath("data", "llmd", "br_v0_2_json_schema.json").read_text()
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def _id(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]


def _stats(units: str, mean: float | None, pct: LatencyPercentiles | None = None) -> dict[str, Any] | None:
    if mean is None:
        return None
    out: dict[str, Any] = {"units": units, "mean": mean}
    if pct is not None:
        out |= {k: v for k, v in pct.model_dump().items() if v is not None}
    return out


def _flags(command: list[str]) -> dict[str, Any]:
    """A server command line as {flag: value} (flags without a value: null), as llm-d records native args."""
    args: dict[str, Any] = {}
    i = 0
    while i < len(command):
        token = command[i]
        if token.startswith("-"):
            if i + 1 < len(command) and not command[i + 1].startswith("-"):
                args[token] = command[i + 1]
                i += 2
                continue
            args[token] = None
        i += 1
    return args


def _seq(lo: int | None, hi: int | None, mean: float | None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "distribution": "fixed" if lo is None or lo == hi else "uniform",
        "value": mean or hi or 0,
    }
    if hi is not None:
        out["max"] = max(hi, 1)
    if lo is not None and lo != hi:
        out["min"] = lo
    return out


def _duration(seconds: float | None) -> str | None:
    return None if seconds is None else f"PT{seconds:.3f}S"


def reports(run: Run) -> list[dict[str, Any]]:
    """The Benchmark Reports of one ServeBenchmark: one per valid load point."""
    if run.kind != "ServeBenchmark":
        return []
    s = run.bench
    try:
        spec = ServeBenchmarkSpec.model_validate(run.spec)
    except ValueError:
        return []
    load = spec.load
    if load is None:
        return []
    prov = s.provenance
    engine = spec.engine.name
    versions = prov.versions if prov else {}
    command = prov.command if prov else []
    declared = spec.resources.gpus if spec.resources and spec.resources.gpus is not None else None
    gpus = declared if declared is not None else spec.engine.tensor_parallel_size
    accelerator = (prov.gpu_product if prov else None) or ("cpu" if gpus == 0 else "unknown")
    w = workloads.of_spec(run.spec)
    eid = _id(run.namespace, run.name, run.metadata.get("uid"), s.observed_generation, s.start_time)
    stack = {
        "metadata": {"schema_version": "0.0.1", "label": run.name,
                     "cfg_id": _id(spec.engine.to_wire(), s.model, s.quantization),
                     "description": f"{engine} serving {s.model or '?'}" + (f" ({s.quantization})" if s.quantization else "")},
        "standardized": {
            "kind": "inference_engine", "tool": engine,
            "tool_version": versions.get(engine) or (prov.images.get("server") if prov else None) or "unknown",
            "role": "replica", "replicas": 1, "model": {"name": s.model or spec.engine.served_model_name or run.name},
            "accelerator": {"model": accelerator, "count": gpus, "parallelism": {"tp": spec.engine.tensor_parallel_size}},
        },
        "native": {"args": _flags(command), "config": {"command": command, "engine": spec.engine.to_wire()}},
    }  # fmt: skip
    out = []
    for stage, p in enumerate(s.results):
        if not p.valid:
            continue
        out.append(_report(run, p, stage, eid, stack, load.to_wire(), w, versions))
    return out


def _report(run: Run, p: LoadPointResult, stage: int, eid: str, stack: dict[str, Any], load: dict[str, Any],
            w: dict[str, Any] | None, versions: dict[str, str]) -> dict[str, Any]:  # fmt: skip
    s = run.bench
    pct = p.percentiles
    generator = load.get("generator", "evalscope")
    standardized: dict[str, Any] = {
        "tool": generator, "tool_version": versions.get(generator) or versions.get("evalscope") or "unknown",
        "source": "random" if load.get("dataset") == "random" else "sampled", "stage": stage,
        "input_seq_len": _seq(load.get("minPromptLength"), load.get("maxPromptLength"), p.avg_input_tokens),
        "output_seq_len": _seq(load.get("maxTokens") if load.get("ignoreEos") else load.get("minTokens"),
                               load.get("maxTokens"), p.avg_output_tokens),
        "concurrency": p.concurrency,
    }  # fmt: skip
    if load.get("rate"):
        standardized["rate_qps"] = load["rate"]
    if load.get("prefixLength"):
        standardized["prefix"] = {"prefix_len": {"distribution": "fixed", "value": load["prefixLength"]},
                                  "num_groups": 1, "num_users_per_group": p.concurrency, "num_prefixes": 1}  # fmt: skip
    requests: dict[str, Any] = {"total": p.requests, "failures": p.failed}
    if (il := _stats("count", p.avg_input_tokens)) is not None:
        requests["input_length"] = il
    if (ol := _stats("count", p.avg_output_tokens)) is not None:
        requests["output_length"] = ol
    latency = {k: v for k, v in {
        "time_to_first_token": _stats("s", p.avg_ttft_seconds, pct.ttft_seconds if pct else None),
        "time_per_output_token": _stats("s/token", p.avg_tpot_seconds, pct.tpot_seconds if pct else None),
        "request_latency": _stats("s", p.avg_latency_seconds, pct.latency_seconds if pct else None),
    }.items() if v is not None}  # fmt: skip
    throughput = {k: v for k, v in {
        "output_token_rate": _stats("tokens/s", p.output_tokens_per_second),
        "total_token_rate": _stats("tokens/s", p.total_tokens_per_second),
        "request_rate": _stats("queries/s", p.rps),
    }.items() if v is not None}  # fmt: skip
    time: dict[str, Any] = {}
    if s.start_time:
        time["start"] = s.start_time
    if s.completion_time:
        time["end"] = s.completion_time
    if (d := _duration(p.duration_seconds)) is not None:
        time["duration"] = d
    keywords = ["servelab", stack["standardized"]["tool"], f"concurrency={p.concurrency}"]
    keywords += [f"quantization={s.quantization}"] if s.quantization else []
    keywords += [f"label={p.label}"] if p.label else []
    keywords += [f"workload={workloads.describe(w)}"]
    return {
        "version": SCHEMA_VERSION,
        "run": {"uid": _id(eid, stage, p.concurrency), "eid": eid, "time": time or None, "keywords": keywords},
        "scenario": {
            "stack": [stack],
            "load": {"metadata": {"schema_version": "0.0.1", "cfg_id": _id(w)}, "standardized": standardized,
                     "native": {"args": {"--parallel": p.concurrency, "--number": p.requests}, "config": load}},
        },
        "results": {"request_performance": {"aggregate": {"requests": requests, "latency": latency or None,
                                                          "throughput": throughput or None}}},
    }  # fmt: skip


def all_reports(runs: list[Run]) -> list[dict[str, Any]]:
    return [r for run in runs if not run.owned_by_quantjob for r in reports(run)]


__all__ = ["SCHEMA_VERSION", "all_reports", "reports", "schema"]
