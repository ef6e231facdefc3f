"""The `mlx` engine end to end through the local executor: `servelab run` of a manifest serves the tiny model
with MLX-LM's `mlx_lm.server` on MLX's CPU build (`mlx[cpu]`, the mlx worker environment) and sweeps it with
evalscope perf; its rendered command is checked against `mlx_lm.server --help`."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml
from e2e_support import servelab_run

pytestmark = pytest.mark.e2e


def test_mlx_lm_server_swept_by_evalscope(tmp_path: Path) -> None:
    from servelab.toolchain import envs
    from servelab_dev.tinymodel import ensure_tiny_model

    for name in ("mlx", "evalscope"):
        envs.ensure_env(name)
    tiny = ensure_tiny_model()
    doc = {"apiVersion": "servelab.dev/v1alpha1", "kind": "ServeBenchmark", "metadata": {"name": "tiny-mlx"},
           "spec": {"model": {"path": str(tiny)},
                    "engine": {"name": "mlx", "mlx": {"decodeConcurrency": 4, "promptConcurrency": 2}},
                    "load": {"parallel": [1, 2], "number": [2, 4], "minPromptLength": 16, "maxPromptLength": 16,
                             "maxTokens": 8, "pointTimeoutSeconds": 300, "warmupRequests": 1},
                    "timeouts": {"serverReadySeconds": 300}}}  # fmt: skip
    _proc, runs = servelab_run(tmp_path, doc, timeout=1200)
    status = yaml.safe_load((runs / "servebenchmark-tiny-mlx" / "status.yaml").read_text())["status"]
    assert status["phase"] == "Succeeded", status.get("message")
    command = status["provenance"]["command"]
    assert command[:3] == ["mlx_lm.server", "--model", str(tiny)]
    rows = status["results"]
    assert [(r["concurrency"], r["requests"], r["successRate"]) for r in rows] == [(1, 2, 1.0), (2, 4, 1.0)]
    for r in rows:  # real figures: tokens came back at a measured rate, within its 4 decode slots
        assert r["valid"], r
        assert 0 < r["avgOutputTokens"] <= 8 and r["outputTokensPerSecond"] > 0 and r["avgTtftSeconds"] > 0
        assert r["label"] == "ok"
    # every flag servelab rendered is one mlx_lm.server lists
    helptext = subprocess.run([str(envs.env_bin("mlx", "mlx_lm.server")), "--help"], capture_output=True,
                              text=True, timeout=120).stdout  # fmt: skip
    known = set(re.findall(r"(?<![\w-])(--[a-zA-Z][\w-]*)", helptext))
    assert {"--decode-concurrency", "--model"} <= known
    flags = [a for a in command[1:] if a.startswith("--")]
    assert flags and not [a for a in flags if a not in known]
