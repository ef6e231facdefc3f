"""`servelab report`: compare runs side by side.

Input: resources of the current kubeconfig's cluster (by NAME, by -l selector, or all of the namespace),
or `servelab run`'s directories (--runs-dir) and status files (-f). Output (--format): a terminal table,
Markdown, one self-contained HTML page, or llm-d Benchmark Report v0.2 JSON. Exit 0; 2 when nothing was
found or the source cannot be read."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

from servelab.reporting import compare, llmd, render, sources

FORMATS = ("table", "markdown", "html", "json")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("names", nargs="*", help="resources to compare (default: every one found)")
    parser.add_argument("--runs-dir", action="append", type=Path, default=[],
                        help="read `servelab run`'s run directories here instead of the cluster (repeatable)")  # fmt: skip
    parser.add_argument("-f", "--file", action="append", type=Path, default=[],
                        help="a status file (status.json/yaml, kubectl get -o yaml output) (repeatable)")  # fmt: skip
    parser.add_argument("-n", "--namespace", default=None, help="namespace (default: the kubeconfig's)")
    parser.add_argument("-A", "--all-namespaces", action="store_true", help="every namespace")
    parser.add_argument("-l", "--selector", default=None, help="label selector, e.g. experiment=qwen3-quants")
    parser.add_argument("--kind", choices=["ServeBenchmark", "QuantJob"], action="append", default=[],
                        help="only this kind (repeatable; default both)")  # fmt: skip
    parser.add_argument("--format", choices=FORMATS, default="table", help="output format (default table)")
    parser.add_argument("-o", "--output", type=Path, default=None,
                        help="write here instead of stdout (json: a directory gets one file per report)")  # fmt: skip
    parser.add_argument("--baseline", default=None, help="the run deltas are computed against (default: "
                        "the first run of each workload group)")  # fmt: skip
    parser.add_argument("--title", default="servelab comparison report", help="the report's title")


def load(args: argparse.Namespace) -> list[sources.Run]:
    kinds = args.kind or list(sources.KINDS)
    if args.runs_dir or args.file:
        runs = sources.from_paths([*args.runs_dir, *args.file])
        if args.names:
            runs = [r for r in runs if r.name in args.names]
        if args.selector:
            want = dict(kv.split("=", 1) for kv in args.selector.split(",") if "=" in kv)
            runs = [
                r for r in runs if all((r.metadata.get("labels") or {}).get(k) == v for k, v in want.items())
            ]
    else:
        runs = sources.from_cluster(args.names, args.selector, args.namespace, args.all_namespaces, kinds)
    return sorted(
        (r for r in runs if r.kind in kinds), key=lambda r: (r.kind != "QuantJob", r.namespace or "", r.name)
    )


def run(args: argparse.Namespace) -> int:
    try:
        runs = load(args)
    except sources.SourceError as err:
        print(f"report: {err}", file=sys.stderr)
        return 2
    if not runs:
        where = ", ".join(map(str, [*args.runs_dir, *args.file])) or "the cluster"
        print(f"report: no ServeBenchmark or QuantJob found in {where}", file=sys.stderr)
        return 2
    out: Path | None = args.output
    if args.format == "json":
        reports = llmd.all_reports(runs)
        if out is not None and out.is_dir():
            for rep in reports:
                label = rep["scenario"]["stack"][0]["metadata"]["label"]
                c = rep["scenario"]["load"]["standardized"]["concurrency"]
                (out / f"{label}-c{c}.json").write_text(json.dumps(rep, indent=2) + "\n")
            print(f"wrote {len(reports)} benchmark report(s) into {out}", file=sys.stderr)
            return 0
        return _emit(json.dumps(reports, indent=2) + "\n", out)
    origins = sorted({f"the cluster (namespace {r.namespace})" if r.source.startswith("cluster ")
                      else str(Path(r.source).parent.parent) for r in runs})  # fmt: skip
    meta = [f"{len(runs)} resource(s) from {', '.join(origins)}",
            f"generated {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')} by servelab report"]  # fmt: skip
    doc = compare.build(runs, args.baseline, args.title, meta)
    if args.format == "table":
        return _emit(render.text(doc), out)
    if args.format == "markdown":
        return _emit(render.markdown(doc, out), out)
    return _emit(render.page(doc), out)


def _emit(text: str, out: Path | None) -> int:
    if out is None:
        sys.stdout.write(text)
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        print(f"wrote {out}", file=sys.stderr)
    return 0


__all__ = ["FORMATS", "add_arguments", "load", "run"]
