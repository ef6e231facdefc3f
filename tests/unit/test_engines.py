"""Rendered server command lines match the seeds' commands, flag for flag."""

from __future__ import annotations

import argparse
import shlex
from typing import Any

import pytest

from servelab.api.engine import Engine
from servelab.api.validate import SpecError, validate_resource
from servelab.engines import ENGINES, NoLocalBuild, ServedModel, default_for_format, for_command, get
from servelab.local.processes import StepFailed, Toolchain
from servelab.workers import engine_metrics, perf

pytestmark = pytest.mark.unit


def options(argv: list[str]) -> tuple[list[str], dict[str, str | None]]:
    """Split argv into positionals and {flag: value}; a flag followed by another flag is bare."""
    positional: list[str] = []
    opts: dict[str, str | None] = {}
    i = 0
    while i < len(argv):
        tok = argv[i]
        if tok.startswith("-") and not tok.lstrip("-").replace(".", "").isdigit():
            nxt = argv[i + 1] if i + 1 < len(argv) else None
            if nxt is None or (nxt.startswith("-") and not nxt.lstrip("-").replace(".", "").isdigit()):
                opts[tok] = None
                i += 1
            else:
                opts[tok] = nxt
                i += 2
        else:
            positional.append(tok)
            i += 1
    return positional, opts


def render(
    engine: dict[str, Any], location: str, host: str, port: int, tokenizer: str | None = None
) -> list[str]:
    spec = Engine.model_validate(engine)
    return get(spec.name).launch(spec, ServedModel(location, tokenizer), host=host, port=port).command


def same_command(rendered: list[str], seed: str, added: dict[str, str | None]) -> None:
    """The rendered command is the seed's, plus exactly the flags servelab always adds."""
    r_pos, r_opts = options(rendered)
    s_pos, s_opts = options(shlex.split(seed))
    assert r_pos == s_pos
    assert r_opts == {**s_opts, **added}


def test_vllm_seed_000_bf16() -> None:
    seed = (
        "vllm serve Qwen/Qwen3-4B-Instruct-2507 --max-model-len 8192 "
        "--served-model-name Qwen3-4B-Instruct-2507 --port 8080"
    )
    got = render(
        {"name": "vllm", "servedModelName": "Qwen3-4B-Instruct-2507", "maxModelLen": 8192},
        "Qwen/Qwen3-4B-Instruct-2507", "0.0.0.0", 8080,
    )  # fmt: skip
    same_command(got, seed, {"--host": "0.0.0.0"})


def test_vllm_seed_000_gguf_with_tokenizer() -> None:
    seed = (
        "vllm serve ./Qwen3-4B-Instruct-2507-iq4_xs.gguf --served-model-name Qwen3-4B-Instruct-2507-iq4_xs "
        "--max-model-len 8192 --port 8080 --tokenizer Qwen3-4B-Instruct-2507"
    )
    got = render(
        {"name": "vllm", "servedModelName": "Qwen3-4B-Instruct-2507-iq4_xs", "maxModelLen": 8192},
        "./Qwen3-4B-Instruct-2507-iq4_xs.gguf", "0.0.0.0", 8080, tokenizer="Qwen3-4B-Instruct-2507",
    )  # fmt: skip
    same_command(got, seed, {"--host": "0.0.0.0"})


def test_vllm_seed_003_mtp() -> None:
    seed = """vllm serve Qwen/Qwen3.5-4B --speculative-config '{"method": "mtp", "num_speculative_tokens": 1}' --reasoning-parser qwen3"""
    got = render(
        {"name": "vllm", "reasoningParser": "qwen3", "speculative": {"method": "mtp", "numSpeculativeTokens": 1}},
        "Qwen/Qwen3.5-4B", "0.0.0.0", 8000,
    )  # fmt: skip
    same_command(got, seed, {"--host": "0.0.0.0", "--port": "8000"})


def test_vllm_seed_002_fp8_and_api_key_from_secret() -> None:
    seed = "vllm serve Qwen/Qwen3-8B --dtype auto --max-model-len 16384 --quantization fp8"
    spec = Engine.model_validate(
        {"name": "vllm", "dtype": "auto", "maxModelLen": 16384, "quantization": "fp8",
         "apiKeySecretRef": {"name": "vllm", "key": "api-key"},
         "env": [{"name": "VLLM_USE_MODELSCOPE", "value": "True"}]}
    )  # fmt: skip
    launch = get("vllm").launch(spec, ServedModel("Qwen/Qwen3-8B"), port=8000)
    same_command(launch.command, seed, {"--host": "0.0.0.0", "--port": "8000"})
    assert launch.env == {"VLLM_USE_MODELSCOPE": "True"}
    assert launch.secret_env == {"VLLM_API_KEY": ("vllm", "api-key")}
    assert "token-123" not in " ".join(launch.command)


