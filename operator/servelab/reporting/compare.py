"""The comparison: runs grouped by workload (incomparable runs are never in one table: each group says what
differs from the first), side-by-side tables per concurrency with deltas against a baseline, verdicts,
evaluation scores, context-depth sweeps and the QuantJob quality tables; and the plots that go with them.

The result is a `Document` (sections of tables and figures), which every output format writes."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from servelab.api.quantjob import QuantJobStatus
from servelab.api.results import EvalScore, LoadPointResult, QuantVariantResult
from servelab.api.servebenchmark import ServeBenchmarkSpec
from servelab.reporting import workload as workloads
from servelab.reporting.sources import Run
from servelab.reporting.tables import Cell, Table


# ---- the document every format writes ------------------------------------------------------------------
@dataclass
class Figure:
    name: str  # file stem, e.g. group-1-sweep
    title: str
    draw: Callable[[], str | None]  # SVG text; None when matplotlib is not installed
    alt: str = ""


@dataclass
class Section:
    title: str
    paragraphs: list[str] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)


@dataclass
class Document:
    title: str
    meta: list[str]
    sections: list[Section]


# ---- figures of a load point -----------------------------------------------------------------------------
def _pct(p: LoadPointResult, metric: str, pct: str) -> float | None:
    table = getattr(p.percentiles, metric, None) if p.percentiles else None
    value: float | None = getattr(table, pct, None) if table is not None else None
    if value is None and pct == "p99":
        value = {"ttft_seconds": p.p99_ttft_seconds, "tpot_seconds": p.p99_tpot_seconds,
                 "latency_seconds": p.p99_latency_seconds}[metric]  # fmt: skip
    return value


@dataclass(frozen=True)
class Metric:
    title: str
    value: Callable[[LoadPointResult], float | None]
    higher_is_better: bool
    fmt: str = "{:.2f}"
    optional: bool = False  # shown only when a run of the group has it


POINT_METRICS = [
    Metric("Output tokens/s", lambda p: p.output_tokens_per_second, True),
    Metric("Requests/s", lambda p: p.rps, True),
    Metric("TTFT mean (s)", lambda p: p.avg_ttft_seconds, False, "{:.3f}"),
    Metric("TTFT p99 (s)", lambda p: _pct(p, "ttft_seconds", "p99"), False, "{:.3f}"),
    Metric("TPOT p99 (s)", lambda p: _pct(p, "tpot_seconds", "p99"), False, "{:.4f}"),
    Metric("Latency p99 (s)", lambda p: _pct(p, "latency_seconds", "p99"), False, "{:.3f}"),
    Metric("Success rate (%)", lambda p: p.success_rate * 100, True, "{:.1f}"),
    Metric("Goodput output tokens/s", lambda p: p.goodput_output_tokens_per_second, True, optional=True),
    Metric("SLO attainment (%)", lambda p: None if p.slo_attainment is None else p.slo_attainment * 100, True,
           "{:.1f}", optional=True),
]  # fmt: skip


def delta(value: float | None, base: float | None, higher_is_better: bool) -> tuple[str | None, bool | None]:
    """The change against the baseline in percent, and whether it is an improvement."""
    if value is None or base is None or base == 0:
        return None, None
    d = (value - base) / abs(base) * 100
    if abs(d) < 0.05:
        return None, None
    return f"{d:+.1f}%", (d > 0) == higher_is_better


def gpus_of(run: Run) -> int:
    """GPUs of the server (resources.gpus, else tensorParallelSize); 1 on CPU, as the SLO checks count."""
    try:
        spec = ServeBenchmarkSpec.model_validate(run.spec)
    except ValueError:
        return 1
    gpus = spec.resources.gpus if spec.resources and spec.resources.gpus is not None else None
    return max(gpus if gpus is not None else spec.engine.tensor_parallel_size, 1)


def short_model(model: str | None) -> str:
    if not model:
        return "-"
    return model if len(model) <= 48 else "..." + model[-45:]


# ---- grouping -------------------------------------------------------------------------------------------
@dataclass
class Group:
    index: int
    workload: dict[str, Any] | None
    runs: list[Run]
    baseline: Run | None
    baseline_note: str
    apart: list[str] = field(default_factory=list)  # what differs from group 1

    @property
    def description(self) -> str:
        return workloads.describe(self.workload)


def _key(w: dict[str, Any] | None) -> str:
    return json.dumps(w, sort_keys=True)


def group_runs(runs: list[Run], baseline: str | None) -> list[Group]:
    by_key: dict[str, list[Run]] = {}
    for r in runs:
        by_key.setdefault(_key(workloads.of_spec(r.spec)), []).append(r)
    groups: list[Group] = []
    named = next((r for r in runs if r.name == baseline), None) if baseline else None
    for i, (_, members) in enumerate(by_key.items(), start=1):
        w = workloads.of_spec(members[0].spec)
        if named is not None and named in members:
            base, note = named, f"deltas against {named.name} (--baseline)"
        elif named is not None:
            why = "; ".join(workloads.differences(workloads.of_spec(named.spec), w))
            base, note = None, f"no deltas: the baseline {named.name} measured another workload ({why})"
        elif baseline:
            base, note = None, f"no deltas: no run named {baseline} here"
        else:
            base, note = (
                members[0],
                f"deltas against {members[0].name} (the first run; choose with --baseline)",
            )
        if len(members) == 1 and base is members[0]:
            note = "a single run: nothing to compare with in this workload"
        groups.append(Group(i, w, members, base, note))
    first = groups[0].workload if groups else None
    for g in groups[1:]:
        g.apart = workloads.differences(first, g.workload)
    return groups


# ---- accuracy next to performance --------------------------------------------------------------------------
def _headline_score(scores: list[EvalScore]) -> str | None:
    """One score to show next to performance: an accuracy over the whole data set when there is one."""
    if not scores:
        return None
    pick = min(
        scores, key=lambda s: ("acc" not in s.metric, s.subset not in (None, "", "OVERALL", "default"))
    )
    return f"{pick.dataset} {pick.metric} {pick.score:.3f}"


def _points(value: float | None, base: float | None) -> tuple[str | None, bool | None]:
    """A score's difference from the base's, in points; nothing when they are equal."""
    if value is None or base is None or abs(value - base) < 5e-5:
        return None, None
    return f"{value - base:+.4f}", value > base


def accuracy_of(run: Run, quantjobs: dict[tuple[str | None, str], Run]) -> str | None:
    """The run's own evaluation score, else the scores of the QuantJob output it serves."""
    own = _headline_score(run.bench.scores)
    if own:
        return own
    ref = run.spec.get("quantJobRef") or {}
    qj = quantjobs.get((run.namespace, ref.get("name", "")))
    if qj is None:
        return None
    variant = ref.get("variant") or run.bench.quantization
    for v in _outputs(qj.quant):
        if v.name == variant or (variant and v.name.split("+")[0] == variant.split("+")[0]):
            return _headline_score(v.scores)
    return None


