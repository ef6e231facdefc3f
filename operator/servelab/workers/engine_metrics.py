"""Scrape an engine's Prometheus `/metrics` and turn before/after snapshots into ServerMetrics deltas.

Each engine's adapter names its sample names (`EngineAdapter.metric_names`, e.g. llama-server's
`llamacpp:prompt_tokens_total` + `llamacpp:prompt_tokens_cached_total`, vLLM's
`vllm:request_success_total`); the tables below are their union over the registered engines (names
carry the engine's prefix, so one snapshot only matches its own engine's). Samples of one name are
summed over their labels.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

from servelab.api.results import ServerMetrics
from servelab.engines import ENGINES, MetricNames
from servelab.workers.common import http_get

SAMPLE_RE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)")


def _union(pick: Callable[[MetricNames], tuple[str, ...]]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(n for adapter in ENGINES.values() for n in pick(adapter.metric_names)))


# canonical -> names whose deltas add up to it
PROMPT = _union(lambda m: m.prompt_tokens)
GENERATION = _union(lambda m: m.generation_tokens)
REQUESTS = _union(lambda m: m.requests)
TTFT_SUM = _union(lambda m: m.ttft_sum)
TTFT_COUNT = _union(lambda m: m.ttft_count)


def parse_prometheus(text: str) -> dict[str, float]:
    """Sample name -> value, summed over label sets; comments and unparsable lines skipped."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE_RE.match(line)
        if not m:
            continue
        try:
            value = float(m.group(3))
        except ValueError:
            continue
        out[m.group(1)] = out.get(m.group(1), 0.0) + value
    return out


def scrape(metrics_url: str, timeout: float = 10.0) -> dict[str, float] | None:
    """One snapshot of `metrics_url`, or None when it is unreachable or not Prometheus text."""
    status, body = http_get(metrics_url, timeout)
    if status != 200:
        return None
    samples = parse_prometheus(body.decode(errors="replace"))
    return samples or None


def _delta(before: Mapping[str, float], after: Mapping[str, float], names: tuple[str, ...]) -> float | None:
    present = [n for n in names if n in after]
    if not present:
        return None
    return sum(after[n] - before.get(n, 0.0) for n in present)


def server_deltas(
    before: Mapping[str, float] | None,
    after: Mapping[str, float] | None,
    duration_seconds: float | None,
) -> ServerMetrics | None:
    """ServerMetrics for one point, or None when a snapshot is missing."""
    if before is None or after is None:
        return None
    gen = _delta(before, after, GENERATION)
    ttft_sum, ttft_count = _delta(before, after, TTFT_SUM), _delta(before, after, TTFT_COUNT)
    return ServerMetrics(
        prompt_tokens=_delta(before, after, PROMPT),
        generation_tokens=gen,
        requests=_delta(before, after, REQUESTS),
        avg_ttft_seconds=ttft_sum / ttft_count if ttft_sum is not None and ttft_count else None,
        output_tokens_per_second=gen / duration_seconds if gen is not None and duration_seconds else None,
    )


# gauges sampled during a point: requests running, requests waiting in the server's queue
RUNNING = _union(lambda m: m.running)
WAITING = _union(lambda m: m.waiting)


class GaugeSampler:
    """Polls `/metrics` during a point for the engine's running/waiting gauges, on `time.perf_counter`'s
    clock (the load generators' request timestamps are on it too)."""

    def __init__(self, metrics_url: str, interval: float = 0.25) -> None:
        import threading

        self.metrics_url = metrics_url
        self.interval = interval
        self.samples: list[tuple[float, float | None, float | None]] = []  # (t, running, waiting)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import time

        while True:
            snap = scrape(self.metrics_url, timeout=2.0)
            if snap is not None:
                running = [snap[n] for n in RUNNING if n in snap]
                waiting = [snap[n] for n in WAITING if n in snap]
                self.samples.append((time.perf_counter(), sum(running) if running else None,
                                     sum(waiting) if waiting else None))  # fmt: skip
            if self._stop.wait(self.interval):
                return

    def start(self) -> GaugeSampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def window(self, t0: float, t1: float) -> tuple[float | None, float | None]:
        """(most running, most waiting) sampled between t0 and t1 (None: no sample of that gauge)."""
        inside = [s for s in self.samples if t0 <= s[0] <= t1]
        running = [s[1] for s in inside if s[1] is not None]
        waiting = [s[2] for s in inside if s[2] is not None]
        return (max(running) if running else None), (max(waiting) if waiting else None)
