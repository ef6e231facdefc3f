"""Real runs for the report tests: the decision core (`servelab.core.decide`, what the operator and `servelab
run` both run) takes each resource from its spec to its end, while a scripted world plays the server and
the workers (every worker step publishes the result a worker would). What comes out is the stored object
({apiVersion, kind, metadata, spec, status}) `servelab run` writes and the apiserver holds, verdicts and
summaries computed by servelab itself.

The set is the write-ups' comparison on Qwen3-0.6B: bf16 and GPTQ on vLLM, GGUF Q4_K_M on llama.cpp (4
slots: server-capped), the same workload; one run of another workload (to be refused from the table); a
context-depth sweep; two QuantJobs (GGUF with an acceptance gate, GPTQ) with perplexity, KLD and task scores."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from servelab import API_VERSION, core
from servelab.api.quantjob import QuantJobSpec
from servelab.api.servebenchmark import ServeBenchmarkSpec
from servelab.controller.kube import cluster_site
from servelab.controller.settings import Settings
from servelab.core import JobState, Observed, Owner, ServerState

NAMESPACE = "lab"
START = datetime(2026, 11, 29, 9, 0, tzinfo=UTC)
Result = Callable[[str], dict[str, Any] | None]


def drive(kind: str, name: str, spec: dict[str, Any], result: Result, quantjob: dict[str, Any] | None = None,
          max_ticks: int = 300) -> dict[str, Any]:  # fmt: skip
    """One resource from creation to its end through the decision core; returns the stored object."""
    model = (ServeBenchmarkSpec if kind == "ServeBenchmark" else QuantJobSpec).model_validate(spec)
    owner = Owner(kind, name, NAMESPACE, f"uid-{name}", 1)
    site = cluster_site(Settings())
    now = START
    server = False
    jobs: dict[str, JobState] = {}
    results: dict[str, dict[str, Any]] = {}
    status: dict[str, Any] = {}
    for _ in range(max_ticks):
        obs = Observed(generation=1, status=status, now=now, jobs=dict(jobs), results=dict(results),
                       server=ServerState(exists=server, ready=server, node="gpu-node-1",
                                          gpu_product="NVIDIA-L40S" if server else None),
                       quantjob=quantjob)  # fmt: skip
        d = core.decide(owner, model, obs, site)
        for action in d.actions:
            if isinstance(action, core.CreateServer):
                server = True
            elif isinstance(action, core.DeleteServer):
                server = False
            elif isinstance(action, core.RunStep):
                sid = action.step.id
                published = result(sid)
                jobs[sid] = JobState(f"{name}-{sid}", succeeded=published is not None, failed=published is None,
                                     message="" if published else "BackoffLimitExceeded", completed_at=now)  # fmt: skip
                if published is not None:
                    results[sid] = published
        status = d.status.to_wire()
        if status.get("phase") in ("Succeeded", "Failed"):
            break
        now += timedelta(seconds=7)
    else:
        raise AssertionError(f"{kind} {name} did not finish: {status.get('progress')}")
    meta = {"name": name, "namespace": NAMESPACE, "uid": f"uid-{name}", "generation": 1,
            "labels": {"experiment": "qwen3-quants"}}  # fmt: skip
    return {"apiVersion": API_VERSION, "kind": kind, "metadata": meta, "spec": spec, "status": status}


# ---- what the workers measure ---------------------------------------------------------------------------
def point(c: int, tps: float, ttft: float, tpot: float, label: str = "ok", n: int | None = None,
          out: int = 256, slo_ttft: float = 0.5) -> dict[str, Any]:  # fmt: skip
    n = n or max(4 * c, 8)
    latency = ttft + tpot * (out - 1)
    met = 1.0 if ttft * 1.6 <= slo_ttft else max(0.0, 1 - (ttft * 1.6 - slo_ttft) / slo_ttft)
    row: dict[str, Any] = {
        "concurrency": c, "requests": n, "succeeded": n, "failed": 0, "successRate": 1.0,
        "durationSeconds": round(n * out / tps, 3), "rps": round(tps / out, 4),
        "avgLatencySeconds": round(latency, 4), "p99LatencySeconds": round(latency * 1.2, 4),
        "outputTokensPerSecond": tps, "totalTokensPerSecond": round(tps * 5, 2),
        "avgTtftSeconds": ttft, "p99TtftSeconds": round(ttft * 1.6, 4),
        "avgTpotSeconds": tpot, "p99TpotSeconds": round(tpot * 1.3, 5),
        "avgInputTokens": 1024.0, "avgOutputTokens": float(out),
        "percentiles": {
            "ttftSeconds": {"p50": ttft, "p90": round(ttft * 1.4, 4), "p95": round(ttft * 1.5, 4), "p99": round(ttft * 1.6, 4)},
            "tpotSeconds": {"p50": tpot, "p90": round(tpot * 1.2, 5), "p95": round(tpot * 1.25, 5), "p99": round(tpot * 1.3, 5)},
            "latencySeconds": {"p50": round(latency, 4), "p90": round(latency * 1.1, 4), "p95": round(latency * 1.15, 4),
                               "p99": round(latency * 1.2, 4)},
        },
        "sloAttainment": round(met, 4), "goodputRps": round(met * tps / out, 4),
        "goodputOutputTokensPerSecond": round(met * tps, 2), "label": label, "valid": True,
    }  # fmt: skip
    if label != "ok":
        row["labelReason"] = {"server-capped": "llama-server -np 4: 4 requests at a time",
                              "saturated": "2x the concurrency, +3% throughput"}.get(label, label)  # fmt: skip
    return row


SWEEP = [1, 4, 16, 64]
POINTS: dict[str, list[dict[str, Any]]] = {
    "qwen-bf16-vllm": [point(1, 92.0, 0.031, 0.0108), point(4, 331.0, 0.042, 0.0120), point(16, 1010.0, 0.090, 0.0157),
                       point(64, 1080.0, 0.520, 0.0530, "saturated")],
    "qwen-gptq-vllm": [point(1, 131.0, 0.027, 0.0076), point(4, 452.0, 0.038, 0.0088), point(16, 1268.0, 0.081, 0.0125),
                       point(64, 1350.0, 0.470, 0.0451, "saturated")],
    "qwen-q4km-llamacpp": [point(1, 48.0, 0.060, 0.0207), point(4, 96.0, 0.110, 0.0410),
                           point(16, 99.0, 1.900, 0.0410, "server-capped"), point(64, 99.5, 8.100, 0.0410, "server-capped")],
    "qwen-bf16-vllm-short": [point(1, 88.0, 0.030, 0.0112, out=128), point(16, 940.0, 0.085, 0.0166, out=128)],
}  # fmt: skip
SCORES = {
    "qwen-bf16-vllm": [{"dataset": "math_500", "metric": "mean_acc", "subset": "Level 1", "num": 43, "score": 0.5581}],
    "qwen-q4km-llamacpp": [{"dataset": "math_500", "metric": "mean_acc", "subset": "Level 1", "num": 43, "score": 0.5116}],
}  # fmt: skip
DEPTH = [{"depth": d, "promptTokens": 512, "genTokens": 32, "ppTokensPerSecond": 1800.0 / (1 + d / 8192),
          "tgTokensPerSecond": 49.0 / (1 + d / 16384), "ttftSeconds": round((512 + d) / 1800.0, 4)} for d in (0, 4096, 8192, 16384)]  # fmt: skip


def _scores(math: float, ifeval: float) -> list[dict[str, Any]]:
    return [{"dataset": "math_500", "metric": "mean_acc", "subset": "Level 1", "num": 43, "score": math},
            {"dataset": "ifeval", "metric": "prompt_level_strict", "num": 100, "score": ifeval}]  # fmt: skip


QUANT_RESULTS = {
    "qwen-gguf": {
        "base": {"name": "F16", "path": "/models/qwen3-gguf/F16.gguf", "sizeBytes": 1_503_300_000, "perplexity": 14.61,
                 "perplexityError": 0.11, "scores": _scores(0.5581, 0.612)},
        "variants": [
            {"name": "Q8_0", "path": "/models/qwen3-gguf/Q8_0.gguf", "sizeBytes": 804_800_000, "durationSeconds": 21.0,
             "perplexity": 14.65, "perplexityError": 0.11, "klDivergence": 0.0021, "scores": _scores(0.5581, 0.606)},
            {"name": "Q4_K_M", "path": "/models/qwen3-gguf/Q4_K_M.gguf", "sizeBytes": 484_200_000, "durationSeconds": 33.0,
             "perplexity": 15.62, "perplexityError": 0.12, "klDivergence": 0.0611, "scores": _scores(0.5116, 0.574)},
            {"name": "IQ4_XS+imatrix", "path": "/models/qwen3-gguf/IQ4_XS.gguf", "sizeBytes": 422_000_000,
             "durationSeconds": 58.0, "perplexity": 16.04, "perplexityError": 0.12, "klDivergence": 0.0794,
             "scores": _scores(0.4884, 0.561)},
        ],
    },
    "qwen-gptq": {
        "base": {"name": "BASE", "path": "/models/Qwen3-0.6B", "sizeBytes": 1_503_300_000, "perplexity": 14.55,
                 "scores": _scores(0.5581, 0.612)},
        "variants": [{"name": "W4A16-G128", "path": "/models/qwen3-gptq", "sizeBytes": 558_000_000, "durationSeconds": 412.0,
                      "perplexity": 15.31, "klDivergence": 0.0433, "scores": _scores(0.5349, 0.590)}],
    },
}  # fmt: skip


def load(parallel: list[int], max_tokens: int = 256) -> dict[str, Any]:
    return {"parallel": parallel, "number": [max(4 * c, 8) for c in parallel], "minPromptLength": 1024,
            "maxPromptLength": 1024, "maxTokens": max_tokens, "minTokens": max_tokens}  # fmt: skip


SLO = {"percentile": "p99", "ttftSeconds": 0.5, "tpotSeconds": 0.05, "concurrency": [1, 4, 16]}
EVAL = [{"name": "math", "datasets": [{"name": "math_500", "subsets": ["Level 1"]}], "limit": 43}]
QUANTJOBS: dict[str, dict[str, Any]] = {
    "qwen-gguf": {"model": {"huggingFace": {"id": "Qwen/Qwen3-0.6B"}}, "method": "gguf",
                  "gguf": {"variants": [{"type": "Q8_0", "imatrix": False}, {"type": "Q4_K_M", "imatrix": False}, {"type": "IQ4_XS"}]},
                  "calibration": {"source": {"path": "/data/calibration.txt"}}, "output": {"path": "/models/qwen3-gguf"},
                  "evaluation": {"perplexity": {"text": {"path": "/data/wiki.test.raw"}, "klDivergence": True}},
                  "acceptance": {"maxPerplexityIncreasePercent": 8, "maxMeanKld": 0.07}},
    "qwen-gptq": {"model": {"huggingFace": {"id": "Qwen/Qwen3-0.6B"}}, "method": "gptq",
                  "calibration": {"source": {"path": "/data/ultrachat.jsonl"}, "numSamples": 256},
                  "output": {"path": "/models/qwen3-gptq"}, "resources": {"gpus": 1}},
}  # fmt: skip
BENCHMARKS: dict[str, dict[str, Any]] = {
    "qwen-bf16-vllm": {"model": {"huggingFace": {"id": "Qwen/Qwen3-0.6B"}}, "engine": {"name": "vllm"},
                       "resources": {"gpus": 1}, "load": load(SWEEP), "slo": SLO, "evaluations": EVAL},
    "qwen-gptq-vllm": {"quantJobRef": {"name": "qwen-gptq"}, "engine": {"name": "vllm"}, "resources": {"gpus": 1},
                       "load": load(SWEEP), "slo": SLO},
    "qwen-q4km-llamacpp": {"model": {"huggingFace": {"id": "Qwen/Qwen3-0.6B-GGUF", "file": "Qwen3-0.6B-Q4_K_M.gguf"}},
                           "engine": {"name": "llamacpp", "llamacpp": {"parallelSlots": 4}}, "resources": {"gpus": 1},
                           "load": load(SWEEP), "slo": SLO, "evaluations": EVAL},
    "qwen-bf16-vllm-short": {"model": {"huggingFace": {"id": "Qwen/Qwen3-0.6B"}}, "engine": {"name": "vllm"},
                             "resources": {"gpus": 1}, "load": load([1, 16], max_tokens=128)},
    "qwen-q4km-depth": {"model": {"huggingFace": {"id": "Qwen/Qwen3-0.6B-GGUF", "file": "Qwen3-0.6B-Q4_K_M.gguf"}},
                        "engine": {"name": "llamacpp"}, "resources": {"gpus": 1},
                        "contextSweep": {"depths": [0, 4096, 8192, 16384], "promptTokens": 512, "genTokens": 32}},
}  # fmt: skip


def bench_result(name: str) -> Result:
    def result(step: str) -> dict[str, Any] | None:
        if step == "load":  # the sweep's one step publishes every point
            return {"points": list(POINTS[name])}
        if step.startswith("eval-"):
            return {"scores": SCORES.get(name, [])}
        if step == "depth":
            return {"depth": DEPTH}
        return {}

    return result


def real_runs() -> list[dict[str, Any]]:
    """Every resource of the set, finished, as stored objects (QuantJobs first: one benchmark serves one)."""
    objs = {n: drive("QuantJob", n, spec, lambda s, n=n: QUANT_RESULTS[n] if s == "quantize" else {})
            for n, spec in QUANTJOBS.items()}  # fmt: skip
    out = list(objs.values())
    for name, spec in BENCHMARKS.items():
        ref = (spec.get("quantJobRef") or {}).get("name")
        out.append(
            drive("ServeBenchmark", name, spec, bench_result(name), quantjob=objs.get(ref) if ref else None)
        )
    return out


def write_runs_dir(root: Path, objects: list[dict[str, Any]]) -> Path:
    """The layout `servelab run` writes: RUNS_DIR/<kind>-<name>/status.json (and status.yaml)."""
    import yaml

    for obj in objects:
        d = root / f"{obj['kind'].lower()}-{obj['metadata']['name']}"
        d.mkdir(parents=True, exist_ok=True)
        (d / "status.json").write_text(json.dumps(obj, indent=2))
        (d / "status.yaml").write_text(yaml.safe_dump(obj))
    return root
