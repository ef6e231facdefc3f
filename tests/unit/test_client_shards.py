"""Client shards (issue 10 item 3): a point split over k client processes, their per-request records pooled
before any figure is computed, and k chosen from the calibrated ceiling and the sweep's last point."""

from __future__ import annotations

import random

import pytest

from servelab.api.results import LoadPointResult
from servelab.loadgen.headroom import Headroom, ceiling, choose_shards, combine_headroom, split
from servelab.workers.common import mean, percentile
from servelab.workers.perf import expected_load
from servelab.workers.perfparse import PointFigures, combine_shards


def test_split_shares_add_up_and_differ_by_at_most_one() -> None:
    assert split(9, 4) == [3, 2, 2, 2]
    assert split(8, 2) == [4, 4]
    for total in range(1, 50):
        for k in range(1, min(total, 8) + 1):
            parts = split(total, k)
            assert sum(parts) == total and max(parts) - min(parts) <= 1 and min(parts) >= 1


def shard(records: list[tuple[float, float, float, float, int]]) -> PointFigures:
    """A shard's figures from (start, ttft, tpot, latency, tokens) records, as figures_from_db keeps them."""
    f = PointFigures(source="db")
    f.total = f.succeeded = len(records)
    f.timings = [(s, s + lat) for s, _, _, lat, _ in records]
    f.requests = [(ttft, tpot, lat, n) for _, ttft, tpot, lat, n in records]
    f.ttfts = [r[1] for r in records]
    f.tpots = [r[2] for r in records]
    f.latencies = [r[3] for r in records]
    f.output_token_counts = [r[4] for r in records]
    f.sum_output_tokens = sum(f.output_token_counts)
    f.sum_prompt_tokens = 32 * len(records)
    f.duration_seconds = max(e for _, e in f.timings) - min(s for s, _ in f.timings)
    f.avg_ttft_seconds = mean(f.ttfts)
    f.p99_ttft_seconds = percentile(f.ttfts, 99)
    return f


def test_shards_are_pooled_per_request_not_averaged() -> None:
    rng = random.Random(7)
    a = [(100.0 + i * 0.1, rng.uniform(0.01, 0.05), 0.002, 0.5, 64) for i in range(40)]
    # the second shard is slower and starts later: pooled percentiles are not the mean of the shards'
    b = [(100.5 + i * 0.1, rng.uniform(0.5, 2.0), 0.004, 1.0, 64) for i in range(40)]
    merged = combine_shards([shard(a), shard(b)])
    ttfts = [r[1] for r in a + b]
    assert merged.total == merged.succeeded == 80
    assert merged.p99_ttft_seconds == percentile(ttfts, 99)
    assert merged.avg_ttft_seconds == pytest.approx(mean(ttfts))
    mean_of_p99 = (shard(a).p99_ttft_seconds + shard(b).p99_ttft_seconds) / 2  # type: ignore[operator]
    assert merged.p99_ttft_seconds != pytest.approx(mean_of_p99)
    # the span is from the first start (100.0, shard a) to the last completion (shard b: 104.4 + 1.0)
    assert merged.duration_seconds == pytest.approx(105.4 - 100.0)
    assert merged.output_tokens_per_second == pytest.approx(80 * 64 / 5.4)
    assert merged.rps == pytest.approx(80 / 5.4)
    assert merged.avg_output_tokens == 64
    assert combine_shards([shard(a)]) is not None and combine_shards([shard(a)]).total == 40


def test_shard_count_from_the_spec_is_capped_by_slots_and_requests() -> None:
    k, why = choose_shards("evalscope", 8, 100, 4, None, 2)
    assert k == 4 and "as the spec asks" in why  # the spec's count is not capped by this machine's CPUs
    k, why = choose_shards("evalscope", 2, 100, 4, None, 16)
    assert k == 2 and "one per request slot" in why
    assert choose_shards("evalscope", 8, 3, 4, None, 16)[0] == 3


