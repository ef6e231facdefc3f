"""The load harness's own ceiling: each load generator against a server that does no model work.

A zero-work OpenAI-compatible server (hack/zeroserver, Go; `servelab_dev.zeroserver`) streams the
requested tokens as fast as the client reads them. Against it, a load generator's throughput is its own
ceiling per client process, and the TTFT/TPOT it reports are what it adds to any server's. Each point
runs through the product's perf worker (`servelab worker perf`, in the generator's worker environment),
so the figures are the ones a benchmark records, with the client CPU, scheduling delay and label. The
server's CPU during each point and a compiled reference client (zeroserver load) show that the server
is not the limit.

Prints figures; asserts nothing. Run: .venv/bin/python bench/harness.py [--generators evalscope vllm-bench]
[--concurrency 1 8 32 256] [--write] [--shards 2 4 8] [--json FILE] (--write stores the ceilings in
servelab/data/loadgen-ceilings.json; --shards also runs evalscope with k client processes per point,
`spec.load.clientShards`, and prints how the ceiling grows with k).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from servelab import loadgen
from servelab.loadgen.headroom import CEILINGS
from servelab.toolchain import envs
from servelab_dev.tinymodel import ensure_tiny_model
from servelab_dev.zeroserver import ZeroServer, proc_cpu_seconds, reference_load

PROMPT, OUTPUT = 128, 256


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return f"{os.cpu_count()} cores, {cpu}, {platform.system()} {platform.release()}, load average {load:.1f}"


def requests_for(c: int, seconds_target: float = 3.0, guess_tps: float = 30000.0) -> int:
    """Enough requests for a few seconds of load at a guessed ceiling, at least 4 per slot."""
    return max(4 * c, int(seconds_target * guess_tps / OUTPUT), 20)


def run_generator(name: str, concurrency: list[int], tokenizer: str, shards: int = 1) -> list[dict[str, Any]]:
    """One point per concurrency through the perf worker; with shards > 1 each point runs as that many
    client processes (`--client-shards`, sessions as a benchmark's sweep uses them)."""
    generator = loadgen.get(name)
    rows = []
    with ZeroServer() as srv, tempfile.TemporaryDirectory(prefix=f"harness-{name}-") as tmp:
        for c in concurrency:
            if c < shards:
                continue
            n = requests_for(c, guess_tps=30000.0 * shards)
            out = Path(tmp) / f"c{c}"
            more = ["--client-shards", str(shards), "--resume"] if shards > 1 else []
            cmd = envs.worker_command(generator.image, "worker", "perf", "--url", f"{srv.url}/v1", "--model",
                                      srv.model, "--tokenizer-path", tokenizer, "--prompt-tokens", str(PROMPT),
                                      "--max-tokens", str(OUTPUT), "--parallel", str(c), "--number", str(n),
                                      "--generator", name, "--warmup-requests", "0", "--allow-client-bound",
                                      "--out", str(out), *more)  # fmt: skip
            cpu0 = srv.cpu_seconds()
            subprocess.run(cmd, env=envs.worker_environ(None), capture_output=True, text=True, check=False)
            server_cpu = srv.cpu_seconds() - cpu0
            try:
                p = json.loads((out / "result.json").read_text())["points"][0]
            except (OSError, ValueError, KeyError, IndexError):
                print(f"  {name} c={c}: no result (see {out}/logs)")
                continue
            dur = p.get("durationSeconds") or 0.0
            row = {"concurrency": c, "shards": shards, "requests": n,
                   "outputTokensPerSecond": p.get("outputTokensPerSecond"),
                   "addedTtftSeconds": p.get("avgTtftSeconds"), "addedP99TtftSeconds": p.get("p99TtftSeconds"),
                   "addedTpotSeconds": p.get("avgTpotSeconds"), "clientCpu": p.get("clientCpu"),
                   "clientBusy": p.get("clientBusy"), "scheduleDelaySeconds": p.get("clientScheduleDelaySeconds"),
                   "serverCpu": round(server_cpu / dur, 3) if dur else None, "label": p.get("label")}  # fmt: skip
            rows.append(row)
            print(f"  {name:10} c={c:<4} k={shards:<2} {fmt(row)}", flush=True)
    return rows


def fmt(r: dict[str, Any]) -> str:
    def g(key: str, spec: str) -> str:
        v = r.get(key)
        return format(v, spec) if isinstance(v, int | float) else "-"

    return (f"out {g('outputTokensPerSecond', '8.0f')} tok/s  TTFT {g('addedTtftSeconds', '.4f')} s "
            f"(p99 {g('addedP99TtftSeconds', '.4f')})  TPOT {g('addedTpotSeconds', '.6f')} s  client CPU "
            f"{g('clientCpu', '.2f')} busy {g('clientBusy', '.2f')}  server CPU {g('serverCpu', '.2f')}")  # fmt: skip


def run_reference(concurrency: list[int]) -> list[dict[str, Any]]:
    rows = []
    with ZeroServer() as srv:
        for c in concurrency:
            n = requests_for(c, guess_tps=120000.0)
            cpu0, t0 = srv.cpu_seconds(), time.monotonic()
            r = reference_load(srv.url, c, n, max_tokens=OUTPUT, prompt_words=PROMPT)
            server_cpu = (proc_cpu_seconds(srv.pid) - cpu0) / max(time.monotonic() - t0, 1e-9)
            row = {"concurrency": c, "requests": n, "outputTokensPerSecond": r.get("outputTokensPerSecond"),
                   "addedTtftSeconds": r.get("avgTtftSeconds"), "addedTpotSeconds": r.get("avgTpotSeconds"),
                   "serverCpu": round(server_cpu, 3)}  # fmt: skip
            rows.append(row)
            print(f"  {'reference':10} c={c:<4} {fmt(row)}", flush=True)
    return rows


def markdown(results: dict[str, list[dict[str, Any]]], concurrency: list[int]) -> str:
    """One row per client: output tok/s at each concurrency, then the TTFT/TPOT it adds and its CPU."""

    def num(row: dict[str, Any], key: str, scale: float, spec: str) -> str:
        v = row.get(key)
        return format(v * scale, spec) if isinstance(v, int | float) else "-"

    top = concurrency[-1]
    head = ["client", *(f"c={c} out tok/s" for c in concurrency), "mean TTFT added c=1 / c=32 / c=" + str(top),
            f"mean TPOT added c={top}", f"client CPU c={top}"]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, rows in results.items():
        by = {r["concurrency"]: r for r in rows}
        cells = [num(by.get(c, {}), "outputTokensPerSecond", 1e-3, ".1f") + "k" for c in concurrency]
        ttft = " / ".join(num(by.get(c, {}), "addedTtftSeconds", 1.0, ".3f") for c in (1, 32, top))
        tpot = num(by.get(top, {}), "addedTpotSeconds", 1e6, ".0f") + " us"
        cpu = num(by.get(top, {}), "clientCpu", 1.0, ".2f")
        lines.append("| " + " | ".join([name, *cells, ttft + " s", tpot, cpu]) + " |")
    return "\n".join(lines)


def shard_table(one: list[dict[str, Any]], sharded: dict[int, list[dict[str, Any]]],
                concurrency: list[int]) -> str:  # fmt: skip
    """evalscope's ceiling with k client processes per point: output tok/s (and x one process) per
    concurrency, the clients' CPU and the label."""
    head = ["client processes", *(f"c={c} out tok/s" for c in concurrency), f"client CPU c={concurrency[-1]}"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    base = {r["concurrency"]: r.get("outputTokensPerSecond") for r in one}
    for k, rows in sorted({1: one, **sharded}.items()):
        by = {r["concurrency"]: r for r in rows}
        cells = []
        for c in concurrency:
            v = by.get(c, {}).get("outputTokensPerSecond")
            b = base.get(c)
            cells.append("-" if not v else f"{v / 1e3:.1f}k" + (f" ({v / b:.1f}x)" if b and k > 1 else ""))
        cpu = by.get(concurrency[-1], {}).get("clientCpu")
        lines.append("| " + " | ".join([str(k), *cells, "-" if cpu is None else f"{cpu:.2f}"]) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--generators", nargs="+", default=sorted(loadgen.GENERATORS))
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32, 256])
    ap.add_argument("--write", action="store_true", help=f"store the ceilings in {CEILINGS}")
    ap.add_argument("--shards", type=int, nargs="+", default=[],
                    help="also run evalscope with this many client processes per point (spec.load.clientShards)")  # fmt: skip
    ap.add_argument("--json", type=Path, default=None, help="write every row here")
    args = ap.parse_args()
    tokenizer = str(ensure_tiny_model())
    started = time.monotonic()
    print(f"machine: {machine()}")
    print(f"{PROMPT}-token prompts, {OUTPUT} output tokens, ignore_eos; zero-work server: hack/zeroserver")
    results: dict[str, list[dict[str, Any]]] = {
        "reference (compiled, zeroserver load)": run_reference(args.concurrency)
    }
    for name in args.generators:
        results[name] = run_generator(name, args.concurrency, tokenizer)
    sharded: dict[int, list[dict[str, Any]]] = {}
    for k in args.shards:
        sharded[k] = run_generator("evalscope", args.concurrency, tokenizer, shards=k)
    print()
    print(markdown(results, args.concurrency))
    if sharded:
        print()
        print(shard_table(results.get("evalscope", []), sharded, args.concurrency))
    print(f"\nbench took {time.monotonic() - started:.0f} s")
    if args.json:
        args.json.write_text(json.dumps({"machine": machine(), "results": results,
                                         "sharded": {str(k): v for k, v in sharded.items()}}, indent=2) + "\n")  # fmt: skip
    if args.write:
        data = {
            "measured": datetime.now(UTC).strftime("%Y-%m-%d"),
            "machine": machine(),
            "shape": {"promptTokens": PROMPT, "outputTokens": OUTPUT, "ignoreEos": True},
            "how": "bench/harness.py against hack/zeroserver, one client process per point",
            "generators": {name: {"version": loadgen.get(name).version, "points": rows}
                           for name, rows in results.items() if name in loadgen.GENERATORS},
        }  # fmt: skip
        CEILINGS.write_text(json.dumps(data, indent=2) + "\n")
        print(f"wrote {CEILINGS}")


if __name__ == "__main__":
    main()