def _outputs(q: QuantJobStatus) -> list[QuantVariantResult]:
    return ([q.base] if q.base else []) + q.variants


# ---- sections -------------------------------------------------------------------------------------------------
def _fmt(fmt: str, v: float | None) -> str:
    return "-" if v is None else fmt.format(v)


def runs_table(g: Group, accuracy: dict[str, str | None]) -> Table:
    t = Table("Runs",
              ["Run", "Engine", "Model", "Quantization", "GPUs", "Points", "Best tok/s", "c=1 tok/s", "Min TTFT (s)",
               "Verdict", "Max c under SLO", "Goodput tok/s there", "Accuracy"],
              note=g.baseline_note, wide=True)  # fmt: skip
    base_best = (
        g.baseline.bench.summary.max_output_tokens_per_second
        if g.baseline and g.baseline.bench.summary
        else None
    )
    for r in g.runs:
        s = r.bench
        best = s.summary.max_output_tokens_per_second if s.summary else None
        d, better = delta(best, base_best, True) if r is not g.baseline else (None, None)
        v = s.verdict
        verdict = "-" if v is None else ("passed" if v.passed else f"failed: {v.reason}")
        if s.phase == "Failed":
            verdict = "run failed"
        elif s.phase != "Succeeded":
            verdict = (s.phase or "new").lower()
        slo = v.slo if v else None
        t.add(r.name, s.engine or (r.spec.get("engine") or {}).get("name", "-"), short_model(s.model), s.quantization or "-",
              str(gpus_of(r)), (s.summary.points if s.summary else None) or "-",
              Cell(_fmt("{:.2f}", best), d, better), _fmt("{:.2f}", s.summary.single_stream_tokens_per_second if s.summary else None),
              _fmt("{:.3f}", s.summary.min_ttft_seconds if s.summary else None), Cell(verdict, muted=v is None),
              _fmt("{:g}", slo.max_concurrency if slo else None), _fmt("{:.2f}", slo.goodput_output_tokens_per_second if slo else None),
              accuracy.get(r.name) or "-")  # fmt: skip
    return t


