"""`servelab worker benchy`: llama-benchy, write-up 003's context-depth harness, parsed into status rows.

llama-benchy (PyPI `llama-benchy`, pinned in the evalscope image: images/evalscope/requirements-nodeps.txt)
measures an OpenAI-compatible server the way llama-bench measures llama.cpp: for each depth d, prompt
length pp and generation length tg, `--runs` streamed chat requests whose context (d tokens, the system
message) and prompt (pp tokens) are slices of a book, with tg as max_tokens. It reports, per test,
pp t/s with ttfr / est_ppt / e2e_ttft (milliseconds) and tg t/s with peak t/s, each mean ± sd.

Everything after `--` is handed to llama-benchy as rendered by the plan (`servelab.plan.benchy_args`); the
worker adds `--save-result <out>/llama-benchy.json --format json` (its BenchmarkReport: one entry per
depth x pp x tg x concurrency) and the API key from $SERVELAB_API_KEY. Rows are named as llama-benchy's own
table names them (`pp2048 @ d8192`, `tg32 @ d8192`, ` (cN)` with several concurrency levels,
`ctx_pp`/`ctx_tg` with --enable-prefix-caching).

llama-benchy downloads its book (`--book-url`) on first use and caches it under
`~/.cache/llama-benchy/<md5 of the URL>.txt`. `--corpus FILE` gives the text instead (pods without
internet, tests): the worker runs llama-benchy with HOME in its output directory and that cache entry
filled from the file, so llama-benchy's own loading path reads it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from servelab.api.results import LlamaBenchyResult, Metric
from servelab.workers.common import WorkerError

VERSION = "0.3.5"
DEFAULT_BOOK_URL = "https://www.gutenberg.org/files/1661/1661-0.txt"  # llama-benchy 0.3.5's default
RESULT = "llama-benchy.json"
# llama-benchy as its console script runs it, with aiohttp closing each connection after its request
# (--connection-close): llama-server closes streamed connections, and llama-benchy's keep-alive pool then
# fails the next request on the dead one ("Server disconnected"). The same rule as servelab's other clients
# (`Connection: close` to engines that close streams); nothing else of llama-benchy changes.
CLOSE = ("import sys, aiohttp\n"
         "from llama_benchy.__main__ import main\n"
         "_init = aiohttp.TCPConnector.__init__\n"
         "def _closing(self, *a, **k):\n"
         "    k.pop('keepalive_timeout', None)\n"
         "    _init(self, *a, **{**k, 'force_close': True})\n"
         "aiohttp.TCPConnector.__init__ = _closing\n"
         "main()\n")  # fmt: skip


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, required=True, help="output directory")
    p.add_argument("--corpus", type=Path, default=None, help="text file used instead of downloading the book")
    p.add_argument("--timeout", type=float, default=21600.0, help="seconds for the whole run")
    p.add_argument("--connection-close", action="store_true", help="a new connection for every request")
    p.add_argument("--result", default=None, help="result sink: file:PATH or configmap:NS/NAME/KEY")
    p.add_argument("benchy", nargs=argparse.REMAINDER, help="-- then the llama-benchy arguments")


def _metric(m: dict[str, Any] | None, scale: float = 1.0) -> Metric | None:
    if not m:
        return None
    return Metric(mean=round(float(m["mean"]) * scale, 9), sd=round(float(m["std"]) * scale, 9))


def parse(report: dict[str, Any]) -> list[LlamaBenchyResult]:
    """llama-benchy's JSON report as rows, the way its own Markdown table lists them."""
    several = int(report.get("max_concurrency") or 1) > 1
    model, version = report.get("model"), report.get("version")
    rows: list[LlamaBenchyResult] = []
    for b in report.get("benchmarks") or []:
        c = int(b["concurrency"])
        suffix = f" (c{c})" if several else ""
        depth, pp, tg = int(b["context_size"]), int(b["prompt_size"]), int(b["response_size"])
        common = {"prompt_tokens": pp, "gen_tokens": tg, "depth": depth, "concurrency": c, "model": model,
                  "version": version}  # fmt: skip
        if b.get("is_context_prefill_phase"):
            names = (f"ctx_pp @ d{depth}{suffix}", f"ctx_tg @ d{depth}{suffix}")
            kinds = ("ctx_pp", "ctx_tg")
        else:
            at = f" @ d{depth}" if depth > 0 else ""
            names = (f"pp{pp}{at}{suffix}", f"tg{tg}{at}{suffix}")
            kinds = ("pp", "tg")
        pp_ts = _metric(b.get("pp_throughput"))
        if pp_ts is not None:
            rows.append(LlamaBenchyResult(
                test=names[0], kind=kinds[0], tokens_per_second=pp_ts,  # type: ignore[arg-type]
                request_tokens_per_second=_metric(b.get("pp_req_throughput")),
                ttfr_seconds=_metric(b.get("ttfr"), 1e-3), est_ppt_seconds=_metric(b.get("est_ppt"), 1e-3),
                e2e_ttft_seconds=_metric(b.get("e2e_ttft"), 1e-3), **common,
            ))  # fmt: skip
        tg_ts = _metric(b.get("tg_throughput"))
        if tg_ts is not None:
            rows.append(LlamaBenchyResult(
                test=names[1], kind=kinds[1], tokens_per_second=tg_ts,  # type: ignore[arg-type]
                request_tokens_per_second=_metric(b.get("tg_req_throughput")),
                peak_tokens_per_second=_metric(b.get("peak_throughput")), **common,
            ))  # fmt: skip
    return rows


