"""Human output: the seeds' results table, the quantization table, and a PNG chart."""

from __future__ import annotations

from pathlib import Path

from servelab.api.quantjob import QuantJobStatus
from servelab.api.results import Spread
from servelab.api.servebenchmark import ServeBenchmarkStatus
from servelab.status import primary_score

HEADER = ["Conc.", "Reqs", "RPS", "Avg Lat.(s)", "P99 Lat.(s)", "Gen. toks/s", "Avg TTFT(s)", "P99 TTFT(s)",
          "Avg TPOT(s)", "P99 TPOT(s)", "Success Rate", "Client CPU", "Sust. conc.", "Label"]  # fmt: skip


def _f(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    line = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
    out = [line, "| " + " | ".join(h.rjust(w) for h, w in zip(header, widths, strict=True)) + " |", line]
    out += ["| " + " | ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in rows]
    return "\n".join([*out, line])


def _pm(value: float | None, spread: Spread | None, digits: int) -> str:
    """A figure, with its sd over the point's repetitions when it was repeated ("512.3 ± 8.1")."""
    if spread is None or len(spread.samples) < 2:
        return _f(value, digits)
    return f"{_f(value, digits)} ± {spread.sd:.{digits}f}"


def load_table(status: ServeBenchmarkStatus) -> str:
    """The seeds' table, with what limited each point (its label; the figures behind it below). A repeated
    point shows mean ± sd of tok/s, TTFT and TPOT over its repetitions (percentiles over all its requests)
    and, when they disagree beyond spec.load.maxRelativeSpread, `unstable` in its label column."""
    rows, notes = [], []
    for r in status.results:
        rate = f"{r.success_rate * 100:.1f}%" + ("" if r.valid else " INVALID")
        sp = r.spread
        tps = _pm(sp.output_tokens_per_second.mean if sp and sp.output_tokens_per_second else
                  r.output_tokens_per_second, sp.output_tokens_per_second if sp else None, 2)  # fmt: skip
        label = (r.label or "-") + (" unstable" if r.unstable else "")
        rows.append([
            str(r.concurrency), str(r.requests), _f(r.rps, 2), _f(r.avg_latency_seconds), _f(r.p99_latency_seconds),
            tps, _pm(r.avg_ttft_seconds, sp.ttft_seconds if sp else None, 3), _f(r.p99_ttft_seconds),
            _pm(r.avg_tpot_seconds, sp.tpot_seconds if sp else None, 4), _f(r.p99_tpot_seconds, 4), rate,
            _f(r.client_cpu, 2), _f(r.sustained_concurrency, 2), label,
        ])  # fmt: skip
        if r.label_reason:
            notes.append(f"  c={r.concurrency} {r.label}: {r.label_reason}")
        if r.unstable_reason:
            notes.append(
                f"  c={r.concurrency} unstable over {r.repetitions} repetitions: {r.unstable_reason}"
            )
    return "\n".join([_table(HEADER, rows), *notes])


def server_table(status: ServeBenchmarkStatus) -> str:
    """Client-side against server-side counts, so a reader sees when the two disagree."""
    rows = []
    for r in status.results:
        client_tokens = (r.avg_output_tokens or 0) * r.succeeded
        server = r.server
        rows.append([
            str(r.concurrency), f"{client_tokens:.0f}",
            "-" if not server or server.generation_tokens is None else f"{server.generation_tokens:.0f}",
            _f(r.output_tokens_per_second, 2),
            "-" if not server else _f(server.output_tokens_per_second, 2),
            _f(r.avg_ttft_seconds), "-" if not server else _f(server.avg_ttft_seconds),
        ])  # fmt: skip
    header = ["Conc.", "Client gen tokens", "Server gen tokens", "Client tok/s", "Server tok/s",
              "Client TTFT(s)", "Server TTFT(s)"]  # fmt: skip
    return _table(header, rows)


def size(value: int | None) -> str:
    """Bytes as GiB/MiB (binary units, as the engines log them); '-' when unknown."""
    if value is None:
        return "-"
    return f"{value / (1 << 30):.2f} GiB" if value >= 1 << 30 else f"{value / (1 << 20):.2f} MiB"


def footprint_table(status: ServeBenchmarkStatus) -> str:
    """Model load time, size on disk and GPU memory (write-up 002's table), with where each comes from."""
    fp = status.footprint
    if fp is None:
        return ""
    rows = [["load (s)", _f(fp.load_seconds, 2), fp.load_source or "not measured"],
            ["model on disk", size(fp.model_bytes), fp.model_bytes_source or "not measured (the engine fetches it)"],
            ["GPU memory", size(fp.gpu_memory_bytes), fp.gpu_memory_source or "not reported by the engine"]]  # fmt: skip
    return _table(["Model", "Value", "Source"], rows)


def scores_table(status: ServeBenchmarkStatus) -> str:
    rows = [[s.dataset, s.metric, s.subset or "-", "-" if s.num is None else str(s.num), f"{s.score:.4f}"]
            for s in status.scores]  # fmt: skip
    return _table(["Dataset", "Metric", "Subset", "Num", "Score"], rows)


def depth_table(status: ServeBenchmarkStatus) -> str:
    rows = []
    for d in status.depth:
        rows.append(
            [f"pp{d.prompt_tokens} @ d{d.depth}", _f(d.pp_tokens_per_second, 2), _f(d.ttft_seconds, 3)]
        )
        rows.append([f"tg{d.gen_tokens} @ d{d.depth}", _f(d.tg_tokens_per_second, 2), ""])
    return _table(["Test", "t/s", "TTFT(s)"], rows)


def llama_bench_table(status: ServeBenchmarkStatus) -> str:
    """llama-bench's own table (write-up 003): model, size, params, backend, ngl, test, t/s ± sd; then the build."""
    rows = []
    for b in status.llama_bench:
        size = "-" if b.model_size_bytes is None else f"{b.model_size_bytes / 2**30:.2f} GiB"
        params = "-" if b.model_params is None else f"{b.model_params / 1e9:.2f} B"
        rows.append([b.model_type or "-", size, params, b.backends or "-",
                     "-" if b.n_gpu_layers is None else str(b.n_gpu_layers), b.test,
                     f"{b.avg_tokens_per_second:.2f} ± {b.stddev_tokens_per_second:.2f}"])  # fmt: skip
    table = _table(["model", "size", "params", "backend", "ngl", "test", "t/s"], rows)
    builds = sorted({b.build for b in status.llama_bench if b.build})
    return table + (f"\nbuild: {', '.join(builds)}" if builds else "")


def llama_benchy_table(status: ServeBenchmarkStatus) -> str:
    """llama-benchy's own table (write-up 003): model, test, t/s, peak t/s, ttfr, est_ppt, e2e_ttft (ms)."""
    from servelab.workers.benchy import table

    return table(status.llama_benchy)


def offline_table(status: ServeBenchmarkStatus) -> str:
    """vLLM's offline throughput (`vllm bench throughput`, no server) beside the best served output tok/s."""
    o = status.offline_throughput
    assert o is not None
    served = [p.output_tokens_per_second for p in status.results if p.valid and p.output_tokens_per_second]
    row = [str(o.requests), f"{o.input_len or '-'} / {o.output_len or '-'}", _f(o.elapsed_seconds, 2),
           _f(o.requests_per_second, 3), _f(o.tokens_per_second, 2), _f(o.output_tokens_per_second, 2),
           _f(max(served), 2) if served else "-"]  # fmt: skip
    return "offline throughput (vllm bench throughput, no server):\n" + _table(
        ["Requests", "In/out", "Time(s)", "req/s", "total tok/s", "output tok/s", "served best output tok/s"],
        [row],
    )


def quant_table(status: QuantJobStatus) -> str:
    """One row per output (base first): size, perplexity, KL divergence, time."""
    rows = []
    for v in ([status.base] if status.base else []) + status.variants:
        size = "-" if v.size_bytes is None else f"{v.size_bytes / 2**20:.2f} MiB"
        ppl = "-" if v.perplexity is None else f"{v.perplexity:.4f} +/- {_f(v.perplexity_error, 5)}"
        rows.append([v.name, size, ppl, _f(v.kl_divergence, 6), _f(v.duration_seconds, 1)])
    return _table(["Variant", "Size", "PPL", "Mean KLD", "Time(s)"], rows)


def quant_scores_table(status: QuantJobStatus) -> str | None:
    """The write-ups' accuracy table: one row per data set and metric, one column per output (base first)."""
    outputs = [v for v in ([status.base] if status.base else []) + status.variants if v.scores]
    if not outputs:
        return None
    keys: list[tuple[str, str, str | None]] = []
    for v in outputs:
        keys += [k for k in ((sc.dataset, sc.metric, sc.subset) for sc in v.scores) if k not in keys]
    got = {v.name: {(sc.dataset, sc.metric, sc.subset): sc.score for sc in v.scores} for v in outputs}
    rows = [[d, m, sub or "-", *(_f(got[v.name].get((d, m, sub)), 4) for v in outputs)] for d, m, sub in keys]
    return _table(["Dataset", "Metric", "Subset", *(v.name for v in outputs)], rows)


def quant_cost_table(status: QuantJobStatus) -> str | None:
    """Write-up 002's quantization table: per output (base first) its size and size ratio, the serving
    memory its scoring run recorded, its primary task score, and, with spec.evaluation.speed, output tok/s
    and speed-up against the base at each concurrency; None when no output was served."""
    outputs = ([status.base] if status.base else []) + status.variants
    if not any(v.footprint or v.speed for v in outputs):
        return None
    concurrency = sorted({p.concurrency for v in outputs for p in v.speed})
    rows = []
    for v in outputs:
        fp, sc = v.footprint, primary_score(v.scores)
        by_c = {p.concurrency: p for p in v.speed}
        cells = [v.name + (" (base)" if v is status.base else ""), size(v.size_bytes),
                 "1.00" if v is status.base else _f(v.size_ratio, 2), size(fp.gpu_memory_bytes if fp else None),
                 _f(fp.load_seconds if fp else None, 1), f"{sc.dataset} {sc.score:.4f}" if sc else "-"]  # fmt: skip
        for c in concurrency:
            p = by_c.get(c)
            cells.append(_f(p.output_tokens_per_second if p else None, 1))
            cells.append(
                "base" if v is status.base else "-" if p is None or p.speedup is None else f"{p.speedup:.2f}x"
            )
        rows.append(cells)
    head = ["Output", "Size", "Size ratio", "GPU memory", "Load(s)", "Score"]
    for c in concurrency:
        head += [f"tok/s @{c}", f"speed-up @{c}"]
    return _table(head, rows)


def chart(benchmarks: dict[str, ServeBenchmarkStatus], path: Path) -> Path | None:
    """Output tokens/s and TTFT against concurrency, one line per benchmark."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # the chart is optional output; the tables carry the same numbers
        return None
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name, status in benchmarks.items():
        rows = [r for r in status.results if r.valid and not r.unstable]  # an unstable point is no trend
        if not rows:
            continue
        xs = [r.concurrency for r in rows]
        ax1.plot(xs, [r.output_tokens_per_second or 0 for r in rows], marker="o", label=name)
        ax2.plot(xs, [r.avg_ttft_seconds or 0 for r in rows], marker="o", label=name)
    ax1.set(title="Output throughput", xlabel="concurrency", ylabel="tokens/s")
    ax2.set(title="Time to first token (avg)", xlabel="concurrency", ylabel="seconds")
    for ax in (ax1, ax2):
        ax.set_xscale("log", base=2)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