def metric_tables(g: Group) -> list[Table]:
    """The write-ups' layout: one table per figure, one row per concurrency, one column per run."""
    conc = sorted({p.concurrency for r in g.runs for p in r.bench.results})
    points = {r.name: {p.concurrency: p for p in r.bench.results} for r in g.runs}
    base = points.get(g.baseline.name, {}) if g.baseline else {}
    tables = []
    for m in POINT_METRICS:
        if m.optional and not any(m.value(p) is not None for r in g.runs for p in r.bench.results):
            continue
        t = Table(m.title, ["Concurrency", *(r.name for r in g.runs)])
        for c in conc:
            row: list[Cell] = [Cell(str(c))]
            for r in g.runs:
                p = points[r.name].get(c)
                if p is None:
                    row.append(Cell("-", muted=True))
                    continue
                v = m.value(p)
                b = base.get(c)
                d, better = (None, None)
                if b is not None and r is not g.baseline and p.valid and b.valid:
                    d, better = delta(v, m.value(b), m.higher_is_better)
                row.append(
                    Cell(_fmt(m.fmt, v), d, better, note=None if p.valid else "invalid", muted=not p.valid)
                )
            t.rows.append(row)
        tables.append(t)
    labelled = [p for r in g.runs for p in r.bench.results if p.label or not p.valid]
    if labelled:
        t = Table("Point labels (what limited each point)", ["Concurrency", *(r.name for r in g.runs)])
        for c in conc:
            row = [Cell(str(c))]
            for r in g.runs:
                p = points[r.name].get(c)
                if p is None:
                    row.append(Cell("-", muted=True))
                else:
                    why = p.label or "-"
                    row.append(
                        Cell(
                            why if p.valid else f"{why}, invalid: {p.reason or ''}".strip(), muted=not p.valid
                        )
                    )
            t.rows.append(row)
        tables.append(t)
    return tables


def verdict_table(runs: list[Run]) -> Table | None:
    judged = [r for r in runs if r.status.verdict is not None or r.status.phase == "Failed"]
    if not judged:
        return None
    t = Table(
        "Verdicts", ["Resource", "Kind", "Outcome", "Reason", "Checks passed", "What failed"], wide=True
    )
    for r in judged:
        v = r.status.verdict
        if v is None:
            t.add(r.name, r.kind, Cell("run failed", better=False), "-", "-", r.status.message or "-")
            continue
        ok = sum(c.passed for c in v.checks)
        t.add(r.name, r.kind, Cell("passed" if v.passed else "gate failed", better=v.passed), v.reason,
              f"{ok}/{len(v.checks)}", v.message or "-")  # fmt: skip
    return t


def scores_table(runs: list[Run], baseline: str | None) -> Table | None:
    scored = [r for r in runs if r.bench.scores]
    if not scored:
        return None
    keys: list[tuple[str, str, str | None]] = []
    for r in scored:
        keys += [k for k in ((s.dataset, s.metric, s.subset) for s in r.bench.scores) if k not in keys]
    got = {r.name: {(s.dataset, s.metric, s.subset): s.score for s in r.bench.scores} for r in scored}
    base = next((r for r in scored if r.name == baseline), scored[0])
    t = Table("Evaluation scores", ["Dataset / metric", *(r.name for r in scored)],
              note=f"deltas in points against {base.name}" if len(scored) > 1 else None)  # fmt: skip
    for k in keys:
        row = [Cell(" / ".join(x for x in k if x))]
        for r in scored:
            v, b = got[r.name].get(k), got[base.name].get(k)
            d, better = _points(v, b) if r is not base else (None, None)
            row.append(Cell(_fmt("{:.4f}", v), d, better))
        t.rows.append(row)
    return t


