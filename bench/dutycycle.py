"""Duty cycle of a sweep: seconds of measured load / seconds the server was held, before and after.

Runs the product path, `servelab run`, on the tiny model with llama.cpp (llama-server on CPU): a
ServeBenchmark with the write-ups' sweep shape scaled down (their sweep is 5 points at concurrency
1..100; here `--parallel`, default 1 2 4, sized to fit llama-server's slots on 2 cores), each point's
request count sized so the point runs at least `--seconds` (default 60; sized from a calibration against
llama-server first, with a margin: the machine's load moves). It prints, from the run's status.timing, the seconds the server was held, the
seconds of measured load and their ratio, for:

- after: this checkout (one client process for the whole sweep, one warm-up, started with the server);
- before: a checkout of `--before` (a git worktree; default the last commit with one step and one
  client process per point), the same manifest.

Prints figures; asserts nothing. Run: .venv/bin/python bench/dutycycle.py [--seconds 60] [--parallel 1 2 4]
[--before REF | --no-before]. Each run takes points x seconds plus its overheads (~4 min at the
defaults), so the whole script ~8 min.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from servelab.local.processes import free_port
from servelab.paths import repo_path
from servelab.toolchain import envs, llamacpp
from servelab_dev.tinymodel import ensure_tiny_gguf, ensure_tiny_model

# the last commit whose plan ran one step (one client process) per load point
BEFORE = "8f39b65"
CALIBRATION_SECONDS = 8.0
# requests per point: calibrated rate x seconds x this margin, so that points run at least --seconds on a
# machine whose load moves between the calibration and the run
MARGIN = 1.3


def spec(gguf: Path, tokenizer: Path, parallel: list[int], number: list[int], args: argparse.Namespace) -> dict[str, Any]:  # fmt: skip
    return {
        "model": {"path": str(gguf), "tokenizer": str(tokenizer)},
        "engine": {"name": "llamacpp", "servedModelName": "tiny",
                   "llamacpp": {"parallelSlots": max(parallel)}, "extraArgs": ["-t", "1"]},
        "load": {"parallel": parallel, "number": number, "minPromptLength": args.prompt_tokens,
                 "maxPromptLength": args.prompt_tokens, "maxTokens": args.max_tokens, "minTokens": args.max_tokens,
                 "warmupRequests": 1, "pointTimeoutSeconds": int(args.seconds * 4) + 60},
        "timeouts": {"serverReadySeconds": 120, "totalSeconds": int(args.seconds * len(parallel) * 4) + 900},
    }  # fmt: skip


def calibrate(gguf: Path, parallel: list[int], args: argparse.Namespace) -> list[float]:
    """Requests per second llama-server sustains at each concurrency (a few requests each, no evalscope),
    to size each point's request count to about --seconds."""
    port = free_port()
    server = llamacpp.ensure_llamacpp() / "llama-server"
    cmd = [str(server), "-m", str(gguf), "--alias", "tiny", "--host", "127.0.0.1", "--port", str(port),
           "-np", str(max(parallel)), "-c", str(max(parallel) * 1024), "-t", "1"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(240):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.5)
        body = json.dumps({"model": "tiny", "max_tokens": args.max_tokens, "ignore_eos": True,
                           "messages": [{"role": "user", "content": "hello " * args.prompt_tokens}]}).encode()  # fmt: skip

        def one() -> None:
            req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/chat/completions", data=body,
                                         headers={"Content-Type": "application/json", "Connection": "close"})  # fmt: skip
            with urllib.request.urlopen(req, timeout=120) as r:
                r.read()

        one()
        rates = []
        for p in parallel:  # each concurrency for CALIBRATION_SECONDS (the machine's load moves)
            done: list[int] = []
            t0 = time.monotonic()

            def loop(t0: float, done: list[int]) -> None:
                while time.monotonic() - t0 < CALIBRATION_SECONDS:
                    one()
                    done.append(1)

            threads = [threading.Thread(target=loop, args=(t0, done)) for _ in range(p)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            rates.append(len(done) / (time.monotonic() - t0))
        return rates
    finally:
        proc.terminate()
        proc.wait(10)


def run(checkout: Path, manifest: Path, runs: Path, label: str) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=str(checkout / "operator") + os.pathsep + str(repo_path("devtools")))
    env.pop("SERVELAB_RESULT_SINK", None)
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "servelab", "run", "-f", str(manifest), "--runs-dir", str(runs)],
                          cwd=checkout, env=env, capture_output=True, text=True)  # fmt: skip
    wall = time.monotonic() - t0
    (runs / f"{label}.log").write_text(proc.stdout + proc.stderr)
    status = yaml.safe_load((runs / "servebenchmark-duty" / "status.yaml").read_text())["status"]
    if status.get("phase") != "Succeeded":
        print(f"{label}: {status.get('phase')} {status.get('message')} (log: {runs / f'{label}.log'})")
    t = status.get("timing") or {}
    rows = status.get("results") or []
    return {"label": label, "held": t.get("serverHeldSeconds"), "measured": t.get("measuredSeconds"),
            "duty": t.get("dutyCycle"), "wall": wall, "points": [round(r.get("durationSeconds") or 0, 1) for r in rows],
            "phase": status.get("phase")}  # fmt: skip


