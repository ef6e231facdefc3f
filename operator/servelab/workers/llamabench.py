"""`servelab worker llamabench`: llama.cpp's own benchmark, `llama-bench -o json`, against a GGUF file.

No server and no HTTP: llama-bench loads the model in its own process and times prompt processing
(`pp<N>`: N prompt tokens in one batch) and generation (`tg<N>`: N tokens one at a time), each after
`-d` tokens of context already in the KV cache (`@ d<D>`), `-r` times; it reports the mean and the
standard deviation in tokens per second (write-up 003's `t/s ± sd` table, with backend and build).
Runs in the llamacpp image (its `llama-bench`; locally servelab.toolchain.llamacpp's CPU build).
The raw JSON and llama-bench's log are kept in `--out`; the rows are published as LlamaBenchResult.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from pathlib import Path
from typing import Any

from servelab.api.results import LlamaBenchResult
from servelab.workers.common import WorkerError


def add_arguments(p: argparse.ArgumentParser) -> None:
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--model", help="the GGUF file")
    where.add_argument("--hf-repo", default=None, help="a Hugging Face Hub repository holding the GGUF file")
    p.add_argument("--hf-file", default=None, help="the GGUF file of --hf-repo (downloaded into HF_HOME)")
    p.add_argument("-p", "--n-prompt", type=int, nargs="+", default=[512], help="prompt tokens (pp tests)")
    p.add_argument("-n", "--n-gen", type=int, nargs="+", default=[128], help="generated tokens (tg tests)")
    p.add_argument("-d", "--n-depth", type=int, nargs="+", default=[0], help="context depths")
    p.add_argument("-r", "--repetitions", type=int, default=5, help="repetitions of each test")
    p.add_argument("-t", "--threads", type=int, default=None, help="CPU threads (default: llama-bench's)")
    p.add_argument("-ngl", "--gpu-layers", type=int, default=None, help="layers offloaded to GPUs")
    p.add_argument("-fa", "--flash-attn", type=int, choices=[-1, 0, 1], default=None, help="flash attention")
    p.add_argument("--extra", action="append", default=[], help="one more llama-bench argument (repeatable)")
    p.add_argument("--program", default=None, help="llama-bench executable (default: the image's build)")
    p.add_argument("--timeout", type=float, default=21600, help="seconds llama-bench may take")
    p.add_argument("--out", type=Path, required=True, help="output directory")
    p.add_argument("--result", default=None, help="result sink: file:PATH or configmap:NS/NAME/KEY")


def command(args: argparse.Namespace, program: str) -> list[str]:
    cmd = [program, "-m", args.model, "-p", ",".join(map(str, args.n_prompt)), "-n", ",".join(map(str, args.n_gen)),
           "-d", ",".join(map(str, args.n_depth)), "-r", str(args.repetitions), "-o", "json"]  # fmt: skip
    if args.threads is not None:
        cmd += ["-t", str(args.threads)]
    if args.gpu_layers is not None:
        cmd += ["-ngl", str(args.gpu_layers)]
    if args.flash_attn is not None:
        cmd += ["-fa", str(args.flash_attn)]
    return cmd + list(args.extra)


def test_name(row: dict[str, Any]) -> str:
    """llama-bench's own test label: pp512, tg128, pp512+tg128, then ` @ d<depth>` when there is a depth."""
    n_prompt, n_gen, depth = (
        int(row.get("n_prompt") or 0),
        int(row.get("n_gen") or 0),
        int(row.get("n_depth") or 0),
    )
    name = (
        f"pp{n_prompt}+tg{n_gen}" if n_prompt and n_gen else (f"pp{n_prompt}" if n_prompt else f"tg{n_gen}")
    )
    return name + (f" @ d{depth}" if depth else "")


