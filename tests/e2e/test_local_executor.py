"""`servelab run`: the local executor runs the same plans as processes, with real llama.cpp and evalscope,
writes the status the operator would write, prints the seeds' table, and stops what it started."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from servelab_dev.demo import write_demo_data

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def tiny() -> Path:
    from servelab.toolchain import envs, llamacpp
    from servelab_dev.tinymodel import ensure_tiny_model

    llamacpp.ensure_llamacpp()
    envs.ensure_env("evalscope")
    return ensure_tiny_model()


def manifest(path: Path, docs: list[dict[str, Any]]) -> Path:
    path.write_text(yaml.safe_dump_all(docs))
    return path


def doc(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "servelab.dev/v1alpha1", "kind": kind, "metadata": {"name": name}, "spec": spec}


def servelab(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "servelab", *args], capture_output=True, text=True, timeout=timeout
    )


def bench(**over: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "quantJobRef": {"name": "q", "variant": "Q4_K_M"},
        "engine": {"name": "llamacpp", "servedModelName": "tiny", "llamacpp": {"parallelSlots": 2}, "extraArgs": ["-t", "1"]},
        "load": {"parallel": [1, 2], "number": [2, 4], "minPromptLength": 32, "maxPromptLength": 32, "maxTokens": 16,
                 "minTokens": 16},
        "evaluations": [{"datasets": [{"name": "general_qa", "localPath": "${DATA}/qa", "subsets": ["example"]}],
                         "limit": 4, "batchSize": 2, "generation": {"maxTokens": 8, "temperature": 0}}],
        "timeouts": {"serverReadySeconds": 60},
    }  # fmt: skip
    spec.update(over)
    return spec


def test_run_quantjob_and_benchmark(tiny: Path, tmp_path: Path) -> None:
    data = write_demo_data(tmp_path / "data")
    os.environ["DATA"] = str(data)
    score = {"engine": {"name": "llamacpp", "servedModelName": "tiny", "extraArgs": ["-t", "1"]},
             "evalscope": bench()["evaluations"][0], "serverReadySeconds": 60}  # fmt: skip
    qj = {"model": {"path": str(tiny)}, "method": "gguf", "gguf": {"imatrix": False, "variants": [{"type": "Q4_K_M"}]},
          "output": {"path": str(tmp_path / "out")}, "evaluation": score}  # fmt: skip
    f = manifest(tmp_path / "m.yaml", [doc("QuantJob", "q", qj), doc("ServeBenchmark", "b", bench())])
    runs = tmp_path / "runs"
    proc = servelab("run", "-f", str(f), "--runs-dir", str(runs))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    # the seeds' table (column widths follow the figures, so compare the header's cells)
    headers = [[c.strip() for c in line.strip("|").split("|")] for line in proc.stdout.splitlines()
               if line.startswith("| Conc. |")]  # fmt: skip
    assert headers and headers[0][:7] == [
        "Conc.",
        "Reqs",
        "RPS",
        "Avg Lat.(s)",
        "P99 Lat.(s)",
        "Gen. toks/s",
        "Avg TTFT(s)",
    ]
    status = yaml.safe_load((runs / "servebenchmark-b" / "status.yaml").read_text())["status"]
    assert status["phase"] == "Succeeded" and status["quantization"] == "Q4_K_M"
    assert [c["type"] for c in status["conditions"] if c["status"] == "True"] == [
        "Passed",
        "Ready",
        "Succeeded",
    ]
    assert [(r["concurrency"], r["valid"], r["avgOutputTokens"]) for r in status["results"]] == [
        (1, True, 16),
        (2, True, 16),
    ]
    assert status["scores"] and all(s["dataset"] == "general_qa" for s in status["scores"])
    assert (
        status["summary"]["points"] == "2/2" and status["progress"]["summary"] == "4/4"
    )  # server (2), the sweep (its 2 points), eval
    q = json.loads((runs / "quantjob-q" / "status.json").read_text())["status"]
    assert q["base"]["name"] == "F16" and q["variants"][0]["name"] == "Q4_K_M"
    # the QuantJob's own task scores: F16 and Q4_K_M each served by llama-server and evaluated
    for row in (q["base"], q["variants"][0]):
        assert [(sc["dataset"], sc["num"]) for sc in row["scores"]] == [("general_qa", 4)] * len(
            row["scores"]
        )
        assert row["scores"] and all(0 <= sc["score"] <= 1 for sc in row["scores"])
    for child in ("q-q1-score-f16", "q-q1-score-q4-k-m"):
        cs = yaml.safe_load((runs / f"servebenchmark-{child}" / "status.yaml").read_text())
        assert cs["status"]["phase"] == "Succeeded", cs["status"]
        assert cs["spec"]["model"]["path"].endswith(".gguf")
    assert (
        q["phase"] == "Succeeded" and q["progress"]["summary"] == "3/3"
    )  # quantize, score F16, score Q4_K_M
    table = proc.stdout.split("task scores of each output:")[1].split("ServeBenchmark")[0]
    assert re.search(r"\|\s+Dataset \|\s+Metric \|\s+Subset \|\s+F16 \| Q4_K_M \|", table), table
    assert "| general_qa |" in table
    assert (runs / "chart.png").stat().st_size > 10_000


def test_failures_are_reported_and_nothing_is_left_running(tiny: Path, tmp_path: Path) -> None:
    data = write_demo_data(tmp_path / "data")
    os.environ["DATA"] = str(data)
    broken = bench(quantJobRef=None, model={"path": str(tmp_path / "missing.gguf")})
    orphan = bench(quantJobRef={"name": "nobody"})
    # a QuantJob whose scoring server cannot start: EvalFailed, its quantization results kept
    unscored = {"model": {"path": str(tiny)}, "method": "gguf", "output": {"path": str(tmp_path / "out")},
                "gguf": {"imatrix": False, "keepBase": True, "variants": [{"type": "Q8_0"}]},
                "evaluation": {"includeBase": False, "serverReadySeconds": 30,
                               "engine": {"name": "llamacpp", "extraArgs": ["--no-such-flag"]},
                               "evalscope": bench()["evaluations"][0]}}  # fmt: skip
    f = manifest(
        tmp_path / "m.yaml",
        [doc("ServeBenchmark", "broken", broken), doc("ServeBenchmark", "orphan", orphan),
         doc("QuantJob", "unscored", unscored)],
    )  # fmt: skip
    runs = tmp_path / "runs"
    proc = servelab("run", "-f", str(f), "--runs-dir", str(runs))
    assert proc.returncode == 1
    b = yaml.safe_load((runs / "servebenchmark-broken" / "status.yaml").read_text())["status"]
    failed = next(c for c in b["conditions"] if c["type"] == "Failed")
    assert (
        b["phase"] == "Failed" and failed["reason"] == "ServerFailed" and "missing.gguf" in failed["message"]
    )
    o = yaml.safe_load((runs / "servebenchmark-orphan" / "status.yaml").read_text())["status"]
    assert next(c for c in o["conditions"] if c["type"] == "Failed")["reason"] == "QuantJobNotFound"
    u = yaml.safe_load((runs / "quantjob-unscored" / "status.yaml").read_text())["status"]
    failed = next(c for c in u["conditions"] if c["type"] == "Failed")
    assert u["phase"] == "Failed" and failed["reason"] == "EvalFailed" and "Q8_0" in failed["message"]
    assert "ServerFailed" in failed["message"] and "no-such-flag" in failed["message"]
    assert u["variants"][0]["name"] == "Q8_0" and u["variants"][0]["sizeBytes"] > 0  # kept


def test_invalid_spec_is_refused_before_anything_starts(tmp_path: Path) -> None:
    bad = doc("ServeBenchmark", "bad", {"model": {"path": "/m"}, "engine": {"name": "llamacpp"},
                                        "load": {"parallel": [1, 2], "number": [2]}})  # fmt: skip
    proc = servelab("run", "-f", str(manifest(tmp_path / "m.yaml", [bad])), "--runs-dir", str(tmp_path / "r"))
    assert proc.returncode != 0
    assert (
        "spec.load.number: spec.load.parallel and spec.load.number must have the same length" in proc.stderr
    )
    assert not (tmp_path / "r").exists()


def test_interrupt_stops_every_process(tiny: Path, tmp_path: Path) -> None:
    data = write_demo_data(tmp_path / "data")
    os.environ["DATA"] = str(data)
    qj = {"model": {"path": str(tiny)}, "method": "gguf", "gguf": {"imatrix": False, "variants": [{"type": "Q4_K_M"}]},
          "output": {"path": str(tmp_path / "out")}}  # fmt: skip
    long = bench()
    long["load"].update(parallel=[1], number=[200], maxTokens=256, minTokens=256)
    f = manifest(tmp_path / "m.yaml", [doc("QuantJob", "q", qj), doc("ServeBenchmark", "b", long)])
    runs = tmp_path / "runs"
    proc = subprocess.Popen([sys.executable, "-m", "servelab", "run", "-f", str(f), "--runs-dir", str(runs)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.monotonic() + 600
    while not (runs / "servebenchmark-b" / "load.log").exists():
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.5)
    time.sleep(3)
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "stopping every process" in err
    left = subprocess.run(["pgrep", "-f", str(runs)], capture_output=True, text=True).stdout.split()
    assert left == [], left
