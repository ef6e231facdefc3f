"""The `ollama` engine: the rendered script (settings, Modelfile, create arguments), what it refuses, and the
script itself run against a stand-in `ollama` that records what it is asked to do."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from servelab.api.engine import Engine
from servelab.api.validate import SpecError, validate_resource
from servelab.engines import ServedModel, for_command, get

pytestmark = pytest.mark.unit

SPEC = {
    "name": "ollama", "servedModelName": "qwen3-8b:q4_K_M", "maxModelLen": 16384, "kvCacheDtype": "q8_0",
    "extraArgs": ["--quantize", "q4_K_M"],
    "ollama": {"numParallel": 4, "keepAlive": "-1", "maxQueue": 64, "flashAttention": True, "gpuLayers": 99,
               "modelfile": ["PARAMETER temperature 0.7", "SYSTEM You are terse."]},
}  # fmt: skip


def test_settings_modelfile_and_create_arguments() -> None:
    launch = get("ollama").launch(
        Engine.model_validate(SPEC), ServedModel("/models/q.gguf"), "0.0.0.0", 11434
    )
    sh, c, _script, label, *rest = launch.command
    assert (sh, c, label) == ("sh", "-c", "ollama-serve")
    assert rest == [
        "0.0.0.0:11434", "qwen3-8b:q4_K_M", "/models/q.gguf",
        "OLLAMA_NUM_PARALLEL=4", "OLLAMA_CONTEXT_LENGTH=16384", "OLLAMA_KEEP_ALIVE=-1", "OLLAMA_MAX_QUEUE=64",
        "OLLAMA_FLASH_ATTENTION=true", "OLLAMA_KV_CACHE_TYPE=q8_0", "--",
        "PARAMETER num_gpu 99", "PARAMETER temperature 0.7", "SYSTEM You are terse.", "--",
        "--quantize", "q4_K_M",
    ]  # fmt: skip
    assert (
        launch.served_model_name == "qwen3-8b:q4_K_M" and launch.health_path == "/v1/models/qwen3-8b:q4_K_M"
    )
    assert launch.metrics_path is None and not launch.env
    assert get("ollama").concurrency_limit(None, launch.command) == (4, "ollama OLLAMA_NUM_PARALLEL=4")
    found = for_command(launch.command)
    assert found is not None and found.name == "ollama"


def test_defaults_name_latest_and_one_request_at_a_time() -> None:
    launch = get("ollama").launch(Engine(name="ollama"), ServedModel("/m.gguf", name="tiny"), port=1)
    assert launch.served_model_name == "tiny:latest" and launch.command[-2:] == ["--", "--"]
    assert get("ollama").concurrency_limit(None, launch.command) == (
        1,
        "Ollama's default OLLAMA_NUM_PARALLEL (1)",
    )


@pytest.mark.parametrize(
    ("engine", "field"),
    [
        ({"servedModelName": "a b"}, "servedModelName"),
        ({"tensorParallelSize": 2}, "tensorParallelSize"),
        ({"speculative": {"method": "ngram"}}, "speculative"),
        ({"quantization": "fp8"}, "quantization"),
        ({"ollama": {"keepAlive": "forever"}}, "ollama.keepAlive"),
    ],
)
def test_refuses_what_ollama_cannot_do(engine: dict[str, object], field: str) -> None:
    spec = {"model": {"path": "/m.gguf"}, "load": {"parallel": [1], "number": [1]},
            "engine": {"name": "ollama", **engine}}  # fmt: skip
    with pytest.raises(SpecError) as err:
        validate_resource("ServeBenchmark", "x", spec)
    assert err.value.errors[0].startswith(f"spec.engine.{field}: ")


STAND_IN = """#!/bin/sh
echo "$* | OLLAMA_HOST=$OLLAMA_HOST NUM_PARALLEL=${OLLAMA_NUM_PARALLEL:-}" >> "$CALLS"
case "$1" in
  serve) trap 'echo "serve got TERM" >> "$CALLS"; exit 0' TERM; while :; do sleep 0.1; done ;;
  list) [ -f "$CALLS.up" ] || { touch "$CALLS.up"; exit 1; } ;;
  create) cat "$4" >> "$CALLS" ;;
esac
"""


def test_the_script_imports_then_serves_and_passes_term_on(tmp_path: Path) -> None:
    fake = tmp_path / "bin" / "ollama"
    fake.parent.mkdir()
    fake.write_text(STAND_IN)
    fake.chmod(0o755)
    calls = tmp_path / "calls"
    spec = Engine.model_validate({"name": "ollama", "servedModelName": "tiny",
                                  "ollama": {"numParallel": 2, "modelfile": ["PARAMETER num_ctx 512"]}})  # fmt: skip
    command = get("ollama").launch(spec, ServedModel("/m.gguf"), "127.0.0.1", 5).command
    env = dict(os.environ, PATH=f"{fake.parent}:{os.environ['PATH']}", CALLS=str(calls))
    proc = subprocess.Popen(command, env=env)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and "create" not in (calls.read_text() if calls.exists() else ""):
        time.sleep(0.1)
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 143
    lines = calls.read_text().splitlines()
    assert "serve | OLLAMA_HOST=127.0.0.1:5 NUM_PARALLEL=2" in lines[:3]  # in the background
    assert lines.count("list | OLLAMA_HOST=127.0.0.1:5 NUM_PARALLEL=2") == 2  # until the server answers
    create = next(i for i, line in enumerate(lines) if line.startswith("create "))
    assert lines[create].startswith("create tiny:latest -f ")
    assert lines[create + 1 : create + 3] == ["FROM /m.gguf", "PARAMETER num_ctx 512"]
    assert lines[-1] == "serve got TERM"


def test_local_command_puts_this_machines_build_first(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from servelab.toolchain import ollama

    monkeypatch.setattr(ollama, "ensure_ollama", lambda: tmp_path / "bin" / "ollama")
    monkeypatch.setenv("SERVELAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("OLLAMA_MODELS", raising=False)
    command = get("ollama").launch(Engine(name="ollama"), ServedModel("/m.gguf")).command
    argv, env = get("ollama").local_command(command)
    assert argv == command and env["PATH"].startswith(f"{tmp_path / 'bin'}{os.pathsep}")
    assert Path(env["OLLAMA_MODELS"]).is_dir()
