"""Parse one `evalscope perf` point's output directory into servelab's figures (seconds everywhere).

The headline figures are recomputed from the per-request SQLite `benchmark_data.db` (table `result`,
stable across evalscope 1.x), the way evalscope 1.14 computes them: duration = last completion minus
first start over all requests; RPS, output and total tok/s over that duration; TTFT/TPOT means over
successful streamed requests (TPOT only where more than one token came back); nearest-rank
percentiles. `benchmark_summary.json` is read through an alias table (key names and units changed
across releases: seconds before 1.7, milliseconds after) and used to cross-check and as a fallback
when the database is missing.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from servelab.api.results import PointSpread, Spread
from servelab.workers.common import finite, mean, percentile

# canonical name -> [(summary key, factor to seconds / plain units), ...], newest first
SUMMARY_ALIASES: dict[str, list[tuple[str, float]]] = {
    "duration_seconds": [("Test Duration (s)", 1.0), ("Time taken for tests (s)", 1.0)],
    "concurrency": [("Concurrency", 1.0), ("Number of concurrency", 1.0)],
    "total": [("Total Requests", 1.0), ("Total requests", 1.0)],
    "succeeded": [("Success Requests", 1.0), ("Succeed requests", 1.0)],
    "failed": [("Failed Requests", 1.0), ("Failed requests", 1.0)],
    "rps": [("Req Throughput (req/s)", 1.0), ("Request throughput (req/s)", 1.0)],
    "avg_latency_seconds": [("Avg Latency (s)", 1.0), ("Average latency (s)", 1.0)],
    "avg_input_tokens": [("Avg Input Tokens", 1.0), ("Average input tokens per request", 1.0)],
    "avg_output_tokens": [("Avg Output Tokens", 1.0), ("Average output tokens per request", 1.0)],
    "output_tokens_per_second": [
        ("Output Throughput (tok/s)", 1.0),
        ("Output token throughput (tok/s)", 1.0),
    ],
    "total_tokens_per_second": [("Total Throughput (tok/s)", 1.0), ("Total token throughput (tok/s)", 1.0)],
    "avg_ttft_seconds": [
        ("Avg TTFT (ms)", 1e-3),
        ("TTFT (ms)", 1e-3),
        ("Average time to first token (s)", 1.0),
    ],
    "avg_tpot_seconds": [
        ("Avg TPOT (ms)", 1e-3),
        ("TPOT (ms)", 1e-3),
        ("Average time per output token (s)", 1.0),
    ],
    "avg_itl_seconds": [
        ("Avg ITL (ms)", 1e-3),
        ("ITL (ms)", 1e-3),
        ("Average inter-token latency (s)", 1.0),
    ],
}
# percentile table columns -> factor to seconds
PERCENTILE_ALIASES: dict[str, list[tuple[str, float]]] = {
    "latency": [("Latency (s)", 1.0)],
    "ttft": [("TTFT (ms)", 1e-3), ("TTFT (s)", 1.0)],
    "tpot": [("TPOT (ms)", 1e-3), ("TPOT (s)", 1.0)],
}


def normalize_summary(summary: Mapping[str, Any]) -> dict[str, float | None]:
    """benchmark_summary.json of any evalscope 1.x -> canonical names, seconds; -1/absent -> None."""
    out: dict[str, float | None] = {}
    for name, aliases in SUMMARY_ALIASES.items():
        out[name] = None
        for key, factor in aliases:
            if key in summary:
                value = finite(summary[key])
                out[name] = value * factor if value is not None else None
                break
    return out


def percentile_row(rows: list[Mapping[str, Any]], label: str) -> dict[str, float | None]:
    """One row ('99%') of benchmark_percentile.json, canonical names in seconds."""
    for row in rows:
        if str(row.get("Percentiles")) == label:
            out: dict[str, float | None] = {}
            for name, aliases in PERCENTILE_ALIASES.items():
                out[name] = None
                for key, factor in aliases:
                    if key in row:
                        value = finite(row[key])
                        out[name] = value * factor if value is not None else None
                        break
            return out
    return {}


@dataclass
class PointFigures:
    """What one perf point measured (client side)."""

    total: int = 0
    succeeded: int = 0
    failed: int = 0
    duration_seconds: float | None = None
    rps: float | None = None
    avg_latency_seconds: float | None = None
    p99_latency_seconds: float | None = None
    avg_ttft_seconds: float | None = None
    p99_ttft_seconds: float | None = None
    avg_tpot_seconds: float | None = None
    p99_tpot_seconds: float | None = None
    output_tokens_per_second: float | None = None
    total_tokens_per_second: float | None = None
    avg_input_tokens: float | None = None
    avg_output_tokens: float | None = None
    sum_prompt_tokens: int = 0
    sum_output_tokens: int = 0
    output_token_counts: list[int] = field(default_factory=list)
    # per successful request: (ttft, tpot, latency, output tokens); None where not measured
    requests: list[tuple[float | None, float | None, float | None, int]] = field(default_factory=list)
    # per request, failed ones too: (start, completion) on the generator's perf_counter clock
    timings: list[tuple[float, float]] = field(default_factory=list)
    ttfts: list[float] = field(default_factory=list)
    tpots: list[float] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    source: str = "db"
    warnings: list[str] = field(default_factory=list)

    @property
    def success_rate(self) -> float:
        return self.succeeded / self.total if self.total else 0.0


def figures_from_db(db: Path) -> PointFigures:
    """Recompute a point's figures from evalscope's per-request SQLite database."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        con.row_factory = sqlite3.Row
        rows = [dict(r) for r in con.execute("SELECT * FROM result")]
    finally:
        con.close()
    f = PointFigures(source="db")
    f.total = len(rows)
    ok = [r for r in rows if r.get("success")]
    f.succeeded = len(ok)
    f.failed = f.total - f.succeeded
    starts = [float(r["start_time"]) for r in rows if r.get("start_time") is not None]
    ends = [float(r["completed_time"]) for r in rows if r.get("completed_time") is not None]
    if starts and ends:
        f.duration_seconds = max(max(ends) - min(starts), 0.0)
    f.timings = [(float(r["start_time"]), float(r["completed_time"])) for r in rows
                 if r.get("start_time") is not None and r.get("completed_time") is not None]  # fmt: skip
    latencies = [float(r["latency"]) for r in ok if r.get("latency") is not None]
    prompt = [int(r["prompt_tokens"] or 0) for r in ok]
    output = [int(r["completion_tokens"] or 0) for r in ok]
    stream = [r for r in ok if r.get("is_stream", 1)] or ok
    ttfts = [float(r["first_chunk_latency"]) for r in stream if r.get("first_chunk_latency") is not None]

    def tpot_of(r: dict[str, Any]) -> float | None:
        n = int(r.get("completion_tokens") or 0)
        if n <= 1:
            return None
        tpot = r.get("time_per_output_token")
        if tpot is None or float(tpot) <= 0:
            if r.get("latency") is None or r.get("first_chunk_latency") is None:
                return None
            tpot = (float(r["latency"]) - float(r["first_chunk_latency"])) / (n - 1)
        return float(tpot)

    streamed = {id(r) for r in stream}
    tpots = [t for r in stream if (t := tpot_of(r)) is not None]
    for r in ok:
        in_stream = id(r) in streamed
        ttft = (
            float(r["first_chunk_latency"])
            if in_stream and r.get("first_chunk_latency") is not None
            else None
        )
        lat = float(r["latency"]) if r.get("latency") is not None else None
        f.requests.append((ttft, tpot_of(r) if in_stream else None, lat, int(r["completion_tokens"] or 0)))
    f.ttfts, f.tpots, f.latencies = ttfts, tpots, latencies
    f.output_token_counts = output
    f.sum_prompt_tokens, f.sum_output_tokens = sum(prompt), sum(output)
    f.avg_latency_seconds, f.p99_latency_seconds = mean(latencies), percentile(latencies, 99)
    f.avg_ttft_seconds, f.p99_ttft_seconds = mean(ttfts), percentile(ttfts, 99)
    f.avg_tpot_seconds, f.p99_tpot_seconds = mean(tpots), percentile(tpots, 99)
    f.avg_input_tokens = mean([float(p) for p in prompt])
    f.avg_output_tokens = mean([float(o) for o in output])
    if f.duration_seconds:
        f.rps = f.succeeded / f.duration_seconds
        f.output_tokens_per_second = f.sum_output_tokens / f.duration_seconds
        f.total_tokens_per_second = (f.sum_prompt_tokens + f.sum_output_tokens) / f.duration_seconds
    return f


