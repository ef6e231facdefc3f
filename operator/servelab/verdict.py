"""Verdicts, pure: a finished run's results judged against its gate (spec.slo, spec.baseline, QuantJob
spec.acceptance). The decision core calls these once a run has succeeded; the result goes into
status.verdict and the Passed / Ready / Stalled conditions.

Definitions (docs/operator.md repeats them):
- a point meets the SLO when every bound set holds for it: the latency bounds at `slo.percentile` over its
  successful requests, its success rate, its output tok/s per GPU and per user (divided by concurrency);
- goodput (DistServe's definition) is the rate of requests that met every per-request bound (TTFT, TPOT,
  end-to-end latency) over the point's duration, in requests/s and in their output tokens/s;
- the highest concurrency meeting the SLO is the largest measured concurrency up to which every point
  meets it, moved towards the next (failing) point by linear interpolation of the binding measurement
  to where it crosses its bound; beyond the last measured point nothing is extrapolated.
"""

from __future__ import annotations

from typing import Any

from servelab.api.quantjob import QuantJobSpec, QuantJobStatus
from servelab.api.results import LoadPointResult
from servelab.api.servebenchmark import ServeBenchmarkSpec, ServeBenchmarkStatus
from servelab.api.verdict import Baseline, Check, Slo, SloSummary, Verdict, VerdictReason

# the load fields that make two sweeps comparable (the model, engine and flags are what one compares)
WORKLOAD_FIELDS = ("minPromptLength", "maxPromptLength", "prefixLength", "maxTokens", "minTokens", "ignoreEos",
                   "dataset", "datasetPath", "generator", "endpoint", "stream", "temperature", "rate")  # fmt: skip


def _pct(point: LoadPointResult, metric: str, pct: str) -> float | None:
    table = getattr(point.percentiles, metric, None) if point.percentiles else None
    value = getattr(table, pct, None) if table is not None else None
    if value is None and pct == "p99":  # results published before per-point percentiles existed
        value = {"ttft_seconds": point.p99_ttft_seconds, "tpot_seconds": point.p99_tpot_seconds,
                 "latency_seconds": point.p99_latency_seconds}[metric]  # fmt: skip
    return value


def slo_checks(slo: Slo, point: LoadPointResult, gpus: int) -> list[Check]:
    c = point.concurrency
    subject = f"c={c}"
    checks: list[Check] = []

    def at_most(name: str, measured: float | None, bound: float) -> None:
        ok = measured is not None and measured <= bound
        why = None if ok else ("not measured" if measured is None else f"{measured:.4g} > {bound:g}")
        checks.append(Check(name=f"{name} @ {subject}", subject=subject, threshold=bound, measured=measured,
                            passed=ok, message=why))  # fmt: skip

    def at_least(name: str, measured: float | None, bound: float) -> None:
        ok = measured is not None and measured >= bound
        why = None if ok else ("not measured" if measured is None else f"{measured:.4g} < {bound:g}")
        checks.append(Check(name=f"{name} @ {subject}", subject=subject, threshold=bound, measured=measured,
                            passed=ok, message=why))  # fmt: skip

    p = slo.percentile
    if slo.ttft_seconds is not None:
        at_most(f"ttftSeconds {p}", _pct(point, "ttft_seconds", p), slo.ttft_seconds)
    if slo.tpot_seconds is not None:
        at_most(f"tpotSeconds {p}", _pct(point, "tpot_seconds", p), slo.tpot_seconds)
    if slo.e2e_latency_seconds is not None:
        at_most(f"e2eLatencySeconds {p}", _pct(point, "latency_seconds", p), slo.e2e_latency_seconds)
    if slo.min_success_rate is not None:
        at_least("successRate", point.success_rate, slo.min_success_rate)
    tps = point.output_tokens_per_second
    if slo.min_output_tokens_per_second_per_gpu is not None:
        at_least("outputTokensPerSecondPerGpu", None if tps is None else tps / max(gpus, 1),
                 slo.min_output_tokens_per_second_per_gpu)  # fmt: skip
    if slo.min_output_tokens_per_second_per_user is not None:
        at_least("outputTokensPerSecondPerUser", None if tps is None else tps / c,
                 slo.min_output_tokens_per_second_per_user)  # fmt: skip
    return checks


def _crossing(lo: tuple[float, float], hi: tuple[float, float], bound: float) -> float:
    """Where the line through (c_lo, v_lo) and (c_hi, v_hi) crosses bound, clamped to [c_lo, c_hi]."""
    (c0, v0), (c1, v1) = lo, hi
    if v1 == v0:
        return c0
    c = c0 + (bound - v0) * (c1 - c0) / (v1 - v0)
    return min(max(c, c0), c1)


