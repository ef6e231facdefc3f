"""How much CPU one reconciliation costs, and how the metrics rebuild scales.

Prints figures; asserts nothing. Run: .venv/bin/python bench/reconcile.py
"""

from __future__ import annotations

import statistics
import time
from datetime import UTC, datetime
from typing import Any

from servelab.api.servebenchmark import ServeBenchmarkSpec
from servelab.controller import metrics
from servelab.controller.kube import cluster_site
from servelab.controller.settings import Settings
from servelab.core import JobState, Observed, Owner, ServerState, decide_benchmark

POINTS = 64


def spec() -> ServeBenchmarkSpec:
    return ServeBenchmarkSpec.model_validate({
        "model": {"huggingFace": {"id": "Qwen/Qwen3-4B-Instruct-2507"}},
        "engine": {"name": "vllm", "servedModelName": "qwen"},
        "load": {"parallel": list(range(1, POINTS + 1)), "number": [10] * POINTS},
    })  # fmt: skip


def row(c: int) -> dict[str, Any]:
    return {"points": [{"concurrency": c, "requests": 10, "succeeded": 10, "successRate": 1.0, "rps": 1.0,
                        "outputTokensPerSecond": 100.0 + c, "avgTtftSeconds": 0.05, "p99TtftSeconds": 0.07,
                        "avgTpotSeconds": 0.01, "p99TpotSeconds": 0.012, "avgLatencySeconds": 1.0,
                        "p99LatencySeconds": 1.2}]}  # fmt: skip


def timeit(fn: Any, n: int) -> tuple[float, float]:
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples) * 1e3, max(samples) * 1e3


def main() -> None:
    s = spec()
    owner = Owner("ServeBenchmark", "bench", "ns", "uid", 1)
    settings = cluster_site(Settings())
    first = decide_benchmark(owner, s, Observed(generation=1, status={}, now=datetime.now(UTC)), settings)
    status = first.status.to_wire()
    jobs = {f"load-{i}": JobState(f"j{i}", succeeded=True) for i in range(POINTS)}
    results = {f"load-{i}": row(i + 1) for i in range(POINTS)}
    ready = ServerState(exists=True, ready=True)

    def full() -> None:
        decide_benchmark(owner, s, Observed(generation=1, status=status, now=datetime.now(UTC), server=ready,
                                            jobs=jobs, results=results), settings)  # fmt: skip

    med, worst = timeit(full, 50)
    print(f"decide_benchmark, {POINTS} finished points folded: median {med:.2f} ms, max {worst:.2f} ms")
    done = decide_benchmark(owner, s, Observed(generation=1, status=status, now=datetime.now(UTC), server=ready,
                                               jobs=jobs, results=results), settings)  # fmt: skip
    body = {"metadata": {"namespace": "ns", "name": "bench"}, "spec": {"engine": {"name": "vllm"}},
            "status": done.status.to_wire()}  # fmt: skip
    for n in (10, 100, 300):
        bodies = [{**body, "metadata": {"namespace": "ns", "name": f"b{i}"}} for i in range(n)]
        t0 = time.perf_counter()
        for b in bodies:
            metrics.observe("ServeBenchmark", b)
        took = time.perf_counter() - t0
        series = sum(
            len(g._metrics) for g in (metrics.output_tps, metrics.ttft, metrics.tpot, metrics.latency)
        )
        print(
            f"metrics rebuild of {n} benchmarks x {POINTS} points: {took * 1e3:.0f} ms total, "
            f"{took / n * 1e3:.2f} ms each, {series} series"
        )
        for b in bodies:
            metrics.forget("ServeBenchmark", "ns", b["metadata"]["name"])


if __name__ == "__main__":
    main()
