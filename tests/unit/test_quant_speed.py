"""Write-up 002's quantization table in a QuantJob's status: size ratio, serving memory and speed-up of each
output against the unquantized model, decided by the one core (operator and `servelab run` alike)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from servelab import core, report
from servelab.api.quantjob import QuantJobSpec, QuantJobStatus
from servelab.api.servebenchmark import ServeBenchmarkSpec
from servelab.api.validate import SpecError, validate_resource
from servelab.controller import render
from servelab.controller.kube import cluster_site
from servelab.controller.settings import Settings
from servelab.core import JobState, Observed, Owner
from servelab.reporting.compare import quant_tables
from servelab.reporting.sources import Run

pytestmark = pytest.mark.unit
SETTINGS = Settings()
SITE = cluster_site(SETTINGS)
NOW = datetime(2026, 11, 29, 9, 0, tzinfo=UTC)
OWNER = Owner("QuantJob", "q", "ns", "uid-q", 1)
SPEED = {"concurrency": [1, 4], "requests": [4, 8], "promptTokens": 64, "outputTokens": 32}


def spec(**evaluation: Any) -> dict[str, Any]:
    return {
        "model": {"huggingFace": {"id": "Qwen/Qwen3-8B"}}, "method": "awq",
        "calibration": {"source": {"path": "/data/c.jsonl"}}, "output": {"pvc": {"claimName": "models", "path": "awq"}},
        "evaluation": {"evalscope": {"datasets": [{"name": "mmlu", "localPath": "/data/mmlu"}]}, **evaluation},
    }  # fmt: skip


QUANTIZED = {
    "base": {"name": "BASE", "path": "Qwen/Qwen3-8B", "sizeBytes": 16_000},
    "variants": [{"name": "W4A16", "path": "/models/models/awq", "sizeBytes": 4_500}],
}
BASE_FP = {
    "loadSeconds": 40.0,
    "modelBytes": 16_400,
    "gpuMemoryBytes": 16 * 2**30,
    "gpuMemorySource": "vLLM log",
}
AWQ_FP = {
    "loadSeconds": 12.5,
    "modelBytes": 4_600,
    "gpuMemoryBytes": 6 * 2**30,
    "gpuMemorySource": "vLLM log",
}


def point(c: int, tps: float, valid: bool = True, reason: str | None = None) -> dict[str, Any]:
    return {"concurrency": c, "requests": 4 * c, "successRate": 1.0 if valid else 0.5,
            "outputTokensPerSecond": tps, "valid": valid, "reason": reason}  # fmt: skip


def child(results: list[dict[str, Any]], footprint: dict[str, Any], score: float) -> dict[str, Any]:
    return {"status": {"phase": "Succeeded", "results": results, "footprint": footprint,
                       "scores": [{"dataset": "mmlu", "metric": "mean_acc", "subset": "OVERALL", "score": score}]}}  # fmt: skip


def decide(s: QuantJobSpec, status: dict[str, Any], benchmarks: dict[str, Any]) -> tuple[Any, list[Any]]:
    obs = Observed(generation=1, status=status, now=NOW, jobs={"quantize": JobState("j", succeeded=True)},
                   results={"quantize": QUANTIZED}, benchmarks=benchmarks)  # fmt: skip
    d = core.decide_quantjob(OWNER, s, obs, SITE)
    created, _ = render.decision_objects(OWNER, s, d, SETTINGS)
    return d.status, created


def run_to_end(s: QuantJobSpec, base: dict[str, Any], awq: dict[str, Any]) -> QuantJobStatus:
    status = core.decide_quantjob(OWNER, s, Observed(generation=1, status={}, now=NOW), SITE).status.to_wire()
    st, _ = decide(s, status, {})
    st, _ = decide(s, st.to_wire(), {"q-q1-score-base": base})
    st, _ = decide(s, st.to_wire(), {"q-q1-score-base": base, "q-q1-score-w4a16": awq})
    assert isinstance(st, QuantJobStatus) and st.phase == "Succeeded", st.message
    return st


def test_speed_makes_every_scoring_run_sweep_the_same_short_load() -> None:
    s = QuantJobSpec.model_validate(spec(speed=SPEED))
    status = core.decide_quantjob(OWNER, s, Observed(generation=1, status={}, now=NOW), SITE).status.to_wire()
    st, created = decide(s, status, {})
    base = created[0]
    assert base["kind"] == "ServeBenchmark" and base["metadata"]["name"] == "q-q1-score-base"
    load = base["spec"]["load"]
    assert (load["parallel"], load["number"]) == ([1, 4], [4, 8])
    assert (load["minPromptLength"], load["maxPromptLength"], load["maxTokens"], load["minTokens"]) == (
        64,
        64,
        32,
        32,
    )
    assert load["ignoreEos"] is True and base["spec"]["evaluations"][0]["datasets"][0]["name"] == "mmlu"
    ServeBenchmarkSpec.model_validate(base["spec"])
    # the variant's run sweeps the same load
    _, created = decide(
        s, st.to_wire(), {"q-q1-score-base": child([point(1, 100), point(4, 300)], BASE_FP, 0.7)}
    )
    assert created[0]["spec"]["load"] == load
    # without speed, no load: scoring only, as before
    plain = QuantJobSpec.model_validate(spec())
    status = core.decide_quantjob(
        OWNER, plain, Observed(generation=1, status={}, now=NOW), SITE
    ).status.to_wire()
    _, created = decide(plain, status, {})
    assert "load" not in created[0]["spec"]


def test_size_ratio_memory_and_speedup_against_the_base() -> None:
    s = QuantJobSpec.model_validate(spec(speed=SPEED))
    base = child([point(1, 100.0), point(4, 320.0)], BASE_FP, 0.745)
    awq = child([point(1, 180.0), point(4, 400.0)], AWQ_FP, 0.721)
    st = run_to_end(s, base, awq)
    v, b = st.variants[0], st.base
    assert b is not None
    assert v.size_ratio == pytest.approx(4_500 / 16_000, abs=1e-4) and b.size_ratio is None
    # the footprint each scoring run recorded, as it recorded it
    assert (
        b.footprint is not None
        and b.footprint.gpu_memory_bytes == 16 * 2**30
        and b.footprint.load_seconds == 40
    )
    assert v.footprint is not None and v.footprint.gpu_memory_bytes == 6 * 2**30
    assert [(p.concurrency, p.output_tokens_per_second, p.speedup) for p in v.speed] == [
        (1, 180.0, pytest.approx(1.8)), (4, 400.0, pytest.approx(1.25))]  # fmt: skip
    assert all(p.speedup is None and p.valid for p in b.speed)
    assert [sc.score for sc in v.scores] == [0.721]
    table = report.quant_cost_table(st)
    assert table is not None
    lines = table.splitlines()
    assert "speed-up @1" in lines[1] and "speed-up @4" in lines[1]
    assert "1.80x" in lines[4] and "1.25x" in lines[4] and "0.28" in lines[4] and "6.00 GiB" in lines[4]
    assert "BASE (base)" in lines[3] and "16.00 GiB" in lines[3] and "mmlu 0.7450" in lines[3]
    # `servelab report` shows the same table
    tables = quant_tables(
        Run(kind="QuantJob", name="q", namespace=None, spec=s.to_wire(), status=st, source="test")
    )
    speed = next(t for t in tables if "speed" in t.title)
    assert [c.plain() for c in speed.rows[1]][4:8] == ["180.0", "1.80x", "400.0", "1.25x"]


def test_no_speedup_where_either_point_is_invalid_and_the_reason_says_which() -> None:
    s = QuantJobSpec.model_validate(spec(speed=SPEED))
    base = child(
        [point(1, 100.0), point(4, 0.0, valid=False, reason="success rate 0.50 < 1.0")], BASE_FP, 0.7
    )
    awq = child([point(1, 150.0, valid=False, reason="client-bound"), point(4, 300.0)], AWQ_FP, 0.7)
    st = run_to_end(s, base, awq)
    one, four = st.variants[0].speed
    assert one.speedup is None and not one.valid and one.reason == "point invalid: client-bound"
    assert one.output_tokens_per_second is None
    assert four.valid and four.output_tokens_per_second == 300.0 and four.speedup is None
    assert four.reason is not None and "the base's point at concurrency 4 is not valid" in four.reason
    assert "success rate 0.50" in four.reason


def test_size_ratio_falls_back_to_the_bytes_the_base_run_measured() -> None:
    """A base with no size of its own (a hub model the quantizer never measured): its scoring run's model
    step measured it; without either, no ratio."""
    s = QuantJobSpec.model_validate(spec())
    quantized = {"base": {"name": "BASE", "path": "Qwen/Qwen3-8B"}, "variants": QUANTIZED["variants"]}
    status = core.decide_quantjob(OWNER, s, Observed(generation=1, status={}, now=NOW), SITE).status.to_wire()
    jobs = {"quantize": JobState("j", succeeded=True)}
    done = {"q-q1-score-base": child([], BASE_FP, 0.7), "q-q1-score-w4a16": child([], AWQ_FP, 0.7)}
    before = core.decide_quantjob(OWNER, s, Observed(generation=1, status=status, now=NOW, jobs=jobs,
                                  results={"quantize": quantized}), SITE).status  # fmt: skip
    assert before.variants[0].size_ratio is None  # the base's size is not known yet
    d = core.decide_quantjob(OWNER, s, Observed(generation=1, status=before.to_wire(), now=NOW, jobs=jobs,
                             results={"quantize": quantized}, benchmarks=done), SITE)  # fmt: skip
    assert d.status.phase == "Succeeded"
    assert d.status.variants[0].size_ratio == pytest.approx(4_500 / 16_400, abs=1e-4)
    assert d.status.variants[0].speed == []  # no speed asked for


def test_size_ratio_needs_no_evaluation() -> None:
    s = QuantJobSpec.model_validate({**spec(), "evaluation": None})
    st, _ = decide(s, {}, {})
    assert st.variants[0].size_ratio == pytest.approx(0.2812, abs=1e-4)


@pytest.mark.parametrize(
    ("evaluation", "message"),
    [
        ({"evalscope": None, "speed": SPEED}, r"spec\.evaluation\.speed runs in the scoring servers: it needs "
         r"spec\.evaluation\.evalscope"),
        ({"includeBase": False, "speed": SPEED}, r"spec\.evaluation\.speed is measured against the unquantized "
         r"model: it needs spec\.evaluation\.includeBase true"),
        ({"speed": {**SPEED, "requests": [4]}}, r"spec\.evaluation\.speed\.requests must have one entry per "
         r"spec\.evaluation\.speed\.concurrency"),
    ],
)  # fmt: skip
def test_speed_is_refused_at_admission_without_what_it_needs(
    evaluation: dict[str, Any], message: str
) -> None:
    wire = spec(**evaluation)
    if wire["evaluation"]["evalscope"] is None:
        del wire["evaluation"]["evalscope"]
    with pytest.raises(SpecError, match=message):
        validate_resource("QuantJob", "q", wire)
    validate_resource("QuantJob", "q", spec(speed=SPEED))  # with evalscope and the base: admitted


def test_the_table_and_headline_show_a_data_sets_overall_score_not_its_first_subjects() -> None:
    s = QuantJobSpec.model_validate(spec(speed=SPEED))
    subjects = [{"dataset": "mmlu", "metric": "mean_acc", "subset": sub, "score": sc}
                for sub, sc in (("world_religions", 0.5), ("elementary_mathematics", 1.0), ("OVERALL", 0.8))]  # fmt: skip
    base, awq = (child([point(1, 100.0), point(4, 300.0)], BASE_FP, 0.7) for _ in range(2))
    base["status"]["scores"] = awq["status"]["scores"] = subjects
    st = run_to_end(s, base, awq)
    table = report.quant_cost_table(st)
    assert table is not None and "mmlu 0.8000" in table and "mmlu 0.5000" not in table
    assert "mmlu mean_acc 0.800" in (st.summary.headline if st.summary else "")
