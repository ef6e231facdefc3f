"""Repeated load points (spec.load.repetitions): figures over all requests, mean ± sd, unstable points."""

from __future__ import annotations

import statistics

import pytest

from servelab.api.results import LoadPointResult
from servelab.api.servebenchmark import ServeBenchmarkStatus
from servelab.loadgen.headroom import label_sweep
from servelab.report import load_table
from servelab.workers.perfparse import PointFigures, merge_figures, point_spread, spread_of

pytestmark = pytest.mark.unit


def rep(ttfts: list[float], tokens: int, duration: float, start: float = 0.0) -> PointFigures:
    n = len(ttfts)
    f = PointFigures(total=n, succeeded=n, duration_seconds=duration, source="db")
    f.requests = [(t, 0.01, t + 0.01 * (tokens - 1), tokens) for t in ttfts]
    f.ttfts, f.tpots = list(ttfts), [0.01] * n
    f.latencies = [r[2] for r in f.requests if r[2] is not None]
    f.timings = [(start + i, start + i + 1.0) for i in range(n)]
    f.output_token_counts = [tokens] * n
    f.sum_output_tokens, f.sum_prompt_tokens = tokens * n, 32 * n
    f.avg_ttft_seconds, f.avg_tpot_seconds = statistics.fmean(ttfts), 0.01
    f.output_tokens_per_second = tokens * n / duration
    f.rps = n / duration
    f.avg_input_tokens, f.avg_output_tokens = 32.0, float(tokens)
    return f


def test_percentiles_are_over_all_requests_not_averaged() -> None:
    a = rep([0.1] * 99 + [5.0], 16, 10.0)  # one slow request: p99 of a alone is 0.1 (nearest rank)
    b = rep([0.2] * 100, 16, 10.0, start=100)
    m = merge_figures([a, b])
    assert (m.total, m.succeeded, m.sum_output_tokens) == (200, 200, 3200)
    assert m.duration_seconds == 20.0  # measured load time
    assert m.p99_ttft_seconds == 0.2  # rank 198 of 200: not mean(0.1, 0.2)
    assert m.avg_ttft_seconds == pytest.approx((0.1 * 99 + 5.0 + 0.2 * 100) / 200)
    assert m.output_tokens_per_second == pytest.approx(160.0)  # the mean of the repetitions' rates
    assert len(m.timings) == 200 and m.avg_output_tokens == 16
    assert merge_figures([a]) is a


def test_spread_is_mean_and_sample_sd() -> None:
    s = spread_of([100.0, 110.0, 90.0])
    assert s is not None
    assert s.mean == 100.0 and s.sd == pytest.approx(10.0) and s.relative == pytest.approx(0.1)
    one = spread_of([5.0])
    assert one is not None and one.sd == 0.0
    assert spread_of([]) is None


def test_disagreeing_repetitions_are_unstable() -> None:
    steady = [rep([0.10] * 4, 16, d) for d in (10.0, 10.2, 9.9)]
    spread, why = point_spread(steady, 0.1)
    assert why is None and spread.output_tokens_per_second is not None
    assert spread.output_tokens_per_second.samples == [f.output_tokens_per_second for f in steady]
    noisy = [rep([0.10] * 4, 16, d) for d in (10.0, 20.0, 10.0)]
    spread, why = point_spread(noisy, 0.1)
    assert why is not None and why.startswith("output tok/s") and "> 10%" in why
    # a millisecond of TTFT noise is not a trend, however large relative to a tiny mean
    tiny = [rep([t] * 4, 16, 10.0) for t in (0.0002, 0.0009, 0.0004)]
    assert point_spread(tiny, 0.1)[1] is None


def point(c: int, tps: float, **kw: object) -> LoadPointResult:
    return LoadPointResult.model_validate({"concurrency": c, "requests": 12, "succeeded": 12, "successRate": 1.0,
                                           "outputTokensPerSecond": tps, "avgTtftSeconds": 0.05,
                                           "label": "ok", **kw})  # fmt: skip


def test_unstable_points_are_no_trend_and_show_their_spread() -> None:
    spread = {"outputTokensPerSecond": {"mean": 101.0, "sd": 40.0, "relative": 0.4, "samples": [60, 101, 142]},
              "ttftSeconds": {"mean": 0.05, "sd": 0.001, "relative": 0.02, "samples": [0.049, 0.05, 0.051]}}  # fmt: skip
    pts = [point(1, 100.0), point(2, 101.0, repetitions=3, spread=spread, unstable=True,
                                  unstableReason="output tok/s 101 ± 40"), point(4, 100.0)]  # fmt: skip
    label_sweep(pts)
    assert pts[1].label == "ok"  # never judged saturated
    assert pts[2].label == "saturated"  # judged against c=1, not the unstable c=2
    status = ServeBenchmarkStatus(results=pts)
    table = load_table(status)
    assert "101.00 ± 40.00" in table and "0.050 ± 0.001" in table and "ok unstable" in table
    assert "c=2 unstable over 3 repetitions: output tok/s 101 ± 40" in table
    wire = pts[1].to_wire()
    assert wire["unstable"] is True and wire["spread"]["outputTokensPerSecond"]["sd"] == 40.0
