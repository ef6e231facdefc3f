"""The report's plots, drawn with matplotlib (the `chart` extra) as SVG text to inline in a page: nothing is
fetched when the page is opened. Without matplotlib every function returns None and the tables stay."""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from typing import Any

from servelab.api.results import LoadPointResult
from servelab.reporting.sources import Run

# what limited a point -> (marker, colour) on the Pareto plot
LABEL_STYLE = {"ok": ("o", "#2a9d3c"), "client-bound": ("s", "#e08e0b"), "server-capped": ("^", "#d1495b"),
               "saturated": ("X", "#6c4ab6"), None: ("o", "#777777")}  # fmt: skip


@dataclass
class Series:
    name: str
    points: list[LoadPointResult]
    gpus: int
    accuracy: str | None = None

    @classmethod
    def of(cls, run: Run, gpus: int, accuracy: str | None) -> Series:
        return cls(run.name, sorted(run.bench.results, key=lambda p: p.concurrency), gpus, accuracy)

    @property
    def valid(self) -> list[LoadPointResult]:
        return [p for p in self.points if p.valid and p.output_tokens_per_second is not None]

    @property
    def legend(self) -> str:
        return self.name + (f" ({self.accuracy})" if self.accuracy else "")


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def _svg(fig: Any) -> str:
    """The figure as an <svg> element (no XML prolog), reproducible (fixed ids, no date)."""
    import matplotlib

    buf = io.StringIO()
    with matplotlib.rc_context({"svg.hashsalt": "servelab", "svg.fonttype": "none"}):
        fig.savefig(buf, format="svg", metadata={"Date": None}, bbox_inches="tight")
    fig.clf()
    import matplotlib.pyplot as plt

    plt.close(fig)
    text = buf.getvalue()
    start = text.find("<svg")
    svg = text[start:] if start >= 0 else text
    svg = re.sub(r"<metadata>.*?</metadata>", "", svg, flags=re.S)  # RDF about matplotlib: nothing to show
    return re.sub(r"<!--.*?-->", "", svg, flags=re.S).strip()


def _style(ax: Any, title: str, xlabel: str, ylabel: str, log2x: bool = False) -> None:
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if log2x:
        ax.set_xscale("log", base=2)
    ax.grid(True, alpha=0.3)


def sweep(series: list[Series]) -> str | None:
    """Output tokens/s and TTFT (mean solid, p99 dashed) against concurrency, one colour per run."""
    plt = _pyplot()
    if plt is None:
        return None
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    for i, s in enumerate(series):
        pts = s.valid
        if not pts:
            continue
        color = f"C{i % 10}"
        xs = [p.concurrency for p in pts]
        ax1.plot(xs, [p.output_tokens_per_second for p in pts], marker="o", color=color, label=s.name)
        ax2.plot(xs, [p.avg_ttft_seconds for p in pts], marker="o", color=color, label=f"{s.name} mean")
        p99 = [(p.concurrency, p.p99_ttft_seconds) for p in pts if p.p99_ttft_seconds is not None]
        if p99:
            ax2.plot(*zip(*p99, strict=True), marker=".", linestyle="--", color=color, label=f"{s.name} p99")
    _style(ax1, "Output throughput", "concurrency", "output tokens/s", log2x=True)
    _style(ax2, "Time to first token", "concurrency", "seconds", log2x=True)
    for ax in (ax1, ax2):
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.tight_layout()
    return _svg(fig)


