"""Gates and verdicts: what a run must show to pass (SLOs, a baseline, quantization acceptance) and the
verdict the operator writes into status. A run that worked but failed its gate is Succeeded with
Passed=False (and Ready=False, Stalled=True), never Failed."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from servelab.api.base import ApiModel

Percentile = Literal["p50", "p90", "p95", "p99"]


class Slo(ApiModel):
    """Per-request latency bounds at a percentile, and per-point floors. A point meets the SLO when every
    bound set here holds for it; goodput counts the requests that meet every per-request bound."""

    __cel__ = [
        ("has(self.ttftSeconds) || has(self.tpotSeconds) || has(self.e2eLatencySeconds) || has(self.minSuccessRate)"
         " || has(self.minOutputTokensPerSecondPerGpu) || has(self.minOutputTokensPerSecondPerUser)",
         "spec.slo needs at least one bound (ttftSeconds, tpotSeconds, e2eLatencySeconds, minSuccessRate, "
         "minOutputTokensPerSecondPerGpu or minOutputTokensPerSecondPerUser)", ""),
    ]  # fmt: skip

    percentile: Percentile = Field("p99", description="Percentile the latency bounds apply to (per point).")
    ttft_seconds: float | None = Field(None, gt=0, le=86400, description="Time to first token bound.")
    tpot_seconds: float | None = Field(None, gt=0, le=3600, description="Time per output token bound.")
    e2e_latency_seconds: float | None = Field(
        None, gt=0, le=604800, alias="e2eLatencySeconds", description="End-to-end latency bound."
    )
    min_success_rate: float | None = Field(None, ge=0, le=1, description="Lowest success rate of a point.")
    min_output_tokens_per_second_per_gpu: float | None = Field(
        None, gt=0, description="Lowest output tok/s of a point divided by the server's GPUs (1 on CPU)."
    )
    min_output_tokens_per_second_per_user: float | None = Field(
        None, gt=0, description="Lowest output tok/s of a point divided by its concurrency."
    )
    concurrency: list[Annotated[int, Field(ge=1, le=1000000)]] = Field(
        default_factory=list, max_length=64,
        description="Concurrencies whose points must meet the SLO for the run to pass (default: every point).",
    )  # fmt: skip


class Tolerances(ApiModel):
    """How far a run may fall behind its baseline at each concurrency both measured (ratios to the baseline)."""

    min_output_tokens_per_second_ratio: float | None = Field(
        0.95, gt=0, le=100, description="Output tok/s must be at least this fraction of the baseline's."
    )
    max_p99_ttft_ratio: float | None = Field(
        1.10, gt=0, le=100, description="p99 TTFT may be at most this multiple of the baseline's."
    )
    max_p99_tpot_ratio: float | None = Field(
        None, gt=0, le=100, description="p99 TPOT may be at most this multiple of the baseline's."
    )
    max_p99_latency_ratio: float | None = Field(
        None,
        gt=0,
        le=100,
        description="p99 end-to-end latency may be at most this multiple of the baseline's.",
    )


class Baseline(ApiModel):
    """The run this one is compared with: another ServeBenchmark of the namespace, or a result saved in a
    ConfigMap (`servelab baseline save`) so a baseline outlives its resource."""

    __cel__ = [
        ("has(self.name) != has(self.configMapName)",
         "spec.baseline needs exactly one of name (a ServeBenchmark) or configMapName (a saved result)", ""),
    ]  # fmt: skip

    name: str | None = Field(None, max_length=253, description="A ServeBenchmark in the same namespace.")
    config_map_name: str | None = Field(
        None, max_length=253, description="A ConfigMap in the same namespace holding a saved result."
    )
    tolerances: Tolerances = Field(default_factory=Tolerances, description="Allowed regressions.")


class ScoreDrop(ApiModel):
    dataset: str = Field(..., max_length=128, description="Data set, e.g. math_500.")
    metric: str | None = Field(None, max_length=256, description="Metric (default: every metric of it).")
    max_drop: float = Field(..., ge=0, le=100, description="Largest allowed drop below the base (absolute).")


class Acceptance(ApiModel):
    """Per output of a QuantJob, against the unquantized model: what it may cost."""

    __cel__ = [
        ("has(self.maxPerplexityIncreasePercent) || has(self.maxMeanKld) || size(self.maxScoreDrop) > 0",
         "spec.acceptance needs at least one of maxPerplexityIncreasePercent, maxMeanKld, maxScoreDrop", ""),
    ]  # fmt: skip

    max_perplexity_increase_percent: float | None = Field(
        None, ge=0, le=100000, description="Perplexity may rise at most this many percent above the base's."
    )
    max_mean_kld: float | None = Field(
        None, ge=0, le=1000, description="Largest mean KL divergence from the base."
    )
    max_score_drop: list[ScoreDrop] = Field(
        default_factory=list,
        max_length=64,
        description="Largest task-score drops, per data set (and metric).",
    )


class Check(ApiModel):
    """One check of a gate: what was required, what was measured, and whether it held."""

    name: str = Field(..., description="What is checked, e.g. 'ttftSeconds p99 @ c=20'.")
    subject: str | None = Field(None, description="The point (c=N) or output (variant) checked.")
    threshold: float | None = Field(None, description="The bound.")
    measured: float | None = Field(None, description="The measured value (none: not measured).")
    passed: bool = Field(..., description="Whether the check held.")
    message: str | None = Field(None, description="Why, when it did not.")


VerdictReason = Literal[
    "AllChecksPassed", "NoChecks", "SLONotMet", "BaselineRegressed", "BaselineIncomparable", "BaselineNotFound",
    "AcceptanceNotMet", "RunFailed",
]  # fmt: skip


class SloSummary(ApiModel):
    max_concurrency: float | None = Field(
        None, description="Highest concurrency meeting the SLO (interpolated; see method)."
    )
    method: str | None = Field(None, description="How max_concurrency was found.")
    goodput_rps: float | None = Field(None, description="Goodput (requests/s meeting every bound) there.")
    goodput_output_tokens_per_second: float | None = Field(None, description="Goodput output tok/s there.")


class Verdict(ApiModel):
    passed: bool = Field(..., description="Every check held.")
    reason: VerdictReason = Field(..., description="Machine-readable outcome (also the Passed condition's).")
    message: str | None = Field(None, description="The failed checks, in words.")
    checks: list[Check] = Field(default_factory=list, description="Every check with its threshold and value.")
    slo: SloSummary | None = Field(None, description="The SLO headline, when spec.slo is set.")
    baseline: str | None = Field(None, description="What the run was compared with.")


__all__ = [
    "Acceptance", "Baseline", "Check", "Percentile", "ScoreDrop", "Slo", "SloSummary", "Tolerances", "Verdict",
    "VerdictReason",
]  # fmt: skip