def depth_tables(runs: list[Run], baseline: str | None) -> list[tuple[str, list[Run], Table]]:
    groups: dict[tuple[int, int], list[Run]] = {}
    for r in runs:
        if r.bench.depth:
            d0 = r.bench.depth[0]
            groups.setdefault((d0.prompt_tokens, d0.gen_tokens), []).append(r)
    out = []
    for (pp, tg), members in groups.items():
        base = next((r for r in members if r.name == baseline), members[0])
        depths = sorted({d.depth for r in members for d in r.bench.depth})
        rows = {r.name: {d.depth: d for d in r.bench.depth} for r in members}
        t = Table(f"Context depth: pp{pp} / tg{tg} (tokens/s)", ["Test", *(r.name for r in members)],
                  note=f"deltas against {base.name}" if len(members) > 1 else None)  # fmt: skip
        for depth in depths:
            for label, attr in (
                (f"pp{pp} @ d{depth}", "pp_tokens_per_second"),
                (f"tg{tg} @ d{depth}", "tg_tokens_per_second"),
            ):
                row = [Cell(label)]
                for r in members:
                    d = rows[r.name].get(depth)
                    v = getattr(d, attr) if d else None
                    b = (
                        getattr(rows[base.name].get(depth), attr, None)
                        if rows[base.name].get(depth)
                        else None
                    )
                    dl, better = delta(v, b, True) if r is not base else (None, None)
                    row.append(Cell(_fmt("{:.2f}", v), dl, better))
                t.rows.append(row)
        out.append((f"pp{pp}-tg{tg}", members, t))  # fmt: skip
    return out


def benchy_tables(runs: list[Run]) -> list[Table]:
    """Write-up 003's llama-benchy table, one per run: model, test, t/s, peak t/s, ttfr, est_ppt, e2e_ttft."""

    def ms(m: Any) -> str:
        return "" if m is None else f"{m.mean * 1e3:.2f} ± {m.sd * 1e3:.2f}"

    def ts(m: Any) -> str:
        return "" if m is None else f"{m.mean:.2f} ± {m.sd:.2f}"

    out = []
    for r in runs:
        rows = r.bench.llama_benchy
        if not rows:
            continue
        version = next((x.version for x in rows if x.version), None)
        t = Table(f"llama-benchy{f' {version}' if version else ''}: {r.name}",
                  ["model", "test", "t/s", "peak t/s", "ttfr (ms)", "est_ppt (ms)", "e2e_ttft (ms)"], wide=True)  # fmt: skip
        for x in rows:
            t.add(x.model or "", x.test, ts(x.tokens_per_second), ts(x.peak_tokens_per_second), ms(x.ttfr_seconds),
                  ms(x.est_ppt_seconds), ms(x.e2e_ttft_seconds))  # fmt: skip
        out.append(t)
    return out


def offline_table(runs: list[Run]) -> Table | None:
    """vLLM's offline throughput (`vllm bench throughput`, no server) beside the best served output tok/s."""
    done = [r for r in runs if r.bench.offline_throughput]
    if not done:
        return None
    t = Table("Offline (vllm bench throughput) and served throughput",
              ["Run", "Requests", "In / out tokens", "Offline output tok/s", "Offline total tok/s", "Offline req/s",
               "Served best output tok/s"],
              note="served: the best valid load point's output tok/s (none without spec.load)")  # fmt: skip
    for r in done:
        o = r.bench.offline_throughput
        assert o is not None
        served = [
            p.output_tokens_per_second for p in r.bench.results if p.valid and p.output_tokens_per_second
        ]
        t.add(r.name, str(o.requests), f"{o.input_len or '-'} / {o.output_len or '-'}",
              _fmt("{:.2f}", o.output_tokens_per_second), _fmt("{:.2f}", o.tokens_per_second),
              _fmt("{:.3f}", o.requests_per_second), _fmt("{:.2f}", max(served) if served else None))  # fmt: skip
    return t


