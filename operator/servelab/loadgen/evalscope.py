"""evalscope perf (1.14.1), the write-ups' load generator and servelab's default.

Requests follow the reference recipe: `--dataset random`, prompt length fixed (`--min-prompt-length =
--max-prompt-length`, `--prefix-length 0`), `--max-tokens = --min-tokens`, `--extra-args '{"ignore_eos":
true}'`, a local tokenizer, `--no-timestamp`. One evalscope process per sweep (`servelab.loadgen.session`: each point run in-process,
with the argv below) or per point; figures are recomputed
from its per-request SQLite data (`servelab.workers.perfparse`).
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from servelab.loadgen.base import LoadGenerator, PointShape
from servelab.workers.perfparse import PointFigures, find_point_dir, parse_point_dir


class Evalscope(LoadGenerator):
    name = "evalscope"
    image = "evalscope"
    version = "1.14.1"

    def command(self) -> list[str]:
        if self.program:
            return [self.program]
        beside = Path(sys.executable).parent / "evalscope"
        if beside.is_file():
            return [str(beside)]
        found = shutil.which("evalscope")
        return [found] if found else [sys.executable, "-m", "evalscope.cli.cli"]

    def point_command(
        self, shape: PointShape, parallel: int, number: int, offset: int, out: Path
    ) -> list[str]:
        cmd = [
            *self.command(), "perf", "--url", shape.url, "--api", "openai", "--model", shape.model,
            "--tokenizer-path", shape.tokenizer, "--dataset", shape.dataset,
            "--min-prompt-length", str(shape.min_prompt_tokens), "--max-prompt-length", str(shape.prompt_tokens),
            "--prefix-length", str(shape.prefix_length), "--max-tokens", str(shape.max_tokens),
            "--parallel", str(parallel), "--number", str(number),
            "--dataset-offset", str(offset), "--outputs-dir", str(out / "evalscope"), "--name", "perf",
            "--no-timestamp", "--no-test-connection", "--connect-timeout", str(shape.connect_timeout),
            "--total-timeout", str(shape.request_timeout), "--sleep-interval", "0",
        ]  # fmt: skip
        if shape.min_tokens:  # 0: not sent (an engine that refuses fields outside OpenAI's schema)
            cmd += ["--min-tokens", str(shape.min_tokens)]
        if shape.dataset_path:
            cmd += ["--dataset-path", shape.dataset_path]
        cmd.append("--stream" if shape.stream else "--no-stream")
        if shape.rate:
            cmd += ["--rate", str(shape.rate)]
        if shape.temperature is not None:
            cmd += ["--temperature", str(shape.temperature)]
        if shape.ignore_eos:
            cmd += ["--extra-args", json.dumps({"ignore_eos": True})]
        if shape.headers:
            cmd += ["--headers", *shape.headers]
        if shape.api_key:
            cmd += ["--api-key", shape.api_key]
        return cmd

    def session_command(self, tokenizer: str | None = None) -> list[str] | None:
        """This interpreter, when evalscope is importable in it (the evalscope image and environment) and
        no other program was named."""
        import importlib.util

        if self.program or importlib.util.find_spec("evalscope") is None:
            return None
        return [
            sys.executable,
            "-m",
            "servelab.loadgen.session",
            self.name,
            *([tokenizer] if tokenizer else []),
        ]

    def warm_session(self, tokenizer: str | None = None) -> None:
        import evalscope.perf.main
        from evalscope.perf.plugin.datasets.utils import load_tokenizer

        # seconds of imports and the tokenizer's first load, once per sweep (while the server loads); and
        # no HTML report per point (seconds each, between points, with the server held): servelab reads
        # the per-request data, which every point still keeps
        evalscope.perf.main.gen_perf_html_report = lambda *_a, **_k: None
        if tokenizer:
            try:
                load_tokenizer(tokenizer)
            except Exception as exc:  # the point itself reports what is wrong with it
                print(f"tokenizer {tokenizer} not loaded ahead: {exc!r}", file=sys.stderr)

    def run_in_process(self, argv: list[str]) -> int:
        """`evalscope perf ARGS` as its CLI runs it (its own argument parser, `run_perf_benchmark`)."""
        import argparse

        from evalscope.perf.arguments import add_argument
        from evalscope.perf.main import run_perf_benchmark

        args = argv[argv.index("perf") + 1 :]
        parser = argparse.ArgumentParser(prog="evalscope perf")
        add_argument(parser)
        run_perf_benchmark(parser.parse_args(args))
        return 0

    def prepare(self, out: Path, parallel: int, number: int) -> None:
        stale = out / "evalscope" / "perf" / f"parallel_{parallel}_number_{number}"
        if stale.exists():  # a retried pod: evalscope refuses an existing benchmark_data.db
            shutil.rmtree(stale)

    def parse_point(
        self, out: Path, parallel: int, number: int
    ) -> tuple[PointFigures | None, Path | None, list[str]]:
        point_dir = find_point_dir(out / "evalscope", parallel, number)
        if point_dir is None:
            return None, None, []
        try:
            figures = parse_point_dir(point_dir)
        except (OSError, ValueError, KeyError) as exc:
            return None, point_dir, [f"could not parse {point_dir}: {exc}"]
        return figures, point_dir, list(figures.warnings)
