"""`servelab run -f MANIFEST`: run a manifest's QuantJobs and ServeBenchmarks locally, in order."""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path
from types import FrameType

from servelab import report
from servelab.api.quantjob import QuantJobStatus
from servelab.api.servebenchmark import ServeBenchmarkStatus
from servelab.local.executor import LocalExecutor
from servelab.manifests import Resource, check_manifests
from servelab.validate_cli import print_problems


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-f", "--filename", action="append", required=True, type=Path,
                        help="manifest file or directory (repeatable)")  # fmt: skip
    parser.add_argument("--runs-dir", type=Path, default=Path("servelab-runs"),
                        help="where status, logs and artifacts go (default ./servelab-runs)")  # fmt: skip
    parser.add_argument("--only", action="append", default=[], help="run only these resources (by name)")
    parser.add_argument(
        "--chart", type=Path, default=None, help="PNG chart path (default RUNS_DIR/chart.png)"
    )
    parser.add_argument("--resume", action="store_true",
                        help="continue interrupted runs of unchanged specs from their first step without a "
                             "result (a changed spec starts its next generation), instead of starting over")  # fmt: skip


def execute(
    resources: list[Resource], runs_dir: Path, chart: Path | None = None, resume: bool = False
) -> int:
    """Run every resource to the end, QuantJobs first, each through the decision core the operator runs."""
    executor = LocalExecutor(runs_dir=runs_dir, log=lambda line: print(line, flush=True), resume=resume)

    def interrupted(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    # both explicitly: a process started in the background by a non-interactive shell inherits SIGINT
    # as ignored, and Python then leaves it so; Ctrl-C and `kill -INT` must still stop everything
    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGINT, interrupted)
    t0 = time.monotonic()
    quant: dict[str, QuantJobStatus] = {}
    bench: dict[str, ServeBenchmarkStatus] = {}
    try:
        # QuantJobs first: a ServeBenchmark that names one serves its output
        for res in sorted(resources, key=lambda r: r.kind != "QuantJob"):
            if res.kind == "QuantJob":
                quant[res.name] = executor.run_quantjob(res)
            else:
                bench[res.name] = executor.run_benchmark(res)
    except KeyboardInterrupt:
        print(
            "\ninterrupted: stopping every process this run started (continue it with --resume)",
            file=sys.stderr,
        )
        return 130
    finally:
        executor.stop_all()
    elapsed = time.monotonic() - t0
    for name, qs in quant.items():
        print(f"\nQuantJob {name}: {qs.phase} — {qs.message}\n{report.quant_table(qs)}")
        scores = report.quant_scores_table(qs)
        if scores:
            print(f"task scores of each output:\n{scores}")
        cost = report.quant_cost_table(qs)
        if cost:
            print(f"each output served (size, memory, score, speed against the base):\n{cost}")
    for name, bs in bench.items():
        print(
            f"\nServeBenchmark {name}: {bs.phase} — {bs.message}  (model {bs.model}, quant {bs.quantization})"
        )
        if bs.footprint:
            print(report.footprint_table(bs))
        if bs.results:
            print(report.load_table(bs))
            print("client vs server (engine /metrics):")
            print(report.server_table(bs))
        if bs.depth:
            print(report.depth_table(bs))
        if bs.llama_bench:
            print(report.llama_bench_table(bs))
        if bs.llama_benchy:
            print(report.llama_benchy_table(bs))
        if bs.offline_throughput:
            print(report.offline_table(bs))
        if bs.scores:
            print(report.scores_table(bs))
    png = (
        report.chart(bench, chart or runs_dir / "chart.png")
        if any(b.results for b in bench.values())
        else None
    )
    if png:
        print(f"\nchart: {png}")
    print(f"status and artifacts: {runs_dir}/<kind>-<name>/ ; total {elapsed:.0f}s")
    failed = [n for n, s in {**quant, **bench}.items() if s.phase != "Succeeded"]
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


def run(args: argparse.Namespace) -> int:
    # read and validate everything before starting anything: the same located messages as `servelab validate`
    scan = check_manifests(*args.filename)
    for warning in scan.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if scan.problems:
        count = print_problems(scan.problems, sys.stderr)
        print(f"{count} problem(s) in the manifests: nothing was run", file=sys.stderr)
        return 1
    for other in scan.others:
        print(f"{other}: not a servelab resource, skipped", file=sys.stderr)
    resources = scan.resources
    if args.only:
        resources = [r for r in resources if r.name in args.only]
    if not resources:
        print("no QuantJob or ServeBenchmark in the given manifests", file=sys.stderr)
        return 2
    for res in resources:
        try:
            LocalExecutor(runs_dir=args.runs_dir).run_dir(res.kind, res.name)
        except ValueError as err:
            print(f"{res.label}: {err}", file=sys.stderr)
            return 1
    return execute(resources, args.runs_dir, args.chart, resume=args.resume)
