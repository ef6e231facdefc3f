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