def figures_from_json(summary: Mapping[str, Any], percentiles: list[Mapping[str, Any]]) -> PointFigures:
    """The fallback: figures from benchmark_summary.json and benchmark_percentile.json alone."""
    s = normalize_summary(summary)
    p99 = percentile_row(percentiles, "99%")
    f = PointFigures(source="summary")
    f.total = int(s["total"] or 0)
    f.succeeded = int(s["succeeded"] or 0)
    f.failed = int(s["failed"] or max(f.total - f.succeeded, 0))
    f.duration_seconds = s["duration_seconds"]
    f.rps = s["rps"]
    f.avg_latency_seconds = s["avg_latency_seconds"]
    f.avg_ttft_seconds = s["avg_ttft_seconds"]
    f.avg_tpot_seconds = s["avg_tpot_seconds"]
    f.output_tokens_per_second = s["output_tokens_per_second"]
    f.total_tokens_per_second = s["total_tokens_per_second"]
    f.avg_input_tokens = s["avg_input_tokens"]
    f.avg_output_tokens = s["avg_output_tokens"]
    f.p99_latency_seconds, f.p99_ttft_seconds, f.p99_tpot_seconds = (
        p99.get("latency"),
        p99.get("ttft"),
        p99.get("tpot"),
    )
    return f


