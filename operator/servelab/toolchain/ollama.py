"""This machine's build of Ollama (CPU): `hack/build-ollama.sh` builds the version hack/ollama/go.mod pins
from the Go module proxy into `cache_root()/bin/ollama-<version>/ollama`; models imported by local runs
live in `cache_root()/ollama/models` (OLLAMA_MODELS; blobs are shared by digest)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from servelab.paths import cache_root, repo_path


class OllamaBuildError(RuntimeError):
    """Ollama could not be built here."""


def script() -> Path:
    return repo_path("hack", "build-ollama.sh")


def binary() -> Path:
    """Where the build is (or will be)."""
    env = dict(os.environ, SERVELAB_CACHE=str(cache_root()))
    out = subprocess.run([str(script()), "--print"], capture_output=True, text=True, check=True, env=env)
    return Path(out.stdout.strip())


def ensure_ollama() -> Path:
    """The `ollama` binary, built once (a cold build takes many minutes: cgo compiles ggml)."""
    path = binary()
    if path.is_file():
        return path
    env = dict(os.environ, SERVELAB_CACHE=str(cache_root()))
    proc = subprocess.run([str(script())], capture_output=True, text=True, env=env)
    if proc.returncode != 0 or not path.is_file():
        raise OllamaBuildError(f"hack/build-ollama.sh failed (rc={proc.returncode}): {proc.stderr[-3000:]}")
    return path


def models_dir() -> Path:
    path = cache_root() / "ollama" / "models"
    path.mkdir(parents=True, exist_ok=True)
    return path