def slo_headline(slo: Slo, points: list[LoadPointResult], gpus: int) -> SloSummary:
    ordered = sorted((p for p in points if p.valid), key=lambda p: p.concurrency)
    meets = [all(ch.passed for ch in slo_checks(slo, p, gpus)) for p in ordered]
    if not ordered or not meets[0]:
        first = f"c={ordered[0].concurrency}" if ordered else "no point"
        return SloSummary(
            max_concurrency=None, method=f"not met at the lowest measured concurrency ({first})"
        )
    last = 0
    while last + 1 < len(ordered) and meets[last + 1]:
        last += 1
    lo = ordered[last]
    if last == len(ordered) - 1:
        return SloSummary(max_concurrency=float(lo.concurrency), goodput_rps=lo.goodput_rps,
                          goodput_output_tokens_per_second=lo.goodput_output_tokens_per_second,
                          method="every measured point meets the SLO: the highest measured concurrency "
                                 "(not extrapolated)")  # fmt: skip
    hi = ordered[last + 1]
    crossings = []
    for a, b in zip(slo_checks(slo, lo, gpus), slo_checks(slo, hi, gpus), strict=True):
        if b.passed or a.measured is None or b.measured is None or a.threshold is None:
            continue
        crossings.append((_crossing((lo.concurrency, a.measured), (hi.concurrency, b.measured), a.threshold),
                          a.name.split(" @ ")[0]))  # fmt: skip
    c, what = (
        min(crossings) if crossings else (float(lo.concurrency), "a check not measured at the next point")
    )
    frac = (c - lo.concurrency) / (hi.concurrency - lo.concurrency)

    def lerp(a: float | None, b: float | None) -> float | None:
        return None if a is None or b is None else round(a + frac * (b - a), 4)

    return SloSummary(
        max_concurrency=round(c, 2), goodput_rps=lerp(lo.goodput_rps, hi.goodput_rps),
        goodput_output_tokens_per_second=lerp(lo.goodput_output_tokens_per_second,
                                              hi.goodput_output_tokens_per_second),
        method=f"linear interpolation of {what} between c={lo.concurrency} (met) and c={hi.concurrency} "
               "(not met); goodput interpolated the same way",
    )  # fmt: skip


def workload(spec: dict[str, Any]) -> dict[str, Any]:
    load = spec.get("load") or {}
    return {k: load.get(k) for k in WORKLOAD_FIELDS}


def baseline_checks(
    baseline: Baseline, spec: ServeBenchmarkSpec, status: ServeBenchmarkStatus, found: dict[str, Any] | None
) -> tuple[list[Check], VerdictReason | None, str]:
    """Checks against the baseline at every concurrency both measured, or why no comparison was made."""
    what = f"ServeBenchmark {baseline.name}" if baseline.name else f"ConfigMap {baseline.config_map_name}"
    if found is None:
        return [], "BaselineNotFound", f"{what} does not exist"
    mine, theirs = workload(spec.to_wire()), workload(found.get("spec") or {})
    if ServeBenchmarkSpec.model_validate(found.get("spec") or {}).load:
        theirs = workload(ServeBenchmarkSpec.model_validate(found["spec"]).to_wire())  # with its defaults
    differ = [
        f"{k}: {mine[k]!r} here, {theirs[k]!r} in the baseline"
        for k in WORKLOAD_FIELDS
        if mine[k] != theirs[k]
    ]
    if differ:  # whatever its state: another workload is never compared
        return [], "BaselineIncomparable", f"{what} measured a different workload ({'; '.join(differ)})"
    bstatus = ServeBenchmarkStatus.model_validate(found.get("status") or {})
    if bstatus.phase != "Succeeded":
        return [], "BaselineNotFound", f"{what} has not succeeded ({bstatus.phase or 'no status'})"
    base = {p.concurrency: p for p in bstatus.results if p.valid}
    t = baseline.tolerances
    checks: list[Check] = []
    for p in status.results:
        b = base.get(p.concurrency)
        if b is None or not p.valid:
            continue
        subject = f"c={p.concurrency}"
        pairs = [
            ("outputTokensPerSecond", p.output_tokens_per_second, b.output_tokens_per_second,
             t.min_output_tokens_per_second_ratio, True),
            ("p99TtftSeconds", p.p99_ttft_seconds, b.p99_ttft_seconds, t.max_p99_ttft_ratio, False),
            ("p99TpotSeconds", p.p99_tpot_seconds, b.p99_tpot_seconds, t.max_p99_tpot_ratio, False),
            ("p99LatencySeconds", p.p99_latency_seconds, b.p99_latency_seconds, t.max_p99_latency_ratio, False),
        ]  # fmt: skip
        for name, mine_v, base_v, ratio, floor in pairs:
            if ratio is None:
                continue
            if mine_v is None or base_v is None:
                checks.append(Check(name=f"{name} vs baseline @ {subject}", subject=subject, passed=False,
                                    message="not measured in both runs"))  # fmt: skip
                continue
            bound = base_v * ratio
            ok = mine_v >= bound if floor else mine_v <= bound
            rel = f"{mine_v / base_v:.3f}x the baseline's {base_v:.4g}" if base_v else "baseline 0"
            checks.append(Check(name=f"{name} vs baseline @ {subject}", subject=subject, threshold=round(bound, 6),
                                measured=mine_v, passed=ok, message=None if ok else rel))  # fmt: skip
    if not checks:
        return [], "BaselineIncomparable", f"{what} has no valid point at a concurrency this run measured"
    return checks, None, what


