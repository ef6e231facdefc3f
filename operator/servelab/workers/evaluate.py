"""`servelab worker eval`: `evalscope eval --eval-type openai_api` against a served model, offline.

Runs in the `evalscope` image/environment. Data sets come from local files (`--dataset-args` with
`local_path`): general_qa jsonl with `query`/`response`, general_mcq csv/jsonl, or a directory laid
out like the hub data set (math_500: `test.jsonl`; ifeval: one `*.jsonl`, read as split `train`).
The hubs are kept offline. Benchmarks scored with NLTK data (ifeval: the `punkt_tab` sentence
tokenizer) find it on NLTK's search path: `--nltk-data`, `NLTK_DATA`, the image's
`/usr/local/share/nltk_data`. It is looked up before evalscope starts, because evalscope would
otherwise download it in the middle of scoring and, offline, leave those samples unscored.
The reports (`<work>/reports/<model>/<dataset>.json`, schema_version 2) are parsed
into `EvalScore` rows: one per metric and subset, plus an OVERALL row when a metric has several
subsets.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from servelab.api.results import EvalScore
from servelab.loadgen.evalscope import Evalscope
from servelab.workers.common import WorkerError, api_key, run_logged


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
    p.add_argument(
        "--nltk-data",
        type=Path,
        default=None,
        help="NLTK data directory (tokenizers/punkt_tab/...) put first on NLTK_DATA for evalscope",
    )


# NLTK resources that evalscope 1.14.1 loads while scoring these benchmarks (nltk.data.find names).
# When one is missing, evalscope's ifeval and ifbench (utils.resource_utils.check_nltk_data) download it
# from a mirror in the middle of scoring; offline that fails, after retries, inside each sample's
# scoring, which evalscope logs before scoring the sample with nothing (multi_if just fails to load it).
# So they are looked up before evalscope runs.
NLTK_RESOURCES: dict[str, tuple[str, ...]] = {
    "ifeval": ("tokenizers/punkt_tab/english/",),
    "multi_if": ("tokenizers/punkt_tab/english/",),
    "ifbench": ("tokenizers/punkt_tab/english/", "corpora/stopwords"),
}


def missing_nltk_data(datasets: Sequence[str], search: Sequence[str]) -> list[str]:
    """NLTK resources the data sets need that are neither in `search` nor on NLTK's default path.

    Empty when nothing is needed, or when nltk cannot be imported here (evalscope runs elsewhere).
    """
    needed = sorted({r for d in datasets for r in NLTK_RESOURCES.get(d, ())})
    if not needed:
        return []
    try:
        nltk_data = importlib.import_module("nltk.data")
    except ImportError:
        return []
    paths = [*search, *nltk_data.path]
    missing = []
    for resource in needed:
        try:
            nltk_data.find(resource, paths=paths)
        except LookupError:
            missing.append(resource)
    return missing


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
        *Evalscope(args.evalscope).command(),
        "eval",
        "--model",
        args.model,
        "--api-url",
        args.api_url,
        "--api-key",
        api_key() or "EMPTY",
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
    if args.nltk_data is not None:
        env["NLTK_DATA"] = os.pathsep.join(
            p for p in (str(args.nltk_data.resolve()), env.get("NLTK_DATA", "")) if p
        )
    search = [p for p in env.get("NLTK_DATA", "").split(os.pathsep) if p]
    missing_nltk = missing_nltk_data(args.datasets, search)
    if missing_nltk:
        raise WorkerError(
            f"NLTK data {', '.join(missing_nltk)} (needed to score {' '.join(args.datasets)}) is not on "
            f"NLTK_DATA {search} or NLTK's default paths; evalscope would try to download it while scoring. "
            "Install it in the image (python -m nltk.downloader -d /usr/local/share/nltk_data punkt_tab) "
            "or pass --nltk-data DIR."
        )
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
