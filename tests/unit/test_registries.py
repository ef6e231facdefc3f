"""The pinned names (servelab.api.registries) equal the worker images' own registries, when those
environments are installed here (they are built by `make prepare`; the test is skipped without them)."""

from __future__ import annotations

import json
import subprocess

import pytest

from servelab.api.registries import (
    COMPRESSED_TENSORS_VERSION,
    COMPRESSOR_SCHEMES,
    EVALSCOPE_DATASETS,
    EVALSCOPE_VERSION,
)
from servelab.toolchain.envs import env_dir

pytestmark = pytest.mark.unit


def _ask(env: str, code: str) -> object:
    python = env_dir(env) / "bin" / "python"
    if not python.is_file():
        pytest.skip(f"the {env} worker environment is not installed ({env_dir(env)})")
    ran = subprocess.run([str(python), "-c", code], capture_output=True, text=True, timeout=300, check=False,
                         env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})  # fmt: skip
    assert ran.returncode == 0, ran.stderr[-3000:]
    return json.loads(ran.stdout.strip().splitlines()[-1])


def test_evalscope_datasets_are_evalscopes() -> None:
    found = _ask("evalscope", (
        "import json, evalscope, evalscope.benchmarks\n"
        "from evalscope.api.registry import BENCHMARK_REGISTRY\n"
        "print(json.dumps([evalscope.__version__, sorted(BENCHMARK_REGISTRY)]))"
    ))  # fmt: skip
    assert found == [EVALSCOPE_VERSION, list(EVALSCOPE_DATASETS)]


def test_compressor_schemes_are_compressed_tensors() -> None:
    found = _ask("llmcompressor", (
        "import json, compressed_tensors\n"
        "from compressed_tensors.quantization.quant_scheme import PRESET_SCHEMES\n"
        "print(json.dumps([compressed_tensors.__version__, sorted(PRESET_SCHEMES)]))"
    ))  # fmt: skip
    assert found == [COMPRESSED_TENSORS_VERSION, list(COMPRESSOR_SCHEMES)]


def test_pinned_lists_are_sorted_and_unique() -> None:
    for names in (EVALSCOPE_DATASETS, COMPRESSOR_SCHEMES):
        assert list(names) == sorted(set(names))
