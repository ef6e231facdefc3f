"""Gates: SLO checks, goodput and the highest concurrency under the SLO, baselines, QuantJob acceptance, the
kstatus conditions of every outcome, and `servelab gate`'s exit codes."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from servelab import status as st
from servelab.api.quantjob import QuantJobSpec, QuantJobStatus
from servelab.api.servebenchmark import ServeBenchmarkSpec, ServeBenchmarkStatus
from servelab.verdict import benchmark_verdict, quant_verdict, slo_headline
from servelab.workers import perf
from servelab.workers.perfparse import PointFigures

pytestmark = pytest.mark.unit


def point(c: int, ttft99: float, tps: float, **extra: Any) -> dict[str, Any]:
    return {"concurrency": c, "requests": 10, "succeeded": 10, "successRate": 1.0, "outputTokensPerSecond": tps,
            "p99TtftSeconds": ttft99, "p99TpotSeconds": 0.01, "p99LatencySeconds": 1.0,
            "percentiles": {"ttftSeconds": {"p50": ttft99 / 2, "p90": ttft99 * 0.8, "p95": ttft99 * 0.9, "p99": ttft99}},
            "goodputRps": 10.0 / c, "goodputOutputTokensPerSecond": tps / 2, **extra}  # fmt: skip


def spec(**over: Any) -> ServeBenchmarkSpec:
    body: dict[str, Any] = {"model": {"path": "/m"}, "engine": {"name": "llamacpp"},
                            "load": {"parallel": [1, 2, 4], "number": [10, 10, 10], "maxTokens": 64}}  # fmt: skip
    body.update(over)
    return ServeBenchmarkSpec.model_validate(body)


def status(*points: dict[str, Any]) -> ServeBenchmarkStatus:
    return ServeBenchmarkStatus.model_validate({"phase": "Succeeded", "results": list(points)})


RESULTS = (point(1, 0.10, 100), point(2, 0.20, 180), point(4, 0.60, 300))


def test_slo_met_everywhere_passes_with_the_highest_measured_concurrency() -> None:
    v = benchmark_verdict(spec(slo={"ttftSeconds": 1.0}), status(*RESULTS), None, 1)
    assert v.passed and v.reason == "AllChecksPassed" and len(v.checks) == 3
    assert v.slo and v.slo.max_concurrency == 4.0 and "not extrapolated" in (v.slo.method or "")


def test_a_stricter_slo_fails_with_each_failed_check_and_interpolates_the_cliff() -> None:
    v = benchmark_verdict(spec(slo={"ttftSeconds": 0.4}), status(*RESULTS), None, 1)
    assert not v.passed and v.reason == "SLONotMet"
    (failed,) = [c for c in v.checks if not c.passed]
    assert failed.name == "ttftSeconds p99 @ c=4" and failed.measured == 0.6 and failed.threshold == 0.4
    # TTFT p99 0.20 at c=2 and 0.60 at c=4 crosses 0.4 at c=3
    assert v.slo and v.slo.max_concurrency == 3.0 and "linear interpolation" in (v.slo.method or "")
    assert v.slo.goodput_rps == pytest.approx((5.0 + 2.5) / 2)
    # the percentile chosen is the one judged
    v50 = benchmark_verdict(spec(slo={"ttftSeconds": 0.4, "percentile": "p50"}), status(*RESULTS), None, 1)
    assert v50.passed and v50.checks[-1].measured == 0.3


def test_slo_only_at_named_concurrencies_and_per_gpu_and_per_user_floors() -> None:
    s = spec(slo={"ttftSeconds": 0.4, "concurrency": [1, 2]})
    assert benchmark_verdict(s, status(*RESULTS), None, 1).passed
    missing = benchmark_verdict(spec(slo={"ttftSeconds": 0.4, "concurrency": [8]}), status(*RESULTS), None, 1)
    assert not missing.passed and missing.checks[-1].message == "not measured"
    per_user = benchmark_verdict(spec(slo={"minOutputTokensPerSecondPerUser": 80}), status(*RESULTS), None, 1)
    assert [c.passed for c in per_user.checks] == [True, True, False]  # 100, 90, 75 per user
    per_gpu = benchmark_verdict(spec(slo={"minOutputTokensPerSecondPerGpu": 60}), status(*RESULTS), None, 2)
    assert [c.passed for c in per_gpu.checks] == [False, True, True]  # 50, 90, 150 per GPU


def test_not_met_at_the_lowest_point_has_no_headline_concurrency() -> None:
    from servelab.api.verdict import Slo

    h = slo_headline(Slo(ttft_seconds=0.05), status(*RESULTS).results, 1)
    assert h.max_concurrency is None and "c=1" in (h.method or "")


def baseline_body(*points: dict[str, Any], **load: Any) -> dict[str, Any]:
    body = spec().to_wire()
    body["load"].update(load)
    return {"spec": body, "status": {"phase": "Succeeded", "results": list(points)}}


def test_baseline_within_tolerance_passes_and_a_regression_fails() -> None:
    s = spec(baseline={"name": "prev"})
    same = baseline_body(point(1, 0.10, 101), point(2, 0.19, 185), point(8, 1.0, 400))
    v = benchmark_verdict(s, status(*RESULTS), same, 1)
    assert v.passed and v.baseline == "ServeBenchmark prev"
    assert {c.subject for c in v.checks} == {"c=1", "c=2"}  # only concurrencies both measured
    slower = baseline_body(point(1, 0.05, 120), point(2, 0.19, 185))
    v = benchmark_verdict(s, status(*RESULTS), slower, 1)
    assert not v.passed and v.reason == "BaselineRegressed"
    failed = {c.name for c in v.checks if not c.passed}
    assert failed == {"outputTokensPerSecond vs baseline @ c=1", "p99TtftSeconds vs baseline @ c=1"}


def test_a_baseline_of_another_workload_is_refused_not_compared() -> None:
    s = spec(baseline={"configMapName": "saved"})
    other = baseline_body(point(1, 0.1, 100), maxTokens=256)
    v = benchmark_verdict(s, status(*RESULTS), other, 1)
    assert not v.passed and v.reason == "BaselineIncomparable"
    assert "maxTokens: 64 here, 256 in the baseline" in (v.message or "")
    gone = benchmark_verdict(s, status(*RESULTS), None, 1)
    assert not gone.passed and gone.reason == "BaselineNotFound"


def quant(acceptance: dict[str, Any]) -> tuple[QuantJobSpec, QuantJobStatus]:
    qspec = QuantJobSpec.model_validate({
        "model": {"path": "/m"}, "method": "gguf", "output": {"path": "/o"},
        "gguf": {"variants": [{"type": "IQ4_XS"}, {"type": "Q4_K_M"}]}, "acceptance": acceptance})  # fmt: skip
    qstatus = QuantJobStatus.model_validate({"phase": "Succeeded",
        "base": {"name": "F16", "perplexity": 10.0, "scores": [{"dataset": "math_500", "metric": "acc", "score": 0.6}]},
        "variants": [
            {"name": "IQ4_XS+imatrix", "perplexity": 10.3, "klDivergence": 0.012,
             "scores": [{"dataset": "math_500", "metric": "acc", "score": 0.58}]},
            {"name": "Q4_K_M", "perplexity": 10.1, "klDivergence": 0.004,
             "scores": [{"dataset": "math_500", "metric": "acc", "score": 0.45}]}]})  # fmt: skip
    return qspec, qstatus


def test_quantjob_rejects_an_output_on_kld_and_on_a_score_drop() -> None:
    v = quant_verdict(*quant({"maxMeanKld": 0.01}))
    assert not v.passed and v.reason == "AcceptanceNotMet"
    assert [(c.subject, c.passed) for c in v.checks] == [("IQ4_XS+imatrix", False), ("Q4_K_M", True)]
    v = quant_verdict(
        *quant(
            {"maxPerplexityIncreasePercent": 5, "maxScoreDrop": [{"dataset": "math_500", "maxDrop": 0.05}]}
        )
    )
    assert [(c.name, c.passed) for c in v.checks] == [
        ("perplexityIncreasePercent IQ4_XS+imatrix", True), ("scoreDrop math_500 acc IQ4_XS+imatrix", True),
        ("perplexityIncreasePercent Q4_K_M", True), ("scoreDrop math_500 acc Q4_K_M", False)]  # fmt: skip
    assert v.checks[-1].measured == pytest.approx(0.15)


def conditions(s: Any) -> dict[str, tuple[str, str]]:
    return {c.type: (c.status, c.reason) for c in s.conditions}


def test_conditions_follow_the_kstatus_contract_in_every_outcome() -> None:
    running = st.start(ServeBenchmarkStatus(), 3, 4)
    c = conditions(running)
    assert c["Reconciling"][0] == "True" and c["Ready"][0] == "False" and c["Stalled"][0] == "False"
    ok = st.succeed(st.start(ServeBenchmarkStatus(), 3, 4), "3 load point(s)", 3)
    c = conditions(ok)
    assert (
        c["Ready"] == ("True", "NoChecks")
        and c["Passed"] == ("True", "NoChecks")
        and c["Reconciling"][0] == "False"
    )
    gated = st.start(ServeBenchmarkStatus(), 3, 4)
    gated.verdict = benchmark_verdict(spec(slo={"ttftSeconds": 0.4}), status(*RESULTS), None, 1)
    st.succeed(gated, "3 load point(s)", 3)
    c = conditions(gated)
    assert gated.phase == "Succeeded" and c["Succeeded"][0] == "True" and c["Failed"][0] == "False"
    assert (
        c["Ready"] == ("False", "SLONotMet")
        and c["Stalled"] == ("True", "SLONotMet")
        and c["Passed"][0] == "False"
    )
    failed = st.fail(st.start(ServeBenchmarkStatus(), 3, 4), "ServerNotReady", "no", 3)
    c = conditions(failed)
    assert (
        c["Stalled"] == ("True", "ServerNotReady")
        and c["Ready"][0] == "False"
        and c["Passed"] == ("False", "RunFailed")
    )
    assert all(cond.observed_generation == 3 for s_ in (ok, gated, failed) for cond in s_.conditions)


def test_goodput_counts_requests_meeting_every_bound() -> None:
    f = PointFigures(total=4, succeeded=4, duration_seconds=2.0,
                     requests=[(0.1, 0.01, 1.0, 10), (0.5, 0.01, 1.0, 20), (0.1, 0.05, 1.0, 30), (None, None, 1.0, 5)])  # fmt: skip
    args = argparse.Namespace(slo_ttft=0.2, slo_tpot=0.02, slo_e2e=None)
    assert perf.goodput(f, args) == (0.25, 0.5, 5.0)
    assert perf.goodput(f, argparse.Namespace(slo_ttft=None, slo_tpot=None, slo_e2e=2.0)) == (1.0, 2.0, 32.5)
    assert perf.goodput(f, argparse.Namespace(slo_ttft=None, slo_tpot=None, slo_e2e=None)) == (
        None,
        None,
        None,
    )


def gate(runs: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "servelab", "gate", *args, "--runs-dir", str(runs), "--timeout", "1",
                           "--interval", "0.2"], capture_output=True, text=True, timeout=60)  # fmt: skip


def test_gate_exit_codes(tmp_path: Path) -> None:
    def write(name: str, kind: str, st_: Any, generation: int = 1) -> None:
        d = tmp_path / f"{kind.lower()}-{name}"
        d.mkdir(parents=True, exist_ok=True)
        wire = st_.to_wire()
        (d / "status.json").write_text(
            json.dumps({"metadata": {"name": name, "generation": generation}, "status": wire})
        )

    write("ok", "ServeBenchmark", st.succeed(st.start(ServeBenchmarkStatus(), 1, 1), "done", 1))
    gated = st.start(ServeBenchmarkStatus(), 1, 1)
    gated.verdict = benchmark_verdict(spec(slo={"ttftSeconds": 0.4}), status(*RESULTS), None, 1)
    write("slow", "ServeBenchmark", st.succeed(gated, "done", 1))
    write("broken", "ServeBenchmark", st.fail(st.start(ServeBenchmarkStatus(), 1, 1), "LoadFailed", "x", 1))
    write(
        "stale", "ServeBenchmark", st.succeed(st.start(ServeBenchmarkStatus(), 1, 1), "done", 1), generation=2
    )
    qs = quant({"maxMeanKld": 0.01})[1]
    qs.verdict = quant_verdict(*quant({"maxMeanKld": 0.01}))
    write("q", "QuantJob", st.succeed(st.start(qs, 1, 1), "done", 1))
    ok = gate(tmp_path, "ok")
    assert ok.returncode == 0 and "passed (NoChecks)" in ok.stdout
    slow = gate(tmp_path, "slow")
    assert slow.returncode == 1 and "FAIL ttftSeconds p99 @ c=4: measured 0.6 bound 0.4" in slow.stdout
    assert gate(tmp_path, "broken").returncode == 2
    stale = gate(tmp_path, "stale")  # the controller has not seen generation 2 yet: no verdict for it
    assert stale.returncode == 2 and "no verdict" in stale.stderr
    assert gate(tmp_path, "missing").returncode == 2
    q = gate(tmp_path, "q", "--kind", "QuantJob")
    assert q.returncode == 1 and "FAIL meanKld IQ4_XS+imatrix" in q.stdout