def _close(a: float | None, b: float | None, rel: float, abs_: float) -> bool:
    if a is None or b is None:
        return True
    return abs(a - b) <= max(abs_, rel * max(abs(a), abs(b)))


def cross_check(db: PointFigures, summary: Mapping[str, Any]) -> list[str]:
    """Differences between the recomputed figures and evalscope's own summary (summary is rounded)."""
    s = normalize_summary(summary)
    out = []
    for name in ("total", "succeeded", "failed"):
        if s[name] is not None and int(s[name] or 0) != getattr(db, name):
            out.append(f"{name}: db {getattr(db, name)} vs summary {int(s[name] or 0)}")
    checks = [
        ("avg_latency_seconds", 0.02, 0.002),
        ("avg_ttft_seconds", 0.02, 0.002),
        ("avg_tpot_seconds", 0.05, 0.0005),
        ("output_tokens_per_second", 0.05, 0.5),
        ("avg_output_tokens", 0.01, 0.01),
        ("duration_seconds", 0.05, 0.05),
    ]
    for name, rel, abs_ in checks:
        mine, theirs = getattr(db, name), s[name]
        if not _close(mine, theirs, rel, abs_):
            out.append(f"{name}: db {mine:.6g} vs summary {theirs:.6g}")
    return out


def find_point_dir(root: Path, parallel: int, number: int) -> Path | None:
    """Find `parallel_<P>_number_<N>/` anywhere under an evalscope outputs dir."""
    hits = sorted(root.rglob(f"parallel_{parallel}_number_{number}"))
    return hits[0] if hits else None


