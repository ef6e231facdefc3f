"""Prometheus metrics: results (rebuilt from each resource's status, so a restart loses nothing) and
the operator's own health. Labels are bounded: namespace, name, engine, model, quantization,
concurrency, dataset/metric, variant, the workload in words (reporting.workload.describe); never run ids
or prompts."""

from __future__ import annotations

import contextlib
import threading
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from servelab.api.quantjob import QuantJobStatus
from servelab.api.servebenchmark import ServeBenchmarkStatus
from servelab.reporting import workload as workloads

REGISTRY = CollectorRegistry()
BENCH = ["namespace", "name", "engine", "model", "quantization"]
POINT = [*BENCH, "concurrency"]

output_tps = Gauge(
    "servelab_load_output_tokens_per_second",
    "Generated tokens per second at a load point.",
    POINT,
    registry=REGISTRY,
)
rps = Gauge(
    "servelab_load_requests_per_second",
    "Successful requests per second at a load point.",
    POINT,
    registry=REGISTRY,
)
ttft = Gauge(
    "servelab_load_ttft_seconds",
    "Time to first token at a load point (statistic: mean or p99).",
    [*POINT, "statistic"],
    registry=REGISTRY,
)
tpot = Gauge(
    "servelab_load_tpot_seconds",
    "Time per output token at a load point (statistic: mean or p99).",
    [*POINT, "statistic"],
    registry=REGISTRY,
)
latency = Gauge(
    "servelab_load_latency_seconds",
    "Request latency at a load point (statistic: mean or p99).",
    [*POINT, "statistic"],
    registry=REGISTRY,
)
success = Gauge(
    "servelab_load_success_ratio",
    "Successful requests / requests at a load point (0..1).",
    POINT,
    registry=REGISTRY,
)
score = Gauge(
    "servelab_eval_score",
    "Evaluation score of a served model.",
    [*BENCH, "dataset", "metric", "subset"],
    registry=REGISTRY,
)
quant_score = Gauge(
    "servelab_quant_score",
    "Task score of a QuantJob output (or the base), served and evaluated with evalscope.",
    ["namespace", "name", "method", "variant", "dataset", "metric", "subset"],
    registry=REGISTRY,
)
quant_duration = Gauge(
    "servelab_quant_duration_seconds",
    "Time a quantization took.",
    ["namespace", "name", "method", "variant"],
    registry=REGISTRY,
)
quant_size = Gauge(
    "servelab_quant_size_bytes",
    "Size of a quantized output.",
    ["namespace", "name", "method", "variant"],
    registry=REGISTRY,
)
quant_ppl = Gauge(
    "servelab_quant_perplexity",
    "Perplexity of a quantized output (or the base).",
    ["namespace", "name", "method", "variant"],
    registry=REGISTRY,
)
quant_kld = Gauge(
    "servelab_quant_kl_divergence",
    "Mean KL divergence of a quantized output from the base model.",
    ["namespace", "name", "method", "variant"],
    registry=REGISTRY,
)
quant_base = Gauge(
    "servelab_quant_base_info",
    "1 for the unquantized output (F16, BASE) a QuantJob's variants are compared with.",
    ["namespace", "name", "method", "variant"],
    registry=REGISTRY,
)
benchmark_info = Gauge(
    "servelab_benchmark_info",
    "1 per ServeBenchmark: what it serves and the workload it measured (same workload: comparable runs).",
    [*BENCH, "workload"],
    registry=REGISTRY,
)
run_failed = Gauge(
    "servelab_run_failed",
    "1 while the run of a resource's current spec has failed (reason: its Failed condition's).",
    ["kind", "namespace", "name", "reason"],
    registry=REGISTRY,
)
goodput_rps = Gauge(
    "servelab_goodput_requests_per_second",
    "Requests per second meeting every per-request bound of spec.slo at a load point (goodput).",
    POINT,
    registry=REGISTRY,
)
goodput_tps = Gauge(
    "servelab_goodput_output_tokens_per_second",
    "Output tokens per second of the requests meeting every per-request bound of spec.slo.",
    POINT,
    registry=REGISTRY,
)
slo_attainment = Gauge(
    "servelab_slo_attainment_ratio",
    "Share of a load point's requests meeting every per-request bound of spec.slo (0..1).",
    POINT,
    registry=REGISTRY,
)
max_concurrency_under_slo = Gauge(
    "servelab_max_concurrency_under_slo",
    "Highest concurrency meeting spec.slo (interpolated between measured points; see status.verdict.slo).",
    BENCH,
    registry=REGISTRY,
)
verdict_passed = Gauge(
    "servelab_verdict_passed",
    "1 when the resource's finished run passed its gate (SLO, baseline, acceptance), 0 when it did not.",
    ["kind", *BENCH, "reason"],
    registry=REGISTRY,
)
phase_gauge = Gauge(
    "servelab_resources", "Resources by kind and phase.", ["kind", "phase"], registry=REGISTRY
)
reconciles = Counter(
    "servelab_reconciles", "Reconciliations by kind and outcome.", ["kind", "outcome"], registry=REGISTRY
)
reconcile_seconds = Histogram(
    "servelab_reconcile_duration_seconds", "Time of one reconciliation.", ["kind"], registry=REGISTRY
)

