"""Scrape an engine's Prometheus `/metrics` and turn before/after snapshots into ServerMetrics deltas.

llama-server (`--metrics`): `llamacpp:prompt_tokens_total` (excludes cached prompt tokens),
`llamacpp:prompt_tokens_cached_total`, `llamacpp:tokens_predicted_total`; no request counter and no
TTFT histogram. vLLM: `vllm:prompt_tokens_total`, `vllm:generation_tokens_total`,
`vllm:request_success_total` (per finished_reason), `vllm:time_to_first_token_seconds_{sum,count}`.
SGLang: `sglang:prompt_tokens_total`, `sglang:generation_tokens_total`, `sglang:num_requests_total`,
`sglang:time_to_first_token_seconds_{sum,count}`. Samples of one name are summed over their labels.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from servelab.api.results import ServerMetrics
from servelab.workers.common import http_get

SAMPLE_RE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)")

# canonical -> names whose deltas add up to it
PROMPT = ("llamacpp:prompt_tokens_total", "llamacpp:prompt_tokens_cached_total", "vllm:prompt_tokens_total",
          "sglang:prompt_tokens_total")  # fmt: skip
GENERATION = (
    "llamacpp:tokens_predicted_total",
    "vllm:generation_tokens_total",
    "sglang:generation_tokens_total",
)
REQUESTS = ("vllm:request_success_total", "sglang:num_requests_total")
TTFT_SUM = ("vllm:time_to_first_token_seconds_sum", "sglang:time_to_first_token_seconds_sum")
TTFT_COUNT = ("vllm:time_to_first_token_seconds_count", "sglang:time_to_first_token_seconds_count")


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