def parse_point_dir(point_dir: Path) -> PointFigures:
    """Figures of one point dir: from the DB when present (cross-checked), else from the JSON files."""
    summary_path = point_dir / "benchmark_summary.json"
    summary: dict[str, Any] = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    db = point_dir / "benchmark_data.db"
    if db.is_file():
        figures = figures_from_db(db)
        if summary:
            figures.warnings.extend(cross_check(figures, summary))
        else:
            figures.warnings.append("benchmark_summary.json missing")
        return figures
    pct_path = point_dir / "benchmark_percentile.json"
    percentiles: list[Mapping[str, Any]] = json.loads(pct_path.read_text()) if pct_path.is_file() else []
    if not summary:
        raise FileNotFoundError(f"{point_dir} has neither benchmark_data.db nor benchmark_summary.json")
    figures = figures_from_json(summary, percentiles)
    figures.warnings.append("benchmark_data.db missing; figures from benchmark_summary.json")
    return figures


def _pooled(parts: list[PointFigures], what: str) -> PointFigures:
    """Counts and token sums added up and every per-request record pooled, from the parts of one point
    (its repetitions, or its client shards); each part's warnings kept, named by `what` and number."""
    f = PointFigures(source="+".join(sorted({p.source for p in parts})))
    for i, p in enumerate(parts):
        f.total += p.total
        f.succeeded += p.succeeded
        f.failed += p.failed
        f.sum_prompt_tokens += p.sum_prompt_tokens
        f.sum_output_tokens += p.sum_output_tokens
        f.output_token_counts += p.output_token_counts
        f.requests += p.requests
        f.timings += p.timings
        f.ttfts += p.ttfts
        f.tpots += p.tpots
        f.latencies += p.latencies
        f.warnings += [f"{what} {i + 1}: {w}" for w in p.warnings]
    return f


def _over_records(f: PointFigures, parts: list[PointFigures]) -> bool:
    """Means and p99s of the pooled `f` over all its requests, where every part kept per-request
    records; False (nothing set) where one did not."""
    if not all(p.source == "db" or p.requests for p in parts):
        return False
    f.avg_latency_seconds, f.p99_latency_seconds = mean(f.latencies), percentile(f.latencies, 99)
    f.avg_ttft_seconds, f.p99_ttft_seconds = mean(f.ttfts), percentile(f.ttfts, 99)
    f.avg_tpot_seconds, f.p99_tpot_seconds = mean(f.tpots), percentile(f.tpots, 99)
    return True


def merge_figures(reps: list[PointFigures]) -> PointFigures:
    """One point's figures from its repetitions: counts and token sums add up, the duration is the measured
    load time (sum), means and percentiles are over all requests of all repetitions (never averaged
    percentiles), and the rates (RPS, tok/s) are the mean of the repetitions' rates (the `mean` of their
    spread). Figures read from a summary alone (no per-request records) give weighted means, no p99."""
    if len(reps) == 1:
        return reps[0]
    f = _pooled(reps, "repetition")
    durations = [r.duration_seconds for r in reps if r.duration_seconds is not None]
    f.duration_seconds = sum(durations) if durations else None

    def rate(name: str) -> float | None:
        values = [v for r in reps if (v := getattr(r, name)) is not None]
        return mean(values) if values else None

    def weighted(name: str) -> float | None:
        pairs = [(v, r.succeeded) for r in reps if (v := getattr(r, name)) is not None and r.succeeded]
        n = sum(w for _, w in pairs)
        return sum(v * w for v, w in pairs) / n if n else None

    f.rps = rate("rps")
    f.output_tokens_per_second = rate("output_tokens_per_second")
    f.total_tokens_per_second = rate("total_tokens_per_second")
    if not _over_records(f, reps):
        f.avg_latency_seconds = weighted("avg_latency_seconds")
        f.avg_ttft_seconds = weighted("avg_ttft_seconds")
        f.avg_tpot_seconds = weighted("avg_tpot_seconds")
        f.warnings.append("a repetition kept no per-request records: means weighted, no p99 over the point")
    f.avg_input_tokens = weighted("avg_input_tokens")
    f.avg_output_tokens = (
        mean([float(o) for o in f.output_token_counts])
        if f.output_token_counts
        else weighted("avg_output_tokens")
    )
    return f


