"""The `transformers` engine end to end through the local executor: `servelab run` of a manifest serves
the tiny model with `transformers serve` (the transformers worker environment, CPU) and sweeps it with
evalscope perf, one point per concurrency, with and without continuous batching; the points are real."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from e2e_support import servelab_run

pytestmark = pytest.mark.e2e


def bench(name: str, model: Path, options: dict[str, object]) -> dict[str, object]:
    return {"apiVersion": "servelab.dev/v1alpha1", "kind": "ServeBenchmark", "metadata": {"name": name},
            "spec": {"model": {"path": str(model)},
                     "engine": {"name": "transformers", "transformers": {"device": "cpu", **options}},
                     "load": {"parallel": [1, 2], "number": [2, 4], "minPromptLength": 16, "maxPromptLength": 16,
                              "maxTokens": 8, "pointTimeoutSeconds": 600, "warmupRequests": 1},
                     "timeouts": {"serverReadySeconds": 900}}}  # fmt: skip


def test_transformers_serve_swept_by_evalscope(tmp_path: Path) -> None:
    from servelab.toolchain import envs
    from servelab_dev.tinymodel import ensure_tiny_model

    for name in ("transformers", "evalscope"):
        envs.ensure_env(name)
    tiny = ensure_tiny_model()
    docs = [
        bench("tiny-hf", tiny, {}),
        bench("tiny-hf-cb", tiny, {"continuousBatching": True, "cbNumBlocks": 64}),
    ]
    proc, runs = servelab_run(tmp_path, docs, timeout=2400)
    for name, cb in (("tiny-hf", False), ("tiny-hf-cb", True)):
        status = yaml.safe_load((runs / f"servebenchmark-{name}" / "status.yaml").read_text())["status"]
        assert status["phase"] == "Succeeded", status.get("message")
        command = status["provenance"]["command"]
        assert (
            command[:3] == ["transformers", "serve", str(tiny)] and ("--continuous-batching" in command) == cb
        )
        rows = status["results"]
        assert [(r["concurrency"], r["requests"], r["successRate"]) for r in rows] == [
            (1, 2, 1.0),
            (2, 4, 1.0),
        ]
        for r in rows:  # real figures: tokens came back, at a measured rate
            assert r["valid"], r
            assert (
                0 < r["avgOutputTokens"] <= 8 and r["outputTokensPerSecond"] > 0 and r["avgTtftSeconds"] > 0
            )
    out = proc.stdout
    assert "tiny-hf" in out and "tiny-hf-cb" in out