def quant_tables(qj: Run) -> list[Table]:
    q = qj.quant
    base = q.base
    t = Table(f"QuantJob {qj.name}: size and quality against {base.name if base else 'the base (not measured)'}",
              ["Output", "Size (MiB)", "Perplexity", "Mean KLD", "Time (s)"],
              note=f"deltas against {base.name}" if base else None)  # fmt: skip
    for v in _outputs(q):
        is_base = v is base
        size = None if v.size_bytes is None else v.size_bytes / 2**20
        bsize = None if base is None or base.size_bytes is None else base.size_bytes / 2**20
        sd, sb = delta(size, bsize, False) if not is_base else (None, None)
        pd, pb = (
            delta(v.perplexity, base.perplexity if base else None, False) if not is_base else (None, None)
        )
        ppl = _fmt("{:.4f}", v.perplexity) + (
            "" if v.perplexity_error is None else f" ± {v.perplexity_error:.4f}"
        )
        t.add(v.name + (" (base)" if is_base else ""), Cell(_fmt("{:.2f}", size), sd, sb), Cell(ppl, pd, pb),
              _fmt("{:.6f}", v.kl_divergence), _fmt("{:.1f}", v.duration_seconds))  # fmt: skip
    tables = [t]
    scored = [v for v in _outputs(q) if v.scores]
    if scored:
        keys: list[tuple[str, str, str | None]] = []
        for v in scored:
            keys += [k for k in ((s.dataset, s.metric, s.subset) for s in v.scores) if k not in keys]
        got = {v.name: {(s.dataset, s.metric, s.subset): s.score for s in v.scores} for v in scored}
        ref = base if base is not None and base.scores else None
        st = Table(f"QuantJob {qj.name}: task scores", ["Dataset / metric", *(v.name for v in scored)],
                   note=f"deltas in points against {ref.name}" if ref else "no base scores: no deltas")  # fmt: skip
        for k in keys:
            row = [Cell(" / ".join(x for x in k if x))]
            for v in scored:
                val = got[v.name].get(k)
                b = got[ref.name].get(k) if ref else None
                d, better = _points(val, b) if v is not ref else (None, None)
                row.append(Cell(_fmt("{:.4f}", val), d, better))
            st.rows.append(row)
        tables.append(st)
    served = [v for v in _outputs(q) if v.footprint or v.speed]
    if served:  # write-up 002's quantization table: size, memory, speed against the base
        from servelab.report import size as fmt_size

        conc = sorted({p.concurrency for v in served for p in v.speed})
        sp = Table(f"QuantJob {qj.name}: size, memory and speed against {base.name if base else 'the base'}",
                   ["Output", "Size ratio", "GPU memory", "Load (s)",
                    *(h for c in conc for h in (f"tok/s @{c}", f"speed-up @{c}"))],
                   note="speed-up: output tok/s over the base's at the same concurrency, valid points only")  # fmt: skip
        for v in served:
            is_base = v is base
            by_c = {p.concurrency: p for p in v.speed}
            row = [Cell(v.name + (" (base)" if is_base else "")), Cell("1.00" if is_base else _fmt("{:.2f}", v.size_ratio)),
                   Cell(fmt_size(v.footprint.gpu_memory_bytes if v.footprint else None)),
                   Cell(_fmt("{:.1f}", v.footprint.load_seconds if v.footprint else None))]  # fmt: skip
            for c in conc:
                p = by_c.get(c)
                row.append(
                    Cell(_fmt("{:.1f}", p.output_tokens_per_second if p else None), muted=not (p and p.valid))
                )
                up = None if is_base or p is None or p.speedup is None else p.speedup
                row.append(Cell("base" if is_base else _fmt("{:.2f}x", up), better=None if up is None else up >= 1,
                                note=None if is_base or up is not None or p is None else p.reason))  # fmt: skip
            sp.rows.append(row)
        tables.append(sp)
    return tables


# ---- the whole document ---------------------------------------------------------------------------------------
def footprint_table(runs: list[Run]) -> Table | None:
    """Model load time, size on disk and GPU memory of each run's server (write-up 002's three-way table):
    '-' where unknown, never estimated; the sources say how each was measured."""
    from servelab.report import size

    done = [r for r in runs if r.bench.footprint]
    if not done:
        return None
    t = Table("Model load, size on disk and GPU memory",
              ["Run", "Engine", "Load (s)", "Model on disk", "GPU memory", "Sources"],
              note="load: server start to ready; size: the model step's du; GPU memory: as the engine logs it")  # fmt: skip
    for r in done:
        fp = r.bench.footprint
        assert fp is not None
        sources = "; ".join(s for s in (fp.load_source, fp.model_bytes_source, fp.gpu_memory_source) if s)
        t.add(r.name, r.bench.engine or "-", _fmt("{:.2f}", fp.load_seconds), size(fp.model_bytes),
              size(fp.gpu_memory_bytes), sources)  # fmt: skip
    return t


