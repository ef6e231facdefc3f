"""The metrics registry under concurrent handlers: observe/forget from many threads while others scrape.

At 2,000 live benchmarks the operator once reported "dictionary changed size during iteration" and a
phase count that lagged the truth; here threads hammer one registry and the counts must come out exact,
with no exception in any thread and every scrape parseable."""

from __future__ import annotations

import re
import threading

import pytest
from prometheus_client import generate_latest

from servelab.controller import metrics

pytestmark = pytest.mark.unit
NS = "unit-metrics-threads"
PHASES = ("Pending", "Running", "Succeeded", "Failed")


def body(name: str, phase: str, tps: float) -> dict[str, object]:
    return {
        "metadata": {"namespace": NS, "name": name},
        "spec": {"engine": {"name": "vllm"}},
        "status": {"phase": phase, "engine": "vllm", "model": "m", "results": [
            {"concurrency": c, "requests": 4, "succeeded": 4, "successRate": 1.0, "outputTokensPerSecond": tps,
             "avgTtftSeconds": 0.02, "p99TtftSeconds": 0.05, "valid": True} for c in (1, 2, 4)]},
    }  # fmt: skip


def ours() -> dict[str, int]:
    counts = {p: 0 for p in PHASES}
    with metrics._lock:
        for (kind, ns, _), phase in metrics._phases.items():
            if kind == "ServeBenchmark" and ns == NS:
                counts[phase] += 1
    return counts


def test_observe_and_forget_from_threads_keep_exact_counts() -> None:
    before = metrics.resources()
    errors: list[BaseException] = []
    stop = threading.Event()
    names = [f"sb-{i}" for i in range(80)]

    def writer(k: int) -> None:
        try:
            for round_ in range(8):
                for i, name in enumerate(names[k::4]):
                    phase = PHASES[(i + round_ + k) % len(PHASES)]
                    metrics.observe("ServeBenchmark", body(name, phase, float(round_)))
                    if (i + round_) % 7 == 0:
                        metrics.forget("ServeBenchmark", NS, name)
        except BaseException as err:
            errors.append(err)

    def scraper() -> None:
        try:
            while not stop.is_set():
                text = generate_latest(metrics.REGISTRY).decode()
                assert "servelab_resources" in text or not metrics.resources()
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    scrapers = [threading.Thread(target=scraper) for _ in range(2)]
    for t in [*threads, *scrapers]:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    for t in scrapers:
        t.join()
    assert not errors, errors
    # the gauge says exactly what the table holds: our resources plus what others had before
    text = generate_latest(metrics.REGISTRY).decode()
    mine = ours()
    for phase in PHASES:
        want = before.get(("ServeBenchmark", phase), 0) + mine[phase]
        m = re.search(rf'servelab_resources{{kind="ServeBenchmark",phase="{phase}"}} ([0-9.]+)', text)
        assert (float(m.group(1)) if m else 0.0) == want, (phase, want, text)
    for name in names:
        metrics.forget("ServeBenchmark", NS, name)
    assert metrics.resources() == before
    assert f'namespace="{NS}"' not in generate_latest(metrics.REGISTRY).decode()