def frontier(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The Pareto front (more of both is better), ordered by x."""
    front = [p for p in points if not any(q[0] >= p[0] and q[1] >= p[1] and q != p for q in points)]
    return sorted(set(front))


def pareto(series: list[Series]) -> str | None:
    """Per-GPU output tokens/s against per-user output tokens/s (output tok/s / concurrency): each point
    marked by its label (ok / client-bound / server-capped / saturated) and its concurrency; the runs' legend
    carries their accuracy where known; the dashed line is the front over all runs."""
    plt = _pyplot()
    if plt is None:
        return None
    fig, ax = plt.subplots(figsize=(10, 4.6))
    every: list[tuple[float, float]] = []
    seen_labels: set[str | None] = set()
    for i, s in enumerate(series):
        pts = s.valid
        if not pts:
            continue
        color = f"C{i % 10}"
        xy = [
            ((p.output_tokens_per_second or 0) / p.concurrency, (p.output_tokens_per_second or 0) / s.gpus)
            for p in pts
        ]
        every += xy
        ax.plot([x for x, _ in xy], [y for _, y in xy], color=color, alpha=0.5, label=s.legend)
        for p, (x, y) in zip(pts, xy, strict=True):
            marker, edge = LABEL_STYLE.get(p.label, LABEL_STYLE[None])
            seen_labels.add(p.label)
            ax.scatter([x], [y], marker=marker, s=60, color=color, edgecolors=edge, linewidths=2, zorder=3)
            ax.annotate(f"c={p.concurrency}", (x, y), textcoords="offset points", xytext=(5, 5), fontsize=7)
    front = frontier(every)
    if len(front) > 1:
        ax.plot(
            [x for x, _ in front],
            [y for _, y in front],
            linestyle="--",
            color="#444444",
            linewidth=1,
            label="Pareto front",
        )
    _style(
        ax,
        "Throughput per GPU against throughput per user",
        "output tokens/s per user",
        "output tokens/s per GPU",
    )
    handles, labels = ax.get_legend_handles_labels()
    from matplotlib.lines import Line2D

    for label in [lb for lb in LABEL_STYLE if lb in seen_labels]:
        marker, edge = LABEL_STYLE[label]
        handles.append(Line2D([], [], marker=marker, linestyle="", markerfacecolor="white", markeredgecolor=edge,
                              markeredgewidth=2, markersize=8))  # fmt: skip
        labels.append(f"point: {label or 'unlabelled'}")
    if handles:
        ax.legend(handles, labels, fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    return _svg(fig)


def quality(quantjobs: list[Run]) -> str | None:
    """Perplexity and mean KL divergence against size (MiB), one point per output (base: a star)."""
    plt = _pyplot()
    if plt is None:
        return None
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    drawn = False
    for i, qj in enumerate(quantjobs):
        q = qj.quant
        color = f"C{i % 10}"
        for ax, attr in ((ax1, "perplexity"), (ax2, "kl_divergence")):
            outputs = ([q.base] if q.base else []) + q.variants
            pts = [
                (v.size_bytes / 2**20, getattr(v, attr), v)
                for v in outputs
                if v.size_bytes is not None and getattr(v, attr) is not None
            ]
            if not pts:
                continue
            drawn = True
            ax.plot([x for x, _, _ in pts], [y for _, y, _ in pts], linestyle=":", color=color, alpha=0.6,
                    label=qj.name if ax is ax1 else None)  # fmt: skip
            for x, y, v in pts:
                ax.scatter(
                    [x],
                    [y],
                    marker="*" if v is q.base else "o",
                    s=120 if v is q.base else 50,
                    color=color,
                    zorder=3,
                )
                ax.annotate(v.name, (x, y), textcoords="offset points", xytext=(5, 4), fontsize=7)
    if not drawn:
        plt.close(fig)
        return None
    _style(ax1, "Perplexity against size", "size (MiB)", "perplexity (lower is better)")
    _style(ax2, "KL divergence from the base against size", "size (MiB)", "mean KLD (lower is better)")
    if ax1.get_legend_handles_labels()[0]:
        ax1.legend(fontsize=7)
    fig.tight_layout()
    return _svg(fig)


def depth(runs: list[Run]) -> str | None:
    """Prompt processing and generation tokens/s against context depth."""
    plt = _pyplot()
    if plt is None:
        return None
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    for i, r in enumerate(runs):
        rows = sorted(r.bench.depth, key=lambda d: d.depth)
        color = f"C{i % 10}"
        ax1.plot(
            [d.depth for d in rows],
            [d.pp_tokens_per_second for d in rows],
            marker="o",
            color=color,
            label=r.name,
        )
        ax2.plot(
            [d.depth for d in rows],
            [d.tg_tokens_per_second for d in rows],
            marker="o",
            color=color,
            label=r.name,
        )
    _style(ax1, "Prompt processing", "context depth (tokens)", "tokens/s")
    _style(ax2, "Generation", "context depth (tokens)", "tokens/s")
    ax1.legend(fontsize=7)
    fig.tight_layout()
    return _svg(fig)


__all__ = ["LABEL_STYLE", "Series", "depth", "frontier", "pareto", "quality", "sweep"]
