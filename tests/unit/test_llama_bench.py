"""spec.llamaBench: the plan's step, the worker's reading of llama-bench's JSON, status and the table."""

from __future__ import annotations

import argparse

import pytest

from servelab import report
from servelab import status as st
from servelab.api.servebenchmark import ServeBenchmarkSpec, ServeBenchmarkStatus
from servelab.api.validate import SpecError, validate_resource
from servelab.engines import ServedModel
from servelab.plan import compile_benchmark
from servelab.workers import llamabench

pytestmark = pytest.mark.unit

# two objects of `llama-bench -m tiny.gguf -p 64 -n 16 -d 0,128 -r 2 -t 2 -o json` (this machine's build),
# less the fields servelab does not read
RAW = [
    {"build_commit": "054d8b0f2", "build_number": 8396, "backends": "CPU", "model_type": "qwen3 ?B F16",
     "model_size": 6559744, "model_n_params": 3278336, "n_threads": 2, "n_gpu_layers": -1, "flash_attn": -1,
     "n_prompt": 64, "n_gen": 0, "n_depth": 128, "avg_ts": 283.948685, "stddev_ts": 106.989911,
     "samples_ts": [359.602, 208.295]},
    {"build_commit": "unknown", "build_number": 0, "backends": "CUDA", "model_type": "qwen35 9B Q8_0",
     "model_size": 9513421824, "model_n_params": 8950000000, "n_threads": 8, "n_gpu_layers": 99, "flash_attn": 1,
     "n_prompt": 0, "n_gen": 64, "n_depth": 0, "avg_ts": 84.54, "stddev_ts": 0.56, "samples_ts": [84.0, 85.1]},
]  # fmt: skip

SPEC = {"model": {"path": "/models/q.gguf"}, "engine": {"name": "llamacpp"},
        "llamaBench": {"promptTokens": [1024], "genTokens": [64], "depths": [0, 16384, 32768, 65536],
                       "gpuLayers": 99, "flashAttention": True, "extraArgs": ["-ub", "2048"]},
        "resources": {"gpus": 1}}  # fmt: skip


def test_write_up_003_command_as_a_step() -> None:
    spec = ServeBenchmarkSpec.model_validate(SPEC)
    plan = compile_benchmark(
        spec, ServedModel("/models/q.gguf"), artifacts="/a", server_url=lambda p: f"http://h:{p}"
    )
    (step,) = plan.steps
    assert step.result == "bench" and step.image == "llamacpp" and step.gpus == 1
    assert step.argv == ["servelab", "worker", "llamabench", "--model", "/models/q.gguf", "-p", "1024", "-n", "64",
                         "-d", "0", "16384", "32768", "65536", "-r", "5", "-ngl", "99", "-fa", "1", "--extra=-ub",
                         "--extra=2048", "--timeout", "21600", "--out", "/a/llama-bench"]  # fmt: skip
    parser = argparse.ArgumentParser()
    llamabench.add_arguments(parser)
    args = parser.parse_args(step.argv[3:])
    assert llamabench.command(args, "llama-bench") == [
        "llama-bench", "-m", "/models/q.gguf", "-p", "1024", "-n", "64", "-d", "0,16384,32768,65536", "-r", "5",
        "-o", "json", "-ngl", "99", "-fa", "1", "-ub", "2048"]  # fmt: skip


def test_only_llama_bench_is_a_benchmark_but_not_of_an_endpoint() -> None:
    validate_resource("ServeBenchmark", "x", SPEC)
    endpoint = {"url": "http://llm:8000", "servedModelName": "m", "tokenizer": "/t"}
    with pytest.raises(SpecError) as err:
        validate_resource("ServeBenchmark", "x", {**SPEC, "model": None, "endpoint": endpoint})
    assert any(e.startswith("spec.llamaBench: ") for e in err.value.errors)


def test_rows_status_and_table() -> None:
    rows = llamabench.parse(RAW, "llama.cpp of llama-cpp-python 0.3.36")
    assert [r.test for r in rows] == ["pp64 @ d128", "tg64"]
    assert rows[0].build == "054d8b0f2 (8396)" and rows[1].build == "llama.cpp of llama-cpp-python 0.3.36"
    status = ServeBenchmarkStatus()
    spec = ServeBenchmarkSpec.model_validate(SPEC)
    plan = compile_benchmark(
        spec, ServedModel("/models/q.gguf"), artifacts="/a", server_url=lambda p: f"http://h:{p}"
    )
    result = {"kind": "bench", "bench": [r.model_dump(by_alias=True, exclude_none=True) for r in rows]}
    st.fold_benchmark(status, plan.steps[0], result, plan.points)
    assert status.llama_bench == rows and st.outcome(status) == "2 llama-bench test(s)"
    table = report.llama_bench_table(status)
    cells = [
        [c.strip() for c in line.strip("|").split("|")]
        for line in table.splitlines()
        if line.startswith("| ")
    ]
    assert cells[0] == ["model", "size", "params", "backend", "ngl", "test", "t/s"]
    assert cells[2] == ["qwen35 9B Q8_0", "8.86 GiB", "8.95 B", "CUDA", "99", "tg64", "84.54 ± 0.56"]
    assert table.endswith("build: 054d8b0f2 (8396), llama.cpp of llama-cpp-python 0.3.36")
