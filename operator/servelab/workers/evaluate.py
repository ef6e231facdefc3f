"""`servelab worker eval`: `evalscope eval --eval-type openai_api` against a served model, offline.

Runs in the `evalscope` image/environment. Data sets come from local files (`--dataset-args` with
`local_path`, e.g. general_qa jsonl with `query`/`response`, general_mcq csv/jsonl); the hubs are
kept offline. The reports (`<work>/reports/<model>/<dataset>.json`, schema_version 2) are parsed
into `EvalScore` rows: one per metric and subset, plus an OVERALL row when a metric has several
subsets.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from servelab.api.results import EvalScore
from servelab.workers.common import WorkerError, run_logged
from servelab.workers.perf import evalscope_command


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--api-url", required=True, help="OpenAI base URL including /v1")
    p.add_argument("--model", required=True, help="served model name")
    p.add_argument("--datasets", nargs="+", required=True, help="evalscope data set names")
    p.add_argument(
        "--dataset-args", default="{}", help="JSON: per data set args (local_path, subset_list, ...)"
    )
    p.add_argument(
        "--generation-config", default=None, help="JSON generation config (max_tokens, temperature)"
    )
    p.add_argument("--limit", type=float, default=None, help="samples per subset")
    p.add_argument("--batch-size", type=int, default=4, help="concurrent requests (--eval-batch-size)")
    p.add_argument("--out", type=Path, required=True, help="output directory (evalscope work dir, logs)")
    p.add_argument("--result", default=None, help="result sink: file:PATH or configmap:NS/NAME/KEY")
    p.add_argument("--evalscope", default=None, help="evalscope executable (default: next to python)")


def metric_name(metric: Mapping[str, Any]) -> str:
    if metric.get("legacy_name"):
        return str(metric["legacy_name"])
    identity = metric.get("identity")
    if isinstance(identity, Mapping):
        name = f"{identity.get('aggregation', 'mean')}_{identity.get('name', 'metric')}"
        dims = identity.get("dimensions") or {}
        if dims:
            name += "[" + ",".join(f"{k}={v}" for k, v in sorted(dims.items())) + "]"
        return name
    return str(metric.get("name") or "metric")


def parse_report(report: Mapping[str, Any]) -> list[EvalScore]:
    """EvalScore rows from one evalscope report JSON (schema_version 2; v1 `name` metrics too)."""
    dataset = str(report.get("dataset_name") or report.get("name") or "dataset")
    scores: list[EvalScore] = []
    for metric in report.get("metrics", []):
        name = metric_name(metric)
        subsets = [
            s for c in metric.get("categories", []) for s in c.get("subsets", []) if not s.get("is_aggregate")
        ]
        for s in subsets:
            scores.append(
                EvalScore(
                    dataset=dataset,
                    metric=name,
                    subset=str(s.get("name")),
                    num=int(s.get("num", 0)),
                    score=float(s.get("score", 0.0)),
                )
            )
        if len(subsets) != 1:
            scores.append(
                EvalScore(
                    dataset=dataset,
                    metric=name,
                    subset="OVERALL",
                    num=int(metric.get("num", 0)),
                    score=float(metric.get("score", 0.0)),
                )
            )
    return scores


def find_reports(work: Path) -> list[Path]:
    return sorted(p for p in work.rglob("reports/*/*.json") if p.is_file())


def run_eval(args: argparse.Namespace) -> dict[str, Any]:
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    work = out / "evalscope"
    cmd = [
        *evalscope_command(args.evalscope),
        "eval",
        "--model",
        args.model,
        "--api-url",
        args.api_url,
        "--api-key",
        "EMPTY",
        "--eval-type",
        "openai_api",
        "--datasets",
        *args.datasets,
        "--dataset-args",
        args.dataset_args,
        "--work-dir",
        str(work),
        "--no-timestamp",
        "--eval-batch-size",
        str(args.batch_size),
    ]
    if args.generation_config:
        cmd += ["--generation-config", args.generation_config]
    if args.limit is not None:
        cmd += ["--limit", str(args.limit)]
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    env.setdefault("MODELSCOPE_OFFLINE", "1")
    ran = run_logged(cmd, out / "logs" / "eval.log", env=env, check=False)
    reports = find_reports(work)
    if not reports:
        tail = "\n".join(ran.output.splitlines()[-30:])
        raise WorkerError(f"evalscope eval wrote no report (rc={ran.returncode}); see {out / 'logs'}\n{tail}")
    scores: list[EvalScore] = []
    for path in reports:
        scores += parse_report(json.loads(path.read_text()))
    found = {s.dataset for s in scores}
    missing = [d for d in args.datasets if d not in found]
    return {
        "kind": "eval",
        "model": args.model,
        "apiUrl": args.api_url,
        "scores": [s.to_wire() for s in scores],
        "missingDatasets": missing,
        "evalscopeRc": ran.returncode,
        "evalscopeSeconds": round(ran.seconds, 3),
        "reports": [str(p) for p in reports],
        "artifacts": str(out),
    }


def run(args: argparse.Namespace) -> int:
    from servelab.workers.publish import sink_from_spec

    started = time.monotonic()
    sink = sink_from_spec(args.result, default_file=args.out / "result.json")
    result = run_eval(args)
    result["durationSeconds"] = round(time.monotonic() - started, 3)
    sink.publish(result)
    for s in result["scores"]:
        print(
            f"{s['dataset']:<14} {s['metric']:<24} {s.get('subset', ''):<10} {s.get('num', ''):>4} {s['score']:.4f}"
        )
    print(f"published {len(result['scores'])} scores to {sink.describe()}")
    return 0 if result["evalscopeRc"] == 0 and not result["missingDatasets"] else 1