def parse(rows: list[dict[str, Any]], build_note: str | None = None) -> list[LlamaBenchResult]:
    """LlamaBenchResult rows from llama-bench's JSON array (one object per test)."""
    out = []
    for row in rows:
        commit, number = row.get("build_commit"), row.get("build_number")
        build = f"{commit} ({number})" if commit and commit != "unknown" else build_note
        out.append(
            LlamaBenchResult(
                test=test_name(row),
                n_prompt=int(row.get("n_prompt") or 0),
                n_gen=int(row.get("n_gen") or 0),
                n_depth=int(row.get("n_depth") or 0),
                avg_tokens_per_second=float(row["avg_ts"]),
                stddev_tokens_per_second=float(row.get("stddev_ts") or 0.0),
                samples_tokens_per_second=[float(x) for x in row.get("samples_ts") or []],
                model_type=row.get("model_type"),
                model_size_bytes=row.get("model_size"),
                model_params=row.get("model_n_params"),
                backends=row.get("backends"),
                n_gpu_layers=row.get("n_gpu_layers"),
                n_threads=row.get("n_threads"),
                flash_attn=row.get("flash_attn"),
                build=build,
            )
        )
    return out


def _program(args: argparse.Namespace) -> tuple[str, str | None]:
    """The llama-bench to run, and a build note when its JSON cannot name its commit (a source build)."""
    if args.program:
        return args.program, None
    from servelab.toolchain import llamacpp

    tool = llamacpp.tool("llama-bench")
    info = tool.parent / "BUILD_INFO.json"
    note = None
    if info.is_file():
        data = json.loads(info.read_text())
        note = f"llama.cpp of llama-cpp-python {data.get('llamaCppPythonVersion') or '?'}"
    return str(tool), note


def hub_file(repo: str, file: str | None) -> Path:
    """The local path of a GGUF file of a Hub repository (downloaded into the HF cache when missing)."""
    from huggingface_hub import hf_hub_download  # type: ignore[import-not-found]

    from servelab.workers.hub import token

    if not file:
        raise WorkerError(f"llama-bench needs one GGUF file of {repo}: set spec.model.huggingFace.file")
    try:
        return Path(hf_hub_download(repo, file, token=token()))
    except Exception as exc:
        raise WorkerError(f"cannot download {file} of {repo} from the Hugging Face Hub: "
                          f"{type(exc).__name__}: {exc}") from exc  # fmt: skip


def run_bench(args: argparse.Namespace) -> dict[str, Any]:
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    if args.hf_repo:  # what llama-server --hf-repo/--hf-file serves, fetched the same way into the HF cache
        args.model = str(hub_file(args.hf_repo, args.hf_file))
    program, note = _program(args)
    cmd = command(args, program)
    started = time.monotonic()
    with (out / "llama-bench.log").open("w") as log:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=log, text=True, timeout=args.timeout)
    (out / "llama-bench.json").write_text(proc.stdout)
    if proc.returncode != 0:
        tail = (out / "llama-bench.log").read_text()[-2000:]
        raise WorkerError(f"llama-bench exited {proc.returncode}: {tail}")
    try:
        rows = json.loads(proc.stdout)
    except ValueError as exc:
        raise WorkerError(f"llama-bench printed no JSON: {exc}") from exc
    results = parse(rows if isinstance(rows, list) else [], note)
    if not results:
        raise WorkerError("llama-bench reported no test")
    return {
        "kind": "bench",
        "command": ["llama-bench", *cmd[1:]],
        "seconds": round(time.monotonic() - started, 3),
        "bench": [r.model_dump(by_alias=True, exclude_none=True) for r in results],
    }


def run(args: argparse.Namespace) -> int:
    from servelab.workers.publish import publish_outcome, sink_from_spec

    sink = sink_from_spec(args.result, default_file=args.out / "result.json")
    errors = (WorkerError, OSError, subprocess.TimeoutExpired)
    result = publish_outcome("bench", sink, lambda: run_bench(args), errors, "llama-bench")
    if result is None:
        return 1
    for row in result["bench"]:
        print(
            f"{row['test']:>18}  {row['avgTokensPerSecond']:10.2f} ± {row['stddevTokensPerSecond']:.2f} t/s"
        )
    print(f"published {len(result['bench'])} llama-bench tests to {sink.describe()}")
    return 0