def build(runs: list[Run], baseline: str | None = None, title: str = "servelab comparison report",
          meta: list[str] | None = None) -> Document:  # fmt: skip
    from servelab.reporting import plots

    benches = [r for r in runs if r.kind == "ServeBenchmark" and not r.owned_by_quantjob]
    quants = [r for r in runs if r.kind == "QuantJob"]
    by_ref = {(q.namespace, q.name): q for q in quants}
    swept = [r for r in benches if r.bench.results]
    accuracy = {r.name: accuracy_of(r, by_ref) for r in benches}
    sections: list[Section] = []
    groups = group_runs(swept, baseline)
    if len(groups) > 1:
        sections.append(Section("Workloads", [
            f"These runs measured {len(groups)} different workloads: runs of different workloads are never put in "
            "one table (their numbers do not compare). Each group below has its own tables and plots."]))  # fmt: skip
    for g in groups:
        sec = Section(f"Workload group {g.index}: {g.description}")
        if g.apart:
            sec.paragraphs.append(
                f"Shown apart from group 1: it measured another workload ({'; '.join(g.apart)})."
            )
        sec.paragraphs.append(g.baseline_note[0].upper() + g.baseline_note[1:] + ".")
        series = [plots.Series.of(r, gpus_of(r), accuracy.get(r.name)) for r in g.runs]
        sec.figures += [
            Figure(f"group-{g.index}-sweep", "Output tokens/s and TTFT against concurrency",
                   partial(plots.sweep, series), "throughput and time to first token by concurrency"),
            Figure(f"group-{g.index}-pareto", "Throughput per GPU against throughput per user",
                   partial(plots.pareto, series), "per-GPU against per-user output tokens/s, each point labelled"),
        ]  # fmt: skip
        sec.tables.append(runs_table(g, accuracy))
        sec.tables += metric_tables(g)
        sections.append(sec)
    verdicts = verdict_table(benches + quants)
    if verdicts:
        sections.append(Section("Verdicts and gates", tables=[verdicts]))
    scores = scores_table(benches, baseline)
    if scores:
        sections.append(Section("Evaluation scores", tables=[scores]))
    depth = depth_tables(benches, baseline)
    if depth:
        sec = Section("Context-depth sweeps")
        for name, members, t in depth:
            sec.figures.append(
                Figure(f"depth-{name}", t.title, partial(plots.depth, members), "tokens/s by context depth")
            )
            sec.tables.append(t)
        sections.append(sec)
    footprint = footprint_table(benches)
    if footprint:
        sections.append(Section("Model load, size and memory", tables=[footprint]))
    offline = offline_table(benches)
    if offline:
        sections.append(Section("Offline throughput (vLLM, no server)", tables=[offline]))
    benchy = benchy_tables(benches)
    if benchy:
        sections.append(Section("llama-benchy depth sweeps", tables=benchy))
    if quants:
        sec = Section("Quantization: size and quality")
        sec.figures.append(Figure("quality", "Quality against size", partial(plots.quality, quants),
                                  "perplexity and KL divergence against size, one point per output"))  # fmt: skip
        for q in quants:
            sec.tables += quant_tables(q)
        sections.append(sec)
    left_out = [r for r in benches if not r.bench.results and not r.bench.scores and not r.bench.depth
                and not r.bench.llama_benchy and not r.bench.offline_throughput]  # fmt: skip
    if left_out:
        sections.append(
            Section(
                "Runs without results", [", ".join(f"{r.name} ({r.status.phase or 'new'})" for r in left_out)]
            )
        )
    if not sections:
        sections.append(Section("Nothing to compare", ["None of these runs has results yet."]))
    return Document(title, meta or [], sections)


__all__ = ["Document", "Figure", "Group", "Section", "build", "delta", "group_runs"]