Key = tuple[str, str, str]  # (kind, namespace, name)
# Handlers may run on several threads (kopf runs sync handlers in a thread pool, scrapes come from the
# HTTP server's thread): every change to the series and the phase table holds this lock, and the phase
# counts change by one resource at a time (no clear-and-recount a scrape could see half done).
_lock = threading.RLock()
_phases: dict[Key, str] = {}
_counts: dict[tuple[str, str], int] = {}  # (kind, phase) -> resources
_series: dict[Key, list[tuple[Gauge, tuple[str, ...]]]] = {}  # what each resource has set, to remove it


def _set(key: Key, gauge: Gauge, labels: list[str], value: float) -> None:
    gauge.labels(*labels).set(value)
    _series.setdefault(key, []).append((gauge, tuple(labels)))


def forget(kind: str, namespace: str, name: str) -> None:
    with _lock:
        _forget(kind, namespace, name)


def _count(kind: str, phase: str, delta: int) -> None:
    n = _counts.get((kind, phase), 0) + delta
    if n > 0:
        _counts[(kind, phase)] = n
        phase_gauge.labels(kind, phase).set(n)
    else:
        _counts.pop((kind, phase), None)
        with contextlib.suppress(KeyError):
            phase_gauge.remove(kind, phase)


def _forget(kind: str, namespace: str, name: str) -> None:
    key = (kind, namespace, name)
    for gauge, labels in _series.pop(key, []):
        with contextlib.suppress(KeyError):  # already gone: the same series set twice
            gauge.remove(*labels)
    phase = _phases.pop(key, None)
    if phase is not None:
        _count(kind, phase, -1)


def resources() -> dict[tuple[str, str], int]:
    """Resources by (kind, phase), as the phase gauge says."""
    with _lock:
        return dict(_counts)


def observe(kind: str, body: dict[str, Any]) -> None:
    """(Re)build every series of one resource from its status."""
    with _lock:
        _observe(kind, body)


def _observe(kind: str, body: dict[str, Any]) -> None:
    meta = body.get("metadata", {})
    ns, name = meta.get("namespace", ""), meta.get("name", "")
    key = (kind, ns, name)
    _forget(kind, ns, name)
    raw = body.get("status") or {}
    _phases[key] = raw.get("phase") or "Pending"
    _count(kind, _phases[key], +1)
    if raw.get("phase") == "Failed":
        why = next((c.get("reason") for c in raw.get("conditions") or [] if c.get("type") == "Failed"), None)
        _set(key, run_failed, [kind, ns, name, why or "Unknown"], 1.0)
    if kind == "ServeBenchmark":
        s = ServeBenchmarkStatus.model_validate(raw)
        base = [
            ns,
            name,
            s.engine or body.get("spec", {}).get("engine", {}).get("name", ""),
            s.model or "",
            s.quantization or "",
        ]
        described = workloads.describe(workloads.of_spec(body.get("spec")))
        _set(key, benchmark_info, [*base, described], 1.0)
        for r in s.results:
            if not r.valid:
                continue
            labels = [*base, str(r.concurrency)]
            for g, v in ((output_tps, r.output_tokens_per_second), (rps, r.rps), (success, r.success_rate)):
                if v is not None:
                    _set(key, g, labels, v)
            for g, mean, p99 in ((ttft, r.avg_ttft_seconds, r.p99_ttft_seconds), (tpot, r.avg_tpot_seconds, r.p99_tpot_seconds),
                                 (latency, r.avg_latency_seconds, r.p99_latency_seconds)):  # fmt: skip
                if mean is not None:
                    _set(key, g, [*labels, "mean"], mean)
                if p99 is not None:
                    _set(key, g, [*labels, "p99"], p99)
            for g, v in ((goodput_rps, r.goodput_rps), (goodput_tps, r.goodput_output_tokens_per_second),
                         (slo_attainment, r.slo_attainment)):  # fmt: skip
                if v is not None:
                    _set(key, g, labels, v)
        for sc in s.scores:
            _set(key, score, [*base, sc.dataset, sc.metric, sc.subset or ""], sc.score)
        if s.verdict is not None:
            _set(key, verdict_passed, [kind, *base, s.verdict.reason], 1.0 if s.verdict.passed else 0.0)
            if s.verdict.slo is not None and s.verdict.slo.max_concurrency is not None:
                _set(key, max_concurrency_under_slo, base, s.verdict.slo.max_concurrency)
    else:
        q = QuantJobStatus.model_validate(raw)
        method = body.get("spec", {}).get("method", "")
        if q.base is not None:
            _set(key, quant_base, [ns, name, method, q.base.name], 1.0)
        for variant in ([q.base] if q.base else []) + q.variants:
            labels = [ns, name, method, variant.name]
            for g, v in ((quant_duration, variant.duration_seconds), (quant_size, variant.size_bytes),
                         (quant_ppl, variant.perplexity), (quant_kld, variant.kl_divergence)):  # fmt: skip
                if v is not None:
                    _set(key, g, labels, float(v))
            for sc in variant.scores:
                _set(key, quant_score, [*labels, sc.dataset, sc.metric, sc.subset or ""], sc.score)
        if q.verdict is not None:
            labels = [kind, ns, name, "", q.model or "", method, q.verdict.reason]
            _set(key, verdict_passed, labels, 1.0 if q.verdict.passed else 0.0)