def test_sglang_seed_003_glm_eagle() -> None:
    seed = (
        "python3 -m sglang.launch_server --model-path zai-org/GLM-4.7-Flash --tp-size 4 "
        "--tool-call-parser glm47 --reasoning-parser glm45 --speculative-algorithm EAGLE "
        "--speculative-num-steps 3 --speculative-eagle-topk 1 --speculative-num-draft-tokens 4 "
        "--mem-fraction-static 0.8 --served-model-name glm-4.7-flash --host 127.0.0.1 --port 8000"
    )
    got = render(
        {"name": "sglang", "tensorParallelSize": 4, "toolCallParser": "glm47", "reasoningParser": "glm45",
         "speculative": {"method": "eagle", "numSteps": 3, "eagleTopk": 1, "numDraftTokens": 4},
         "gpuMemoryUtilization": 0.8, "servedModelName": "glm-4.7-flash"},
        "zai-org/GLM-4.7-Flash", "127.0.0.1", 8000,
    )  # fmt: skip
    same_command(got, seed, {"--enable-metrics": None})
    assert got[:3] == ["python3", "-m", "sglang.launch_server"]


def test_sglang_seed_003_qwen35_extra_args_last() -> None:
    got = render(
        {"name": "sglang", "speculative": {"method": "eagle", "numSteps": 3, "eagleTopk": 1, "numDraftTokens": 4},
         "extraArgs": ["--mamba-scheduler-strategy", "extra_buffer"], "gpuMemoryUtilization": 0.95},
        "Qwen/Qwen3.5-4B", "0.0.0.0", 30000,
    )  # fmt: skip
    assert got[-2:] == ["--mamba-scheduler-strategy", "extra_buffer"]


def test_llamacpp_seed_000_server() -> None:
    seed = "llama-server -m Qwen3-4B-Instruct-2507-iq4_xs.gguf -c 4096 -n 4096 -ngl 99"
    got = render(
        {"name": "llamacpp", "maxModelLen": 4096, "llamacpp": {"gpuLayers": 99}, "extraArgs": ["-n", "4096"]},
        "Qwen3-4B-Instruct-2507-iq4_xs.gguf", "0.0.0.0", 8080,
    )  # fmt: skip
    same_command(got, seed, {"--host": "0.0.0.0", "--port": "8080", "--metrics": None})


def test_llamacpp_seed_003_jinja() -> None:
    seed = (
        "llama-server --model m.gguf --jinja --ctx-size 202752 --temp 0.7 --top-p 1.0 --min-p 0.01 --fit on"
    )
    got = render(
        {"name": "llamacpp", "chatTemplate": "jinja",
         "extraArgs": ["--ctx-size", "202752", "--temp", "0.7", "--top-p", "1.0", "--min-p", "0.01", "--fit", "on"]},
        "m.gguf", "0.0.0.0", 8080,
    )  # fmt: skip
    _, opts = options(got)
    _, seed_opts = options(shlex.split(seed))
    del seed_opts["--model"]
    assert opts["-m"] == "m.gguf"
    assert {k: v for k, v in opts.items() if k in seed_opts} == seed_opts


NO_METRICS = {"transformers", "ollama", "mlx"}


@pytest.mark.parametrize("name", sorted(ENGINES))
def test_every_engine_renders_host_port_and_metrics(name: str) -> None:
    spec = Engine.model_validate({"name": name, "servedModelName": "tiny"})
    launch = get(name).launch(spec, ServedModel("/models/tiny"), host="127.0.0.1", port=18080)
    _, opts = options(launch.command)
    if name == "ollama":  # its script exports OLLAMA_HOST from its first argument
        assert launch.command[4] == "127.0.0.1:18080"
    else:
        assert opts["--host"] == "127.0.0.1" and opts["--port"] == "18080"
    # transformers serve and mlx_lm.server answer only to the model they load (servedModelName refused for
    # them); Ollama names a model name:tag
    served = {"transformers": "/models/tiny", "mlx": "/models/tiny", "ollama": "tiny:latest"}.get(
        name, "tiny"
    )
    assert launch.served_model_name == served
    # Ollama is ready when the imported model answers
    assert launch.health_path == ("/v1/models/tiny:latest" if name == "ollama" else "/health")
    # engines without a Prometheus endpoint (transformers serve, Ollama, MLX-LM) say so
    assert launch.metrics_path == (None if name in NO_METRICS else "/metrics")
    assert launch.needs_shm == (name not in ("llamacpp", "ollama", "mlx"))


