"""A repeated load point through the perf worker (spec.load.repetitions) against the zero-work server:
each repetition is its own client process on fresh prompts, the published point counts every request of
every repetition, carries mean ± sd per figure and says whether the repetitions agree."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from e2e_support import run_worker

from servelab.toolchain import envs
from servelab_dev.zeroserver import ZeroServer

pytestmark = pytest.mark.e2e


def test_repeated_point_carries_its_spread(tiny_model: Path, tmp_path: Path) -> None:
    envs.ensure_env("evalscope")
    out = tmp_path / "perf"
    with ZeroServer(model="tiny", ttft=0.05, tpot=0.002) as srv:  # the server sets the pace
        proc = run_worker("evalscope", [
            "perf", "--url", f"{srv.url}/v1", "--model", "tiny", "--tokenizer-path", tiny_model,
            "--prompt-tokens", "32", "--max-tokens", "32", "--parallel", "2", "--number", "6",
            "--repetitions", "3", "--max-relative-spread", "0.5", "--warmup-requests", "0", "--out", out,
        ])  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    p = json.loads((out / "result.json").read_text())["points"][0]
    assert p["repetitions"] == 3 and p["requests"] == 18 and p["succeeded"] == 18, p
    spread = p["spread"]
    for key in ("outputTokensPerSecond", "ttftSeconds", "tpotSeconds"):
        assert len(spread[key]["samples"]) == 3 and spread[key]["sd"] >= 0
    assert p["outputTokensPerSecond"] == pytest.approx(spread["outputTokensPerSecond"]["mean"])
    assert p["unstable"] is (p.get("unstableReason") is not None)
    # three client processes, three disjoint prompt ranges (dataset offsets 0, 6, 12)
    logs = sorted((out / "logs").glob("perf-0-p2-n6-r*.log"))
    assert len(logs) == 3
    offsets = [log.read_text().split("--dataset-offset ")[1].split()[0] for log in logs]
    assert offsets == ["0", "6", "12"]
    print(json.dumps({k: p[k] for k in ("outputTokensPerSecond", "avgTtftSeconds", "spread", "unstable")}))
