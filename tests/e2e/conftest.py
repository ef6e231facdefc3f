"""Session fixtures for the llama.cpp + evalscope end-to-end tests: real toolchains, built once.

First run on a fresh machine: the llama.cpp tools build (12-25 min on 2 cores), the `evalscope` and
`llamacpp` environments install from PyPI (minutes each), the tiny model is made (seconds). Later runs
reuse everything from `servelab.paths.cache_root()` ($SERVELAB_CACHE or ~/.cache/servelab).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_support import LlamaServer

from servelab.toolchain import envs, llamacpp
from servelab_dev.tinymodel import ensure_tiny_model


@pytest.fixture(scope="session")
def llamacpp_bin() -> Path:
    """llama.cpp's bin dir (llama-server, llama-quantize, llama-imatrix, llama-perplexity, llama-bench)."""
    return llamacpp.ensure_llamacpp()


@pytest.fixture(scope="session")
def evalscope_env() -> Path:
    """The `evalscope` worker environment (evalscope[perf]==1.14.1)."""
    return envs.ensure_env("evalscope")


@pytest.fixture(scope="session")
def llamacpp_env() -> Path:
    """The `llamacpp` worker environment (torch, transformers, gguf: convert_hf_to_gguf.py)."""
    return envs.ensure_env("llamacpp")


@pytest.fixture(scope="session")
def tiny_model(llamacpp_env: Path) -> Path:
    """The tiny random-weight Qwen3 HF directory (made in the llamacpp environment)."""
    return ensure_tiny_model()


@pytest.fixture(scope="session")
def server_factory(
    llamacpp_bin: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[type[LlamaServer]]:
    """Start llama-servers that are stopped at the end of the session."""
    started: list[LlamaServer] = []
    logs = tmp_path_factory.mktemp("llama-server-logs")

    class _Server(LlamaServer):
        def __init__(self, model: Path, alias: str, slots: int = 4) -> None:
            super().__init__(llamacpp_bin, model, alias, logs / f"{alias}-{len(started)}.log", slots=slots)
            started.append(self)

    yield _Server
    for server in started:
        server.stop()


os.environ.setdefault("HF_HUB_OFFLINE", "1")