@pytest.mark.parametrize("name", ["vllm", "sglang"])
def test_without_served_model_name_clients_use_the_name_the_engine_registers(name: str) -> None:
    """vLLM and SGLang answer to the model path or Hub id they were given when no name is set: the load
    and eval workers must send that, not a name the server has never heard of (an HTTP 404)."""
    launch = get(name).launch(Engine(name=name), ServedModel("/models/q/fp8", name="fp8"))
    assert launch.served_model_name == "/models/q/fp8"
    assert "--served-model-name" not in launch.command


def test_per_engine_options_are_a_sub_object() -> None:
    assert "-ngl" not in render({"name": "llamacpp"}, "m.gguf", "0.0.0.0", 8080)
    _, opts = options(render({"name": "llamacpp", "llamacpp": {"gpuLayers": 99, "parallelSlots": 4}},
                             "m.gguf", "0.0.0.0", 8080))  # fmt: skip
    assert opts["-ngl"] == "99" and opts["-np"] == "4"
    assert "--enforce-eager" in render({"name": "vllm", "vllm": {"enforceEager": True}}, "m", "0.0.0.0", 8000)
    assert "--enforce-eager" not in render({"name": "vllm"}, "m", "0.0.0.0", 8000)


@pytest.mark.parametrize("name", sorted(ENGINES))
def test_extra_args_may_not_set_the_flags_the_operator_sets(name: str) -> None:
    adapter = get(name)
    assert {"--host", "--port"} <= set(adapter.owned_flags)
    spec = {"model": {"path": "/models/tiny"}, "load": {"parallel": [1], "number": [1]}}
    for extra in (["--port", "9"], ["--port=9"], [adapter.owned_flags[-1], "x"]):
        with pytest.raises(SpecError) as err:
            validate_resource("ServeBenchmark", "x", {**spec, "engine": {"name": name, "extraArgs": extra}})
        assert err.value.errors == [
            f"spec.engine.extraArgs: engine.extraArgs must not set {', '.join(adapter.owned_flags)}: "
            f"the operator sets them for {adapter.title}"
        ]
    validate_resource("ServeBenchmark", "x", {**spec, "engine": {"name": name, "extraArgs": ["--portable"]}})


@pytest.mark.parametrize("name", sorted(ENGINES))
def test_options_of_another_engine_are_refused(name: str) -> None:
    spec = {"model": {"path": "/models/tiny"}, "load": {"parallel": [1], "number": [1]}}
    others = [a for a in ENGINES.values() if a.options is not None and a.name != name]
    for other in others:
        with pytest.raises(SpecError) as err:
            validate_resource("ServeBenchmark", "x", {**spec, "engine": {"name": name, other.name: {}}})
        assert err.value.errors[0].startswith(f"spec.engine.{other.name}: engine.{other.name} holds")


@pytest.mark.parametrize("name", sorted(ENGINES))
def test_the_adapter_names_its_command_and_metrics(name: str) -> None:
    adapter = get(name)
    command = adapter.launch(Engine(name=name), ServedModel("/models/tiny")).command
    found = for_command(command)
    assert found is not None and found.name == name
    names = adapter.metric_names.all()
    assert (not names) if name in NO_METRICS else (names and all(n.startswith(f"{name}:") for n in names))
    for n in names:  # the worker's tables are the adapters' names
        assert n in {*engine_metrics.PROMPT, *engine_metrics.GENERATION, *engine_metrics.REQUESTS,
                     *engine_metrics.TTFT_SUM, *engine_metrics.TTFT_COUNT, *engine_metrics.RUNNING,
                     *engine_metrics.WAITING}  # fmt: skip


def test_engine_specifics_live_on_the_adapters() -> None:
    assert [n for n in ENGINES if get(n).connection_close] == ["llamacpp"]
    assert default_for_format("gguf") == "llamacpp" and default_for_format("safetensors") == "vllm"
    assert for_command(["python3", "train.py"]) is None
    with pytest.raises(NoLocalBuild, match="engine sglang has no local build"):
        get("sglang").local_command(["python3", "-m", "sglang.launch_server"])
    with pytest.raises(StepFailed, match="engine sglang has no local build"):
        Toolchain().server_argv("sglang", ["python3", "-m", "sglang.launch_server"])


@pytest.mark.parametrize("engine", [*sorted(ENGINES), "some-new-engine"])
def test_the_perf_worker_takes_its_engine_rules_from_the_adapters(engine: str) -> None:
    parser = argparse.ArgumentParser()
    perf.add_arguments(parser)
    args = parser.parse_args(["--url", "http://h:1", "--model", "m", "--tokenizer-path", "/t", "--parallel", "1",
                              "--number", "1", "--out", "/tmp/o", "--engine", engine])  # fmt: skip
    cmd = perf.build_point_command(args, 1, 1, 0, args.engine)
    closes = "Connection=close" in cmd
    assert closes == (engine in ENGINES and get(engine).connection_close)