def table(rows: list[LlamaBenchyResult]) -> str:
    """Write-up 003's llama-benchy table: model, test, t/s, peak t/s, ttfr, est_ppt, e2e_ttft (ms)."""

    def fmt(m: Metric | None, scale: float = 1.0) -> str:
        return "" if m is None else f"{m.mean * scale:.2f} ± {m.sd * scale:.2f}"

    head = ["model", "test", "t/s", "peak t/s", "ttfr (ms)", "est_ppt (ms)", "e2e_ttft (ms)"]
    body = [[r.model or "", r.test, fmt(r.tokens_per_second), fmt(r.peak_tokens_per_second),
             fmt(r.ttfr_seconds, 1e3), fmt(r.est_ppt_seconds, 1e3), fmt(r.e2e_ttft_seconds, 1e3)] for r in rows]  # fmt: skip
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(head)]
    line = (
        "| "
        + " | ".join(h.ljust(widths[0]) if i == 0 else h.rjust(widths[i]) for i, h in enumerate(head))
        + " |"
    )
    rule = "|:" + "-" * (widths[0] + 1) + "|" + "|".join("-" * (w + 1) + ":" for w in widths[1:]) + "|"
    out = [line, rule]
    for b in body:
        out.append(
            "| "
            + " | ".join(c.ljust(widths[0]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(b))
            + " |"
        )
    return "\n".join(out)


def _book_url(args: list[str]) -> str:
    for i, a in enumerate(args):
        if a == "--book-url" and i + 1 < len(args):
            return args[i + 1]
        if a.startswith("--book-url="):
            return a.split("=", 1)[1]
    return DEFAULT_BOOK_URL


def run_benchy(args: argparse.Namespace) -> dict[str, Any]:
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    bench = list(args.benchy[1:] if args.benchy[:1] == ["--"] else args.benchy)
    if not bench:
        raise WorkerError("no llama-benchy arguments after --")
    env = dict(os.environ)
    if args.corpus is not None:  # llama-benchy's own cache entry for its book URL, from the given text
        home = out / "home"
        cache = home / ".cache" / "llama-benchy"
        cache.mkdir(parents=True, exist_ok=True)
        name = hashlib.md5(_book_url(bench).encode()).hexdigest() + ".txt"
        (cache / name).write_text(args.corpus.read_text(encoding="utf-8"), encoding="utf-8")
        env["HOME"] = str(home)
    key = os.environ.get("SERVELAB_API_KEY")
    result_file = out / RESULT
    result_file.unlink(missing_ok=True)
    program = ["-c", CLOSE] if args.connection_close else ["-m", "llama_benchy"]
    cmd = [sys.executable, *program, *bench, *(["--api-key", key] if key else []),
           "--save-result", str(result_file), "--format", "json"]  # fmt: skip
    log_path = out / "llama-benchy.log"
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=args.timeout)
    except subprocess.TimeoutExpired as exc:
        raise WorkerError(f"llama-benchy ran longer than {args.timeout:.0f}s") from exc
    log_path.write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0 or not result_file.is_file():
        tail = (proc.stdout + proc.stderr)[-1500:]
        raise WorkerError(f"llama-benchy failed (rc={proc.returncode}); see {log_path}:\n{tail}")
    report = json.loads(result_file.read_text())
    rows = parse(report)
    if not rows:
        raise WorkerError(
            "llama-benchy measured nothing: no request streamed a content token (it times pp and tg from "
            f"the first one; a model that stops at once gives none); see {log_path}"
        )
    return {"kind": "benchy", "benchy": [r.to_wire() for r in rows], "version": report.get("version"),
            "latencyMs": report.get("latency_ms"), "artifacts": str(out)}  # fmt: skip


def run(args: argparse.Namespace) -> int:
    from servelab.workers.publish import publish_outcome, sink_from_spec

    sink = sink_from_spec(args.result, default_file=args.out / "result.json")
    result = publish_outcome("benchy", sink, lambda: run_benchy(args), (WorkerError,), "llama-benchy")
    if result is None:
        return 1
    print(table([LlamaBenchyResult.model_validate(r) for r in result["benchy"]]))
    print(f"published {len(result['benchy'])} llama-benchy rows to {sink.describe()}")
    return 0