def benchmark_verdict(
    spec: ServeBenchmarkSpec, status: ServeBenchmarkStatus, baseline: dict[str, Any] | None, gpus: int
) -> Verdict:
    checks: list[Check] = []
    headline = None
    reason: VerdictReason | None = None
    notes: list[str] = []
    if spec.slo:
        wanted = set(spec.slo.concurrency)
        measured = {p.concurrency for p in status.results}
        for p in status.results:
            if not wanted or p.concurrency in wanted:
                checks += slo_checks(spec.slo, p, gpus)
        for c in sorted(wanted - measured):
            checks.append(Check(name=f"slo @ c={c}", subject=f"c={c}", passed=False, message="not measured"))
        headline = slo_headline(spec.slo, status.results, gpus)
        if not all(ch.passed for ch in checks):
            reason = "SLONotMet"
    compared = None
    if spec.baseline:
        bchecks, refused, what = baseline_checks(spec.baseline, spec, status, baseline)
        compared = what
        if refused:
            reason = reason or refused
            notes.append(what)
            checks.append(Check(name="baseline", passed=False, message=what))
        else:
            checks += bchecks
            if not all(ch.passed for ch in bchecks):
                reason = reason or "BaselineRegressed"
    return _verdict(checks, reason, notes, slo=headline, baseline=compared)


def quant_verdict(spec: QuantJobSpec, status: QuantJobStatus) -> Verdict:
    acc = spec.acceptance
    checks: list[Check] = []
    if acc is None:
        return _verdict(checks, None, [])
    base = status.base
    for v in status.variants:
        subject = v.name
        if acc.max_perplexity_increase_percent is not None:
            rise = None
            if v.perplexity is not None and base is not None and base.perplexity:
                rise = round((v.perplexity - base.perplexity) / base.perplexity * 100, 4)
            ok = rise is not None and rise <= acc.max_perplexity_increase_percent
            checks.append(Check(name=f"perplexityIncreasePercent {subject}", subject=subject,
                                threshold=acc.max_perplexity_increase_percent, measured=rise, passed=ok,
                                message=None if ok else ("not measured" if rise is None else f"+{rise:g}%")))  # fmt: skip
        if acc.max_mean_kld is not None:
            kld = v.kl_divergence
            ok = kld is not None and kld <= acc.max_mean_kld
            checks.append(Check(name=f"meanKld {subject}", subject=subject, threshold=acc.max_mean_kld, measured=kld,
                                passed=ok, message=None if ok else ("not measured" if kld is None else f"{kld:.6g}")))  # fmt: skip
        for drop in acc.max_score_drop:
            base_scores = [s for s in (base.scores if base else []) if s.dataset == drop.dataset
                           and (drop.metric is None or s.metric == drop.metric)]  # fmt: skip
            if not base_scores:
                checks.append(Check(name=f"scoreDrop {drop.dataset} {subject}", subject=subject,
                                    threshold=drop.max_drop, passed=False, message="no base score"))  # fmt: skip
            for bs in base_scores:
                mine = next(
                    (
                        s
                        for s in v.scores
                        if (s.dataset, s.metric, s.subset) == (bs.dataset, bs.metric, bs.subset)
                    ),
                    None,
                )
                d = None if mine is None else round(bs.score - mine.score, 6)
                ok = d is not None and d <= drop.max_drop
                label = f"scoreDrop {bs.dataset} {bs.metric}{' ' + bs.subset if bs.subset else ''} {subject}"
                checks.append(Check(name=label, subject=subject, threshold=drop.max_drop, measured=d, passed=ok,
                                    message=None if ok else ("not scored" if d is None else f"dropped {d:g}")))  # fmt: skip
    reason: VerdictReason | None = None if all(c.passed for c in checks) else "AcceptanceNotMet"
    return _verdict(checks, reason, [])


def _verdict(checks: list[Check], reason: VerdictReason | None, notes: list[str], **extra: Any) -> Verdict:
    failed = [c for c in checks if not c.passed]
    if reason is None and failed:
        reason = "SLONotMet"
    if reason is None:
        reason = "AllChecksPassed" if checks else "NoChecks"
    message = "; ".join([*(f"{c.name}: {c.message}" for c in failed if c.name != "baseline"), *notes]) or None
    passed = reason in ("AllChecksPassed", "NoChecks")
    if message and len(message) > 2000:
        message = message[:1990] + " ..."
    return Verdict(passed=passed, reason=reason, message=message, checks=checks, **extra)


__all__ = ["benchmark_verdict", "quant_verdict", "slo_checks", "slo_headline", "workload"]
