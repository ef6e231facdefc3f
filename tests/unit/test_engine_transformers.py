"""The `transformers` engine (`transformers serve`): its command line, what it refuses, and how clients talk
to it (no ignore_eos/min_tokens, the model named by its path)."""

from __future__ import annotations

import argparse

import pytest

from servelab.api.engine import Engine
from servelab.api.servebenchmark import ServeBenchmarkSpec
from servelab.api.validate import SpecError, validate_resource
from servelab.engines import ServedModel, get
from servelab.loadgen import get as get_generator
from servelab.plan import compile_benchmark
from servelab.workers import perf

pytestmark = pytest.mark.unit

LOAD = {"parallel": [1], "number": [1], "maxTokens": 8}


def test_command_typed_options_first_extra_args_last() -> None:
    spec = Engine.model_validate({
        "name": "transformers", "dtype": "bfloat16", "trustRemoteCode": True, "extraArgs": ["--default-seed", "0"],
        "transformers": {"continuousBatching": True, "device": "cpu", "cbNumBlocks": 64, "cbMaxBatchTokens": 256,
                         "attnImplementation": "sdpa", "reasoning": "off"},
    })  # fmt: skip
    launch = get("transformers").launch(spec, ServedModel("/models/tiny"), host="0.0.0.0", port=8000)
    assert launch.command == [
        "transformers", "serve", "/models/tiny", "--continuous-batching", "--device", "cpu", "--dtype", "bfloat16",
        "--attn-implementation", "sdpa", "--trust-remote-code", "--reasoning", "off", "--cb-num-blocks", "64",
        "--cb-max-batch-tokens", "256", "--host", "0.0.0.0", "--port", "8000", "--log-level", "info",
        "--default-seed", "0",
    ]  # fmt: skip
    assert launch.served_model_name == "/models/tiny" and launch.metrics_path is None
    assert get("transformers").concurrency_limit(None, launch.command) == (
        None, "transformers serve --continuous-batching --cb-max-batch-tokens 256")  # fmt: skip


def test_without_continuous_batching_one_request_at_a_time() -> None:
    command = get("transformers").launch(Engine(name="transformers"), ServedModel("Qwen/Qwen3-8B")).command
    assert (
        command[:3] == ["transformers", "serve", "Qwen/Qwen3-8B"] and "--continuous-batching" not in command
    )
    assert get("transformers").concurrency_limit(None, command)[0] == 1


@pytest.mark.parametrize(
    ("engine", "field"),
    [
        ({"servedModelName": "tiny"}, "servedModelName"),
        ({"maxModelLen": 4096}, "maxModelLen"),
        ({"reasoningParser": "qwen3"}, "reasoningParser"),
        ({"tensorParallelSize": 2}, "tensorParallelSize"),
        ({"quantization": "fp8"}, "quantization"),
        ({"apiKeySecretRef": {"name": "s", "key": "k"}}, "apiKeySecretRef"),
    ],
)
def test_refuses_what_transformers_serve_cannot_do(engine: dict[str, object], field: str) -> None:
    spec = {"model": {"path": "/m"}, "load": LOAD, "engine": {"name": "transformers", **engine}}
    with pytest.raises(SpecError) as err:
        validate_resource("ServeBenchmark", "x", spec)
    assert err.value.errors[0].startswith(f"spec.engine.{field}: engine.{field} ")
    validate_resource(
        "ServeBenchmark", "x", {**spec, "engine": {"name": "transformers", "quantization": "bnb-4bit"}}
    )


def test_clients_send_neither_ignore_eos_nor_min_tokens(tmp_path: object) -> None:
    """transformers serve answers 422 to fields outside OpenAI's schema: the plan tells the perf worker to
    send neither (whatever the spec's load asks), and evalscope then gets no --min-tokens."""
    spec = ServeBenchmarkSpec.model_validate({"model": {"path": "/m"}, "engine": {"name": "transformers"},
                                             "load": {**LOAD, "minTokens": 8}})  # fmt: skip
    plan = compile_benchmark(spec, ServedModel("/m"), artifacts="/a", server_url=lambda p: f"http://h:{p}")
    (step,) = [s for s in plan.steps if s.result == "points"]
    argv = step.argv
    assert "--no-ignore-eos" in argv and argv[argv.index("--min-tokens") + 1] == "0"
    assert argv[argv.index("--model") + 1] == "/m" and argv[argv.index("--metrics-url") + 1] == "none"
    parser = argparse.ArgumentParser()
    perf.add_arguments(parser)
    args = parser.parse_args(argv[argv.index("perf") + 1 :])
    cmd = get_generator("evalscope").point_command(perf.point_shape(args, "transformers"), 1, 1, 0, args.out)
    assert "--min-tokens" not in cmd and "--extra-args" not in cmd
    # vLLM still gets both
    spec = spec.model_copy(update={"engine": Engine(name="vllm")})
    plan = compile_benchmark(spec, ServedModel("/m"), artifacts="/a", server_url=lambda p: f"http://h:{p}")
    (step,) = [s for s in plan.steps if s.result == "points"]
    assert "--no-ignore-eos" not in step.argv and step.argv[step.argv.index("--min-tokens") + 1] == "8"
