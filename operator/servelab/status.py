"""Pure status bookkeeping shared by the local executor and the operator: conditions, phase,
progress, folding worker results into the typed status."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from servelab.api.common import CommonStatus, Condition, Progress
from servelab.api.quantjob import QuantJobStatus, QuantJobSummary, QuantSpeed
from servelab.api.results import (
    DepthPointResult,
    EvalScore,
    LlamaBenchResult,
    LlamaBenchyResult,
    LoadPointResult,
    OfflineThroughputResult,
    QuantSpeedPoint,
    QuantVariantResult,
)
from servelab.api.servebenchmark import BenchmarkSummary, ServeBenchmarkStatus

if TYPE_CHECKING:
    from servelab.plan import WorkerStep

S = TypeVar("S", bound=CommonStatus)

# Condition types, the kstatus contract (docs/operator.md has the table):
# - Reconciling: True while work remains (kstatus InProgress);
# - Ready: True only when the run finished and passed its gate (kstatus Current, Argo CD Healthy);
# - Stalled: True when the run failed or failed its gate (kstatus Failed, Argo CD Degraded);
# - Passed: the gate's outcome (reason = verdict reason); Succeeded / Failed: terminal, for `kubectl wait`;
# - ServerReady: whether the engine server is up (it turns False after teardown).
READY, RECONCILING, STALLED, PASSED = "Ready", "Reconciling", "Stalled", "Passed"
SUCCEEDED, FAILED, SERVER_READY = "Succeeded", "Failed", "ServerReady"

# Machine-readable reasons of a Failed condition.
REASONS = (
    "InvalidSpec", "ServerNotReady", "ServerFailed", "LoadFailed", "InvalidResult", "EvalFailed",
    "QuantizeFailed", "QuantJobFailed", "QuantJobNotFound", "Unschedulable", "Timeout", "ChildRefused",
)  # fmt: skip


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def set_condition(
    status: S, type_: str, value: bool | None, reason: str, message: str = "", generation: int | None = None
) -> S:
    """Set one condition; lastTransitionTime changes only when the status value flips."""
    text = "Unknown" if value is None else ("True" if value else "False")
    kept = [c for c in status.conditions if c.type != type_]
    old = next((c for c in status.conditions if c.type == type_), None)
    when = old.last_transition_time if old is not None and old.status == text else now()
    new = Condition(
        type=type_, status=text, reason=reason, message=message[:32000], last_transition_time=when,
        observed_generation=generation,
    )  # fmt: skip
    status.conditions = sorted([*kept, new], key=lambda c: c.type)
    return status


def condition(status: CommonStatus, type_: str) -> Condition | None:
    return next((c for c in status.conditions if c.type == type_), None)


def start(status: S, generation: int | None, total_steps: int) -> S:
    status.phase = "Running"
    status.observed_generation = generation
    status.start_time = status.start_time or now()
    status.completion_time = None
    status.progress = status.progress or Progress(total=total_steps, summary=f"0/{total_steps}")
    set_condition(status, RECONCILING, True, "Running", "run started", generation)
    set_condition(status, READY, False, "Running", "run in progress", generation)
    set_condition(status, STALLED, False, "Running", "", generation)
    set_condition(status, SUCCEEDED, False, "Running", "run in progress", generation)
    set_condition(status, FAILED, False, "Running", "", generation)
    return status


def reconciling(status: S, reason: str, message: str, generation: int | None = None) -> S:
    """Work remains (Pending, Waiting, Running): the reason says which."""
    set_condition(status, RECONCILING, True, reason, message, generation)
    return status


def step(status: S, title: str, completed: int, total: int) -> S:
    status.progress = Progress(step=title, completed=completed, total=total, summary=f"{completed}/{total}")
    status.message = title
    return status


def succeed(status: S, message: str, generation: int | None = None) -> S:
    status.phase = "Succeeded"
    status.completion_time = now()
    status.message = message
    set_condition(status, RECONCILING, False, "Completed", message, generation)
    set_condition(status, SUCCEEDED, True, "Completed", message, generation)
    set_condition(status, FAILED, False, "Completed", "", generation)
    verdict = getattr(status, "verdict", None)
    if verdict is None or verdict.passed:
        why = verdict.reason if verdict is not None else "NoChecks"
        set_condition(
            status, PASSED, True, why, (verdict.message if verdict else None) or message, generation
        )
        set_condition(status, READY, True, why, message, generation)
        set_condition(status, STALLED, False, why, "", generation)
    else:  # it worked, and failed its gate: Succeeded, not Failed; Stalled so GitOps tools stop waiting
        status.message = f"{message}; gate failed ({verdict.reason}): {verdict.message or ''}".rstrip(": ")
        set_condition(status, PASSED, False, verdict.reason, verdict.message or "", generation)
        set_condition(status, READY, False, verdict.reason, verdict.message or "", generation)
        set_condition(status, STALLED, True, verdict.reason, verdict.message or "", generation)
    return status


def fail(status: S, reason: str, message: str, generation: int | None = None) -> S:
    """Mark the run failed with a machine-readable reason; results already collected stay as they are."""
    if reason not in REASONS:
        raise ValueError(f"unknown failure reason {reason!r}")
    status.phase = "Failed"
    status.completion_time = now()
    status.message = f"{reason}: {message}"
    set_condition(status, RECONCILING, False, reason, message, generation)
    set_condition(status, READY, False, reason, message, generation)
    set_condition(status, STALLED, True, reason, message, generation)
    set_condition(status, PASSED, False, "RunFailed", f"{reason}: {message}", generation)
    set_condition(status, SUCCEEDED, False, reason, message, generation)
    set_condition(status, FAILED, True, reason, message, generation)
    return status


def fold_points(status: ServeBenchmarkStatus, points: list[LoadPointResult], total_points: int) -> None:
    """Append load points to the table, in plan order (a sweep may repeat a parallel/number pair)."""
    from servelab.loadgen.headroom import label_sweep

    status.results.extend(points)
    label_sweep(status.results)  # saturation is a verdict over the sweep's points so far
    status.summary = summarize(status, total_points)


def fold_scores(status: ServeBenchmarkStatus, scores: list[EvalScore]) -> None:
    keys = {(s.dataset, s.metric, s.subset) for s in scores}
    status.scores = [s for s in status.scores if (s.dataset, s.metric, s.subset) not in keys] + scores


def fold_depth(status: ServeBenchmarkStatus, rows: list[DepthPointResult]) -> None:
    depths = {r.depth for r in rows}
    status.depth = sorted([r for r in status.depth if r.depth not in depths] + rows, key=lambda r: r.depth)


def outcome(status: ServeBenchmarkStatus) -> str:
    """What a finished benchmark measured, e.g. "3 load point(s), 19 score(s)"."""
    parts = [
        (len(status.results), "load point(s)"),
        (len(status.scores), "score(s)"),
        (len(status.depth), "depth row(s)"),
        (len(status.llama_bench), "llama-bench test(s)"),
        (len(status.llama_benchy), "llama-benchy row(s)"),
        (1 if status.offline_throughput else 0, "offline throughput"),
    ]
    return ", ".join(f"{n} {what}" for n, what in parts if n) or "nothing measured"


def step_failure(kind: str, title: str, result: dict[str, Any] | None, fallback: str) -> tuple[str, str]:
    """Reason and message of a failed worker step, from what it published.

    A load point that measured requests but failed a validity check is InvalidResult; one that measured
    nothing (the load generator itself failed) is LoadFailed, like any other failed load step.
    """
    reason = {"points": "LoadFailed", "warmup": "LoadFailed", "depth": "LoadFailed", "scores": "EvalFailed",
              "quant": "QuantizeFailed"}.get(kind, "LoadFailed")  # fmt: skip
    points = (result or {}).get("points") or []
    invalid = [p for p in points if not p.get("valid", True)]
    measured = [p for p in invalid if (p.get("succeeded") or 0) + (p.get("failed") or 0) > 0]
    if measured:
        return "InvalidResult", f"{title}: {measured[0].get('reason')}"
    why = (invalid[0].get("reason") if invalid else None) or (result or {}).get("reason") or fallback
    return reason, f"{title}: {why}"


BASE_NAMES = ("F16", "BF16", "F32", "BASE")


def pick_variant(status: QuantJobStatus, wanted: str | None) -> QuantVariantResult | None:
    """The output a benchmark asked for: by name ("IQ4_XS" matches "IQ4_XS+imatrix"; "F16" the base),
    or, with no name, the first quantized output."""
    candidates = ([status.base] if status.base else []) + status.variants
    if not wanted:
        return status.variants[0] if status.variants else None
    w = wanted.lower()
    exact = [v for v in candidates if v.name.lower() == w]
    loose = [v for v in candidates if v.name.split("+")[0].lower() == w]
    return (exact or loose)[0] if exact or loose else None


def summarize(status: ServeBenchmarkStatus, total_points: int) -> BenchmarkSummary:
    valid = [r for r in status.results if r.valid]
    tps = [r.output_tokens_per_second for r in valid if r.output_tokens_per_second is not None]
    ttft = [r.avg_ttft_seconds for r in valid if r.avg_ttft_seconds is not None]
    single = [r.output_tokens_per_second for r in valid if r.concurrency == 1]
    return BenchmarkSummary(
        max_output_tokens_per_second=round(max(tps), 2) if tps else None,
        single_stream_tokens_per_second=round(single[0], 2) if single and single[0] is not None else None,
        min_ttft_seconds=round(min(ttft), 4) if ttft else None,
        points=f"{len(status.results)}/{total_points}",
    )


def fold_benchmark(
    status: ServeBenchmarkStatus, step: WorkerStep, result: dict[str, Any] | None, points: int
) -> None:
    if not result:
        return
    if step.result == "points":
        fold_points(status, [LoadPointResult.model_validate(p) for p in result.get("points", [])], points)
    elif step.result == "scores":
        fold_scores(status, [EvalScore.model_validate(s) for s in result.get("scores", [])])
    elif step.result == "depth":
        # the depth worker publishes its rows as "points" (servelab.workers.depth)
        rows = result.get("depth") or result.get("points") or []
        fold_depth(status, [DepthPointResult.model_validate(r) for r in rows])
    elif step.result == "bench":
        status.llama_bench = [LlamaBenchResult.model_validate(r) for r in result.get("bench", [])]
    elif step.result == "benchy":
        status.llama_benchy = [LlamaBenchyResult.model_validate(r) for r in result.get("benchy", [])]
    elif step.result == "offline" and result.get("offline"):
        status.offline_throughput = OfflineThroughputResult.model_validate(result["offline"])


def fold_quant(status: QuantJobStatus, result: dict[str, Any]) -> None:
    if result.get("base"):
        status.base = QuantVariantResult.model_validate(result["base"])
    variants = [QuantVariantResult.model_validate(v) for v in result.get("variants", [])]
    # workers list the unquantized model among their outputs (F16 for GGUF, BASE for llm-compressor)
    base = next((v for v in variants if v.name.upper() in BASE_NAMES), None)
    if base is not None:
        status.base = status.base or base
        variants = [v for v in variants if v.name.upper() not in BASE_NAMES]
    if variants:
        status.variants = variants
    summarize_quant(status)


def fold_variant_run(
    status: QuantJobStatus, variant: str, run: ServeBenchmarkStatus, speed: QuantSpeed | None
) -> None:
    """What one output's scoring run measured onto that output's row: its task scores, its serving
    footprint (the run's status.footprint, as recorded) and, with spec.evaluation.speed, its output tok/s
    at each concurrency of the sweep (speed-ups are set by relate_to_base)."""
    for v in ([status.base] if status.base else []) + status.variants:
        if v.name != variant:
            continue
        v.scores = list(run.scores)
        v.footprint = run.footprint.model_copy() if run.footprint else None
        v.speed = _speed_points(run, speed) if speed else []
    summarize_quant(status)


def _speed_points(run: ServeBenchmarkStatus, speed: QuantSpeed) -> list[QuantSpeedPoint]:
    """One row per concurrency of the sweep, in its order: the point's output tok/s when it is valid."""
    points = []
    for k, c in enumerate(speed.concurrency):
        r = run.results[k] if k < len(run.results) else None
        if r is None:
            missing = (
                "the scoring run failed before this point" if run.phase == "Failed" else "not measured yet"
            )
            points.append(QuantSpeedPoint(concurrency=c, reason=missing))
        elif not r.valid or not r.output_tokens_per_second:
            why = (r.reason or "invalid") if not r.valid else "the point measured no output tokens"
            points.append(QuantSpeedPoint(concurrency=c, reason=f"point invalid: {why}"))
        else:
            points.append(QuantSpeedPoint(concurrency=c, output_tokens_per_second=r.output_tokens_per_second,
                                          valid=True))  # fmt: skip
    return points


def base_bytes(status: QuantJobStatus) -> int | None:
    """The unquantized model's size: its own sizeBytes, else what its scoring run's model step measured."""
    base = status.base
    if base is None:
        return None
    if base.size_bytes:
        return base.size_bytes
    return base.footprint.model_bytes if base.footprint and base.footprint.model_bytes else None


def relate_to_base(status: QuantJobStatus) -> None:
    """Each output against the unquantized model: sizeRatio (bytes over the base's) and, per concurrency,
    speedup (output tok/s over the base's at the same concurrency), only where both figures are known and
    valid; a speed point without a speed-up says why."""
    ref = base_bytes(status)
    base = status.base
    by_c = {p.concurrency: p for p in base.speed} if base else {}
    if base is not None:
        base.size_ratio = None
        for p in base.speed:
            p.speedup = None
    for v in status.variants:
        v.size_ratio = round(v.size_bytes / ref, 4) if v.size_bytes is not None and ref else None
        for p in v.speed:
            p.speedup = None
            b = by_c.get(p.concurrency)
            if not p.valid:
                continue  # the point's own reason stands
            if b is None:
                p.reason = f"no speed-up: the base has no point at concurrency {p.concurrency}"
            elif not b.valid or not b.output_tokens_per_second:
                p.reason = (
                    f"no speed-up: the base's point at concurrency {p.concurrency} is not valid ({b.reason})"
                )
            else:
                assert p.output_tokens_per_second is not None
                p.speedup, p.reason = round(p.output_tokens_per_second / b.output_tokens_per_second, 4), None


def _is_accuracy(metric: str) -> bool:
    return "acc" in metric


def _is_rouge_l_f1(metric: str) -> bool:  # evalscope 1.x: mean_rouge[statistic=f1,variant=l]; 0.x: Rouge-L-F
    return (
        "rouge" in metric
        and ("variant=l" in metric or "rouge-l" in metric)
        and ("f1" in metric or metric.endswith("-f"))
    )


def primary_score(scores: list[EvalScore]) -> EvalScore | None:
    """The score a one-line summary shows: accuracy if there is one, else ROUGE-L F1, else the first; the
    data set's OVERALL row when it has one."""
    for good in (_is_accuracy, _is_rouge_l_f1):
        found = next((s for s in scores if good(s.metric.lower())), None)
        if found:  # of a data set with several subsets, its OVERALL row (MMLU's, not its first subject's)
            overall = (
                s
                for s in scores
                if (s.dataset, s.metric, s.subset) == (found.dataset, found.metric, "OVERALL")
            )
            return next(overall, found)
    return scores[0] if scores else None


def summarize_quant(status: QuantJobStatus) -> None:
    total = sum(v.size_bytes or 0 for v in status.variants)
    scored = [v for v in status.variants if v.perplexity is not None]
    best = min(scored, key=lambda v: v.perplexity or 0.0) if scored else None

    def score(v: QuantVariantResult) -> str:
        sc = primary_score(v.scores)
        return f" {sc.dataset} {sc.metric} {sc.score:.3f}" if sc else ""

    base = status.base
    headline = ", ".join(
        f"{v.name} {v.size_bytes / 2**20:.1f}MiB" + (f" ppl {v.perplexity:.2f}" if v.perplexity else "") + score(v)
        for v in status.variants if v.size_bytes is not None
    )  # fmt: skip
    if headline and base and base.scores:
        headline += f" (base{score(base)})"
    status.summary = QuantJobSummary(best_variant=best.name if best else None, headline=headline or None,
                                     output_bytes=total or None)  # fmt: skip