def test_automatic_shards_follow_the_calibrated_ceiling() -> None:
    top1 = ceiling("evalscope", 64)
    assert top1
    # before any point: one process
    assert choose_shards("evalscope", 64, 640, 0, None, 16) == (
        1, "one client process: no point measured yet to size the load")  # fmt: skip
    # a load well under half a process's ceiling: one
    assert choose_shards("evalscope", 64, 640, 0, 0.2 * top1, 16)[0] == 1
    # three ceilings' worth of load: more processes, each under half of its own ceiling
    k, why = choose_shards("evalscope", 64, 640, 0, 3 * top1, 16)
    room = sum(ceiling("evalscope", p) or 0 for p in split(64, k))
    assert k > 1 and 3 * top1 <= 0.5 * room and "expected" in why
    assert 3 * top1 > 0.5 * sum(ceiling("evalscope", p) or 0 for p in split(64, k - 1))
    # never more than the worker's CPUs: said so
    k, why = choose_shards("evalscope", 64, 640, 0, 100 * top1, 4)
    assert k == 4 and "one per available CPU" in why and "client-bound" in why
    # a generator without calibration stays at one
    assert choose_shards("nope", 64, 640, 0, 1e9, 16)[0] == 1


def test_expected_load_scales_the_last_measured_point() -> None:
    def p(c: int, tps: float | None) -> LoadPointResult:
        return LoadPointResult(concurrency=c, requests=10, succeeded=10, failed=0, success_rate=1.0,
                               output_tokens_per_second=tps)  # fmt: skip

    assert expected_load([], 8) is None
    assert expected_load([p(1, 100.0), p(4, 300.0)], 16) == pytest.approx(1200.0)
    assert expected_load([p(4, 300.0), p(8, None)], 16) == pytest.approx(1200.0)  # an empty point is skipped
    assert expected_load([p(8, 300.0)], 4) == pytest.approx(300.0)  # never scaled down


def test_sharded_headroom_adds_cpu_and_keeps_the_busiest_shard() -> None:
    parts = [Headroom(client_cpu=0.6, client_busy=0.7, schedule_delay=0.001, schedule_delay_p99=0.01,
                      schedule_loss=0.01),
             Headroom(client_cpu=0.8, client_busy=0.95, schedule_delay=0.003, schedule_delay_p99=0.02,
                      schedule_loss=0.12, notes=["x"])]  # fmt: skip
    h = combine_headroom(Headroom(sustained=3.0), parts, [4, 4], "evalscope", 1000.0)
    assert h.client_cpu == 1.4 and h.client_busy == 0.95
    assert (
        h.schedule_delay == pytest.approx(0.002) and h.schedule_delay_p99 == 0.02 and h.schedule_loss == 0.12
    )
    assert h.ceiling_fraction == round(1000.0 / (2 * (ceiling("evalscope", 4) or 0)), 3)
    assert h.sustained == 3.0 and h.notes == ["shard 2: x"]
    # a shard whose CPU was not measured: no client CPU for the point (not a partial sum)
    h = combine_headroom(Headroom(), [Headroom(client_cpu=0.5), Headroom()], [2, 2], "evalscope", None)
    assert h.client_cpu is None and h.ceiling_fraction is None


def test_the_spec_count_reaches_the_worker_and_the_load_pod_gets_a_cpu_per_shard() -> None:
    from servelab.api.servebenchmark import ServeBenchmarkSpec
    from servelab.controller import render
    from servelab.controller.settings import Settings
    from servelab.core import Owner
    from servelab.engines.base import ServedModel
    from servelab.plan import compile_benchmark

    def load_job(load: dict[str, object]) -> dict[str, object]:
        spec = ServeBenchmarkSpec.model_validate({
            "model": {"path": "/models/m"}, "engine": {"name": "vllm"},
            "load": {"parallel": [8, 64], "number": [80, 640], **load}})  # fmt: skip
        plan = compile_benchmark(
            spec, ServedModel("/models/m"), artifacts="/a", server_url=lambda p: f"http://h:{p}"
        )
        (step,) = [s for s in plan.steps if s.id == "load"]
        argv = step.argv
        owner = Owner("ServeBenchmark", "b", "ns", "uid-b", 1)
        job = render.benchmark_step_job(owner, spec, step, Settings())
        return {
            "shards": argv[argv.index("--client-shards") + 1],
            "cpu": job["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"],
        }  # type: ignore[index]

    assert load_job({}) == {"shards": "0", "cpu": Settings().worker_cpu}  # automatic, within the pod's CPU
    assert load_job({"clientShards": 4}) == {"shards": "4", "cpu": "4"}
    assert load_job({"clientShards": 1}) == {"shards": "1", "cpu": Settings().worker_cpu}
