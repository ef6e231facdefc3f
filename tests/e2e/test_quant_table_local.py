"""Write-up 002's quantization table, for real and small: `servelab run` of a GGUF QuantJob of the tiny
model with `spec.evaluation.speed`. The F16 base and the Q4_K_M output are each served by llama-server in a
scoring run that evaluates MMLU (the tiny local set in cais/mmlu's layout) and sweeps a short load; the
QuantJob's status then carries, per output, the serving footprint its run recorded, the output tok/s at
each concurrency, the speed-up against the base and the size ratio, computed from those measured figures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from e2e_support import servelab_run
from test_eval_mmlu import SUBJECTS, mmlu_set

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1200)]

CONCURRENCY, REQUESTS = [1, 2], [2, 4]


@pytest.fixture(scope="module")
def tiny() -> Path:
    from servelab.toolchain import envs, llamacpp
    from servelab_dev.tinymodel import ensure_tiny_model

    llamacpp.ensure_llamacpp()
    envs.ensure_env("evalscope")
    return ensure_tiny_model()


def test_quantjob_status_has_size_ratio_memory_and_speedup(tiny: Path, tmp_path: Path) -> None:
    data = mmlu_set(tmp_path / "mmlu")
    evaluation = {
        "engine": {"name": "llamacpp", "servedModelName": "tiny", "maxModelLen": 4096,
                   "llamacpp": {"parallelSlots": 2}, "extraArgs": ["-t", "1"]},
        "evalscope": {"datasets": [{"name": "mmlu", "localPath": str(data), "subsets": SUBJECTS}], "batchSize": 2,
                      "generation": {"maxTokens": 8, "temperature": 0}},
        "speed": {"concurrency": CONCURRENCY, "requests": REQUESTS, "promptTokens": 32, "outputTokens": 16},
        "serverReadySeconds": 60,
    }  # fmt: skip
    qj = {"model": {"path": str(tiny)}, "method": "gguf", "gguf": {"imatrix": False, "variants": [{"type": "Q4_K_M"}]},
          "output": {"path": str(tmp_path / "out")}, "evaluation": evaluation}  # fmt: skip
    proc, runs = servelab_run(
        tmp_path,
        {"apiVersion": "servelab.dev/v1alpha1", "kind": "QuantJob", "metadata": {"name": "q"}, "spec": qj},
        timeout=1100,
    )
    q: dict[str, Any] = json.loads((runs / "quantjob-q" / "status.json").read_text())["status"]
    assert q["phase"] == "Succeeded", q.get("message")
    base, variant = q["base"], q["variants"][0]
    assert (base["name"], variant["name"]) == ("F16", "Q4_K_M")

    # size: the output's bytes over the base's, both as the quantizer measured them on disk
    assert base["sizeBytes"] == Path(base["path"]).stat().st_size
    assert variant["sizeBytes"] == Path(variant["path"]).stat().st_size
    assert variant["sizeRatio"] == pytest.approx(round(variant["sizeBytes"] / base["sizeBytes"], 4), abs=1e-6)
    assert 0.2 < variant["sizeRatio"] < 0.8 and "sizeRatio" not in base

    children = {name: yaml.safe_load((runs / f"servebenchmark-q-q1-score-{name}" / "status.yaml").read_text())
                for name in ("f16", "q4-k-m")}  # fmt: skip
    for row, child in ((base, children["f16"]), (variant, children["q4-k-m"])):
        cs = child["status"]
        assert cs["phase"] == "Succeeded", cs
        # memory: the footprint the scoring run recorded, as it recorded it (on CPU: no GPU memory)
        assert row["footprint"] == cs["footprint"]
        assert row["footprint"]["loadSeconds"] > 0 and row["footprint"]["modelBytes"] == row["sizeBytes"]
        # speed: the scoring run swept the asked load; its tok/s per concurrency are the row's
        assert [(r["concurrency"], r["requests"], r["valid"]) for r in cs["results"]] == [
            (c, n, True) for c, n in zip(CONCURRENCY, REQUESTS, strict=True)]  # fmt: skip
        assert [(p["concurrency"], p["outputTokensPerSecond"], p["valid"]) for p in row["speed"]] == [
            (r["concurrency"], r["outputTokensPerSecond"], True) for r in cs["results"]]  # fmt: skip
        assert [s["dataset"] for s in row["scores"]] and {s["dataset"] for s in row["scores"]} == {"mmlu"}
    # speed-up: the output's tok/s over the base's at the same concurrency
    for b, v in zip(base["speed"], variant["speed"], strict=True):
        assert "speedup" not in b
        assert v["speedup"] == pytest.approx(
            round(v["outputTokensPerSecond"] / b["outputTokensPerSecond"], 4)
        )
    # the table `servelab run` prints
    table = proc.stdout.split("each output served (size, memory, score, speed against the base):")[1]
    assert "speed-up @1" in table and "speed-up @2" in table and "F16 (base)" in table
    assert f"{variant['speed'][0]['speedup']:.2f}x" in table
