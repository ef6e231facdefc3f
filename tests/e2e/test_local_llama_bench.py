"""spec.llamaBench end to end through the local executor: `servelab run` of a manifest serves the tiny GGUF
with llama-server and runs llama.cpp's own llama-bench (the llamacpp worker environment, this machine's
build) against the file: write-up 003's pp/tg @ depth table in status and in servelab run's output."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from e2e_support import servelab_run

pytestmark = pytest.mark.e2e


def test_llama_bench_table_in_status_and_output(tmp_path: Path) -> None:
    from servelab.toolchain import envs, llamacpp
    from servelab_dev.tinymodel import ensure_tiny_gguf

    envs.ensure_env("llamacpp")
    llamacpp.ensure_llamacpp()
    gguf = ensure_tiny_gguf()
    doc = {"apiVersion": "servelab.dev/v1alpha1", "kind": "ServeBenchmark", "metadata": {"name": "tiny-bench"},
           "spec": {"model": {"path": str(gguf)}, "engine": {"name": "llamacpp", "maxModelLen": 1024},
                    "llamaBench": {"promptTokens": [64], "genTokens": [16], "depths": [0, 128], "repetitions": 2,
                                   "threads": 2},
                    "timeouts": {"serverReadySeconds": 120}}}  # fmt: skip
    proc, runs = servelab_run(tmp_path, doc, timeout=900)
    status = yaml.safe_load((runs / "servebenchmark-tiny-bench" / "status.yaml").read_text())["status"]
    assert status["phase"] == "Succeeded"
    rows = status["llamaBench"]
    assert [r["test"] for r in rows] == ["pp64", "tg16", "pp64 @ d128", "tg16 @ d128"]
    for r in rows:
        assert r["avgTokensPerSecond"] > 0 and len(r["samplesTokensPerSecond"]) == 2
        assert r["backends"] == "CPU" and r["nThreads"] == 2 and r["modelParams"] == 3278336
        assert r["build"]  # the commit where llama-bench knows it, else the source it was built from
    out = proc.stdout
    assert " model |" in out and "pp64 @ d128" in out and "build: " in out
    raw = runs / "servebenchmark-tiny-bench"
    assert list(raw.rglob("llama-bench.json"))
