"""The llm-compressor path end to end through the local executor: tiny model -> FP8_DYNAMIC with
llm-compressor -> the QuantJob's scoring run serves the checkpoint with vLLM's CPU build and evaluates
it -> a ServeBenchmark serves it again with vLLM for an evalscope perf sweep."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from e2e_support import servelab_run

pytestmark = pytest.mark.e2e


def test_fp8_quantjob_served_by_vllm_cpu_and_swept(tmp_path: Path) -> None:
    from servelab.toolchain import envs
    from servelab_dev.tinymodel import ensure_tiny_model

    for name in ("llmcompressor", "vllm-cpu", "evalscope"):
        envs.ensure_env(name)
    from servelab_dev.demo import write_demo_data

    tiny = ensure_tiny_model()
    data = write_demo_data(tmp_path / "data")
    score = {"includeBase": False, "serverReadySeconds": 900,
             "engine": {"name": "vllm", "maxModelLen": 512, "vllm": {"enforceEager": True}},
             "evalscope": {"datasets": [{"name": "general_qa", "localPath": str(data / "qa"), "subsets": ["example"]}],
                           "limit": 2, "batchSize": 2, "generation": {"maxTokens": 4, "temperature": 0}}}  # fmt: skip
    docs = [
        {"apiVersion": "servelab.dev/v1alpha1", "kind": "QuantJob", "metadata": {"name": "fp8"},
         "spec": {"model": {"path": str(tiny)}, "method": "fp8-dynamic", "output": {"path": str(tmp_path / "fp8")},
                  "evaluation": score}},
        {"apiVersion": "servelab.dev/v1alpha1", "kind": "ServeBenchmark", "metadata": {"name": "fp8-vllm"},
         "spec": {"quantJobRef": {"name": "fp8"},
                  "engine": {"name": "vllm", "servedModelName": "tiny-fp8", "maxModelLen": 512, "vllm": {"enforceEager": True}},
                  "load": {"parallel": [1, 2], "number": [2, 2], "minPromptLength": 16, "maxPromptLength": 16,
                           "maxTokens": 4, "minTokens": 4, "pointTimeoutSeconds": 900},
                  "timeouts": {"serverReadySeconds": 900}}},
    ]  # fmt: skip
    _proc, runs = servelab_run(tmp_path, docs, timeout=2400)
    q = yaml.safe_load((runs / "quantjob-fp8" / "status.yaml").read_text())["status"]
    (variant,) = q["variants"]
    cfg = variant["quantizationConfig"]
    assert cfg["quant_method"] == "compressed-tensors" and cfg["format"] == "float-quantized"
    # its task scores, from a vLLM server of the FP8 checkpoint (the scoring run's own status is kept too)
    assert variant["scores"] and {(s["dataset"], s["num"]) for s in variant["scores"]} == {("general_qa", 2)}
    (child,) = runs.glob("servebenchmark-fp8-q1-score-*")
    scored = yaml.safe_load((child / "status.yaml").read_text())
    assert scored["status"]["provenance"]["command"][:3] == ["vllm", "serve", variant["path"]]
    status = yaml.safe_load((runs / "servebenchmark-fp8-vllm" / "status.yaml").read_text())["status"]
    assert status["phase"] == "Succeeded"
    assert status["provenance"]["command"][:2] == ["vllm", "serve"]
    rows = status["results"]
    assert [(r["concurrency"], r["valid"], r["successRate"], r["avgOutputTokens"]) for r in rows] == [
        (1, True, 1.0, 4), (2, True, 1.0, 4)]  # fmt: skip
    # vLLM's own counters saw the same tokens the client received
    assert all(r["server"]["generationTokens"] == 4 * r["requests"] for r in rows)
