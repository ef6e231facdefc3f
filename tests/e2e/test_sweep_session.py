"""The sweep's one client process, for real: the perf worker with --resume (what the plan renders) runs every
point in one evalscope process (servelab.loadgen.session), publishes after each point, and a worker killed
mid-sweep and started again keeps the points it published and measures from the first without a result."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from servelab.toolchain import envs
from servelab_dev.zeroserver import ZeroServer

pytestmark = pytest.mark.e2e


def sweep_args(url: str, tokenizer: Path, out: Path) -> list[str]:
    return ["worker", "perf", "--url", f"{url}/v1", "--model", "tiny", "--tokenizer-path", str(tokenizer),
            "--prompt-tokens", "32", "--max-tokens", "16", "--parallel", "1", "2", "2", "--number", "3", "4", "4",
            "--warmup-requests", "1", "--wait-ready", "30", "--resume", "--out", str(out)]  # fmt: skip


def test_one_client_process_runs_every_point(tiny_model: Path, tmp_path: Path) -> None:
    envs.ensure_env("evalscope")
    out = tmp_path / "load"
    with ZeroServer(model="tiny", ttft=0.01, tpot=0.001) as srv:
        cmd = envs.worker_command("evalscope", *sweep_args(srv.url, tiny_model, out))
        proc = subprocess.run(cmd, env=envs.worker_environ(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads((out / "result.json").read_text())
    assert result["clientProcesses"] == "per-sweep" and "partial" not in result
    assert [(p["concurrency"], p["requests"], p["succeeded"]) for p in result["points"]] == [
        (1, 3, 3), (2, 4, 4), (2, 4, 4)]  # fmt: skip
    # one evalscope process, started once: each point's log says it ran in it
    session = (out / "logs" / "client-session.log").read_text()
    assert session.count("evalscope session ready") == 1, session
    logs = sorted((out / "logs").glob("perf-*-p*-n*.log"))
    assert len(logs) == 3 and all(log.read_text().startswith("$ (session) ") for log in logs)
    # successive points draw fresh prompts (offsets 0, 3, 7), each in a directory of its own
    offsets = [log.read_text().split("--dataset-offset ")[1].split()[0] for log in logs]
    assert offsets == ["0", "3", "7"]
    assert all((out / f"point-{i}" / "evalscope").is_dir() for i in range(3))


def test_a_worker_killed_mid_sweep_resumes_at_the_first_point_without_a_result(
    tiny_model: Path, tmp_path: Path
) -> None:
    envs.ensure_env("evalscope")
    out = tmp_path / "load"
    result = out / "result.json"
    with ZeroServer(model="tiny", ttft=0.01, tpot=0.02) as srv:  # ~0.3 s a request: points take seconds
        cmd = envs.worker_command("evalscope", *sweep_args(srv.url, tiny_model, out))
        first = subprocess.Popen(cmd, env=envs.worker_environ(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                 text=True, start_new_session=True)  # fmt: skip
        deadline = time.monotonic() + 300
        while not (result.exists() and json.loads(result.read_text()).get("points")):
            assert first.poll() is None and time.monotonic() < deadline, "no partial result published"
            time.sleep(0.2)
        os.killpg(first.pid, signal.SIGKILL)  # the pod (worker and its client process) gone mid-sweep
        first.wait(30)
        kept = json.loads(result.read_text())
        assert kept["partial"] and 1 <= len(kept["points"]) < 3
        done = len(kept["points"])
        logs = {log: log.stat().st_mtime_ns for log in (out / "logs").glob("perf-*-p*-n*.log")
                if int(log.name.split("-")[1]) < done}  # fmt: skip
        assert len(logs) == done
        again = subprocess.run(cmd, env=envs.worker_environ(), capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert f"resuming: {done} of 3 point(s) already measured" in again.stdout
    final = json.loads(result.read_text())
    assert "partial" not in final and [p["concurrency"] for p in final["points"]] == [1, 2, 2]
    assert final["points"][:done] == kept["points"]  # kept as published
    # not measured again: their clients' logs are untouched; the others ran (once each, after the restart)
    assert {log: log.stat().st_mtime_ns for log in logs} == logs
    assert len(list((out / "logs").glob("perf-*-p*-n*.log"))) == 3