def combine_shards(shards: list[PointFigures]) -> PointFigures:
    """One point's figures from its client shards (processes that ran at the same time, each at its share
    of the concurrency, on disjoint prompts): the per-request records are pooled, then every figure is
    computed over all of them as for one client. The load lasted from the first request's start to the
    last completion over all shards (their timings share one clock: `time.perf_counter` is the
    machine's CLOCK_MONOTONIC in every process), so the rates are totals over that span, and the
    percentiles are over all requests (never averaged shard percentiles)."""
    if len(shards) == 1:
        return shards[0]
    f = _pooled(shards, "shard")
    if f.timings:
        f.duration_seconds = max(e for _, e in f.timings) - min(s for s, _ in f.timings)
    else:  # no per-request timings: the longest shard is the span
        durations = [s.duration_seconds for s in shards if s.duration_seconds is not None]
        f.duration_seconds = max(durations) if durations else None
        f.warnings.append("a shard kept no request timings: the point's span is its longest shard's")
    if not _over_records(f, shards):
        f.warnings.append("a shard kept no per-request records: no figures over the point")
    n = f.succeeded
    f.avg_input_tokens = f.sum_prompt_tokens / n if n else None
    f.avg_output_tokens = mean([float(o) for o in f.output_token_counts]) if f.output_token_counts else None
    if f.duration_seconds:
        f.rps = f.succeeded / f.duration_seconds
        f.output_tokens_per_second = f.sum_output_tokens / f.duration_seconds
        f.total_tokens_per_second = (f.sum_prompt_tokens + f.sum_output_tokens) / f.duration_seconds
    return f


# sd below these never makes a point unstable: a millisecond of TTFT noise is not a trend either way
SPREAD_FLOORS = {"output_tokens_per_second": 0.0, "ttft_seconds": 0.001, "tpot_seconds": 0.0001}


def spread_of(values: list[float]) -> Spread | None:
    """Mean ± sample sd (n-1, as llama-bench) of the repetitions' values."""
    if not values:
        return None
    m = sum(values) / len(values)
    sd = math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
    return Spread(mean=m, sd=sd, relative=sd / m if m > 0 else None, samples=list(values))


def point_spread(reps: list[PointFigures], max_relative: float) -> tuple[PointSpread, str | None]:
    """The spread of a point's repetitions, and why they disagree (None: they agree within max_relative)."""
    got = {
        "output_tokens_per_second": spread_of(
            [r.output_tokens_per_second for r in reps if r.output_tokens_per_second is not None]
        ),
        "ttft_seconds": spread_of([r.avg_ttft_seconds for r in reps if r.avg_ttft_seconds is not None]),
        "tpot_seconds": spread_of([r.avg_tpot_seconds for r in reps if r.avg_tpot_seconds is not None]),
    }
    names = {"output_tokens_per_second": ("output tok/s", 1), "ttft_seconds": ("mean TTFT", 4),
             "tpot_seconds": ("mean TPOT", 5)}  # fmt: skip
    why = []
    for key, s in got.items():
        if s is None or len(s.samples) < 2 or s.relative is None:
            continue
        if s.relative > max_relative and s.sd > SPREAD_FLOORS[key]:
            label, digits = names[key]
            why.append(f"{label} {s.mean:.{digits}f} ± {s.sd:.{digits}f} (sd {s.relative:.0%} of the mean "
                       f"> {max_relative:.0%}; runs {', '.join(f'{v:.{digits}f}' for v in s.samples)})")  # fmt: skip
    return PointSpread(**got), "; ".join(why) or None
