"""Local validation refuses what the apiserver refuses (same CEL rules, evaluated with cel-python)."""

from __future__ import annotations

from typing import Any

import pytest

from servelab.api.validate import SpecError, validate_resource
from servelab.manifests import load_manifests
from servelab.paths import repo_path

pytestmark = pytest.mark.unit


def sb(**over: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "model": {"path": "/m"},
        "engine": {"name": "vllm"},
        "load": {"parallel": [1], "number": [2]},
    }
    spec.update(over)
    return spec


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (sb(load={"parallel": [1, 2], "number": [2]}), "spec.load.number: spec.load.parallel and spec.load.number"),
        (sb(quantJobRef={"name": "q"}), "spec: set exactly one of spec.model or spec.quantJobRef"),
        (sb(model={"path": "/m", "s3": "s3://x"}), "spec.model: set exactly one of huggingFace, pvc, s3 or path"),
        (sb(engine={"name": "llamacpp", "tensorParallelSize": 2}), "spec.engine.tensorParallelSize: "),
        (sb(engine={"name": "vllm", "tensorParallelSize": 4}, resources={"gpus": 1}),
         "spec.engine.tensorParallelSize: spec.engine.tensorParallelSize must not exceed spec.resources.gpus"),
        (sb(engine={"name": "vllm", "gpuMemoryUtilization": 2}), "spec.engine.gpuMemoryUtilization: "),
    ],
)  # fmt: skip
def test_refused_with_field(spec: dict[str, Any], expected: str) -> None:
    with pytest.raises(SpecError) as err:
        validate_resource("ServeBenchmark", "x", spec)
    assert any(e.startswith(expected) for e in err.value.errors), err.value.errors


def test_quantjob_rules() -> None:
    base = {"model": {"path": "/m"}, "output": {"path": "/o"}}
    with pytest.raises(SpecError, match=r"spec\.calibration is required"):
        validate_resource("QuantJob", "q", {**base, "method": "gptq"})
    with pytest.raises(SpecError, match=r"spec\.method gguf requires spec\.gguf"):
        validate_resource("QuantJob", "q", {**base, "method": "gguf"})
    ok = validate_resource("QuantJob", "q", {**base, "method": "gguf",
                                             "gguf": {"imatrix": False, "variants": [{"type": "Q4_K_M"}]}})  # fmt: skip
    assert ok["gguf"]["outtype"] == "f16"  # defaults applied before the rules, as in the apiserver


def test_every_example_passes_local_validation() -> None:
    for res in load_manifests(repo_path("examples")):
        res.spec()
