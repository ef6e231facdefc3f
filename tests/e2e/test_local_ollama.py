"""The `ollama` engine end to end through the local executor: `servelab run` of a manifest imports the tiny
GGUF into a real Ollama server (0.17.4, built from the Go module proxy with its CPU backend by
hack/build-ollama.sh) with a Modelfile and sweeps its OpenAI-compatible API with evalscope perf.

Building Ollama takes 25+ minutes of cgo on 2 cores, so a cold CI does not (hack/prepare.sh builds it with
SERVELAB_OLLAMA=1): without the binary this test skips and says how to build it; with SERVELAB_OLLAMA set
it builds it."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml
from e2e_support import servelab_run

pytestmark = pytest.mark.e2e


def ollama_binary() -> Path:
    from servelab.toolchain import ollama

    path = ollama.binary()
    if not path.is_file():
        if not os.environ.get("SERVELAB_OLLAMA"):
            pytest.skip(f"Ollama is not built ({path}): run hack/build-ollama.sh or set SERVELAB_OLLAMA=1")
        path = ollama.ensure_ollama()
    return path


def test_ollama_imports_the_gguf_and_is_swept_by_evalscope(tmp_path: Path) -> None:
    from servelab.toolchain import envs
    from servelab_dev.tinymodel import ensure_tiny_gguf, ensure_tiny_model

    binary = ollama_binary()
    help_text = subprocess.run(
        [str(binary), "serve", "--help"], capture_output=True, text=True, timeout=60
    ).stdout
    envs.ensure_env("evalscope")
    gguf = ensure_tiny_gguf()
    doc = {"apiVersion": "servelab.dev/v1alpha1", "kind": "ServeBenchmark", "metadata": {"name": "tiny-ollama"},
           "spec": {"model": {"path": str(gguf), "tokenizer": str(ensure_tiny_model())},
                    "engine": {"name": "ollama", "servedModelName": "tiny", "maxModelLen": 2048,
                               "ollama": {"numParallel": 2, "keepAlive": "10m",
                                          "modelfile": ["PARAMETER temperature 0.7"]}},
                    "load": {"parallel": [1, 2], "number": [2, 4], "minPromptLength": 16, "maxPromptLength": 16,
                             "maxTokens": 8, "pointTimeoutSeconds": 300, "warmupRequests": 1},
                    "timeouts": {"serverReadySeconds": 300}}}  # fmt: skip
    env = dict(os.environ, OLLAMA_MODELS=str(tmp_path / "ollama-models"))
    _proc, runs = servelab_run(tmp_path, doc, timeout=1800, env=env)
    status = yaml.safe_load((runs / "servebenchmark-tiny-ollama" / "status.yaml").read_text())["status"]
    assert status["phase"] == "Succeeded", status.get("message")
    command = status["provenance"]["command"]
    assert command[:2] == ["sh", "-c"] and "OLLAMA_NUM_PARALLEL=2" in command and "tiny:latest" in command
    for setting in ("OLLAMA_NUM_PARALLEL", "OLLAMA_CONTEXT_LENGTH", "OLLAMA_KEEP_ALIVE"):
        assert setting in help_text  # the settings the script exports are the ones `ollama serve` documents
    rows = status["results"]
    assert [(r["concurrency"], r["requests"], r["successRate"]) for r in rows] == [(1, 2, 1.0), (2, 4, 1.0)]
    for r in rows:  # real figures: tokens came back at a measured rate, within the server's 2 slots
        assert r["valid"], r
        assert 0 < r["avgOutputTokens"] <= 8 and r["outputTokensPerSecond"] > 0 and r["avgTtftSeconds"] > 0
        assert r["label"] == "ok"
    # the imported model is Ollama's own: its blobs are in OLLAMA_MODELS
    assert list((tmp_path / "ollama-models" / "manifests").rglob("latest"))