def at_ref(ref: str, tree: Path, manifest: Path, runs: Path, label: str) -> dict[str, Any]:
    """`run` in a git worktree of ref (removed after)."""
    subprocess.run(["git", "-C", str(repo_path()), "worktree", "add", "--detach", str(tree), ref],
                   check=True, capture_output=True)  # fmt: skip
    try:
        return run(tree, manifest, runs, f"{label} ({ref})")
    finally:
        subprocess.run(["git", "-C", str(repo_path()), "worktree", "remove", "--force", str(tree)],
                       capture_output=True)  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=60, help="target duration of each point")
    ap.add_argument("--parallel", type=int, nargs="+", default=[1, 2, 4], help="concurrency of each point")
    ap.add_argument("--prompt-tokens", type=int, default=64)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--before", default=BEFORE, help="git ref of the 'before' checkout")
    ap.add_argument("--no-before", action="store_true", help="only the 'after' run")
    ap.add_argument("--after", default=None, help="git ref of the 'after' checkout (default: this checkout)")
    args = ap.parse_args()

    tokenizer = ensure_tiny_model()
    gguf = ensure_tiny_gguf()
    envs.ensure_env("evalscope")
    rates = calibrate(gguf, args.parallel, args)
    number = [max(1, math.ceil(args.seconds * r * MARGIN)) for r in rates]
    print(f"machine: {platform.node()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    print(f"sweep: parallel {args.parallel}, number {number} (calibrated {', '.join(f'{r:.1f}' for r in rates)} "
          f"req/s; ~{args.seconds:g}s per point), {args.prompt_tokens} prompt / {args.max_tokens} output tokens")  # fmt: skip
    work = Path(tempfile.mkdtemp(prefix="servelab-duty-"))
    manifest = work / "duty.yaml"
    doc = {"apiVersion": "servelab.dev/v1alpha1", "kind": "ServeBenchmark", "metadata": {"name": "duty"},
           "spec": spec(gguf, tokenizer, args.parallel, number, args)}  # fmt: skip
    manifest.write_text(yaml.safe_dump(doc))
    results = []
    if not args.no_before:
        results.append(at_ref(args.before, work / "before", manifest, work / "runs-before", "before"))
    if args.after:
        results.append(at_ref(args.after, work / "after", manifest, work / "runs-after", "after"))
    else:
        results.append(run(repo_path(), manifest, work / "runs-after", "after (this checkout)"))
    print("\n| run | server held (s) | measured load (s) | duty cycle | points (s) | wall (s) |")
    print("|---|---|---|---|---|---|")
    for r in results:
        duty = f"{r['duty']:.3f}" if isinstance(r["duty"], int | float) else "-"
        print(f"| {r['label']} | {r['held']} | {r['measured']} | {duty} | {', '.join(map(str, r['points']))} "
              f"| {r['wall']:.0f} |")  # fmt: skip
    print(f"\nruns and logs under {work}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
