"""One scenario table, two backends: the decision core must give the same status whether its children are
Kubernetes objects (the operator's backend: decisions rendered into objects by `render.decision_objects`,
played by a small in-memory cluster) or processes and files (`servelab run`'s backend: real processes of a
scripted server and scripted workers, started by the real `LocalExecutor`).

Each scenario scripts what the world does (the server comes up, crashes or never answers; each worker
step publishes a result and exits with a code) and compares what both backends end with.
"""

from __future__ import annotations

import contextlib
import json
import sys
import textwrap
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from servelab import API_VERSION, core
from servelab.api.servebenchmark import ServeBenchmarkSpec
from servelab.controller import render
from servelab.controller.kube import cluster_site
from servelab.controller.settings import Settings
from servelab.core import JobState, Observed, Owner, ServerState
from servelab.local.executor import LocalExecutor
from servelab.local.processes import Toolchain
from servelab.manifests import Resource
from servelab.plan import WorkerStep

pytestmark = pytest.mark.unit
SETTINGS = Settings()


def row(c: int, valid: bool = True) -> dict[str, Any]:
    r: dict[str, Any] = {"concurrency": c, "requests": 2 * c, "succeeded": 2 * c, "successRate": 1.0,
                         "outputTokensPerSecond": 10.0 * c, "valid": valid}  # fmt: skip
    if not valid:
        r["reason"] = "mean output tokens 3 != requested 8"
    return {"points": [r]}


CRASHED = {"points": [{"concurrency": 2, "requests": 4, "succeeded": 0, "failed": 0, "successRate": 0.0,
                       "valid": False, "reason": "evalscope produced no results (rc=1)"}]}  # fmt: skip


def sweep(*rows: dict[str, Any]) -> dict[str, Any]:
    """The sweep step's final result; its worker publishes it point by point (a partial result each)."""
    return {"points": [r for row in rows for r in row["points"]]}


OK = {"load": (0, sweep(row(1), row(2)))}


@dataclass
class Scenario:
    name: str
    steps: dict[str, tuple[int, dict[str, Any] | None]]  # step id -> (exit code, published result)
    server: str = "ok"  # ok | never (health never 200) | crash (exits at once)
    ready_seconds: int = 30
    expect_phase: str = "Succeeded"
    expect_reason: str | None = None


SCENARIOS = [
    Scenario("success", OK),
    Scenario("load-point-crash", {"load": (1, sweep(row(1), CRASHED))}, expect_phase="Failed",
             expect_reason="LoadFailed"),
    Scenario("invalid-result", {"load": (1, sweep(row(1), row(2, valid=False)))}, expect_phase="Failed",
             expect_reason="InvalidResult"),
    Scenario("server-crash", OK, server="crash", expect_phase="Failed", expect_reason="ServerFailed"),
    Scenario("server-never-ready", OK, server="never", ready_seconds=10, expect_phase="Failed",
             expect_reason="ServerNotReady"),
]  # fmt: skip


def spec_body(ready_seconds: int = 30, parallel: tuple[int, ...] = (1, 2)) -> dict[str, Any]:
    return {
        "model": {"path": "/models/tiny.gguf"},
        "engine": {"name": "llamacpp", "servedModelName": "tiny"},
        "load": {"parallel": list(parallel), "number": [2 * p for p in parallel], "minPromptLength": 8,
                 "maxPromptLength": 8, "maxTokens": 8, "warmupRequests": 1},
        "timeouts": {"serverReadySeconds": ready_seconds, "totalSeconds": 600},
    }  # fmt: skip


def normalized(status: Any) -> dict[str, Any]:
    """What must agree between backends: phase, failure, every row, progress, condition states."""
    wire = status if isinstance(status, dict) else status.to_wire()
    conds = {c["type"]: (c["status"], c["reason"]) for c in wire.get("conditions", [])}
    ready = conds.pop("ServerReady", None)
    failed = wire.get("phase") == "Failed"
    return {
        "phase": wire.get("phase"),
        "observedGeneration": wire.get("observedGeneration"),
        "conditions": conds,
        "ready": ready[0] if ready else None,
        "results": [
            (r["concurrency"], r.get("valid"), r.get("outputTokensPerSecond"))
            for r in wire.get("results", [])
        ],
        # where a failure is first seen depends on timing (a crashing server may be seen starting first)
        "progress": None if failed else (wire.get("progress") or {}).get("summary"),
        "points": (wire.get("summary") or {}).get("points"),
        "failedReason": next(
            (
                c["reason"]
                for c in wire.get("conditions", [])
                if c["type"] == "Failed" and c["status"] == "True"
            ),
            None,
        ),
    }


# ---- the operator's backend, with an in-memory cluster ----------------------------------------------
@dataclass
class Cluster:
    """Plays the apiserver, the Job and Deployment controllers and the workers, from rendered objects."""

    scenario: Scenario
    objects: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    results: dict[tuple[int, str], dict[str, Any]] = field(
        default_factory=dict
    )  # (generation, step) -> result
    jobs: dict[tuple[int, str], JobState] = field(default_factory=dict)
    now: datetime = field(default_factory=lambda: datetime(2026, 11, 29, tzinfo=UTC))
    runs: dict[str, int] = field(default_factory=dict)  # what workers measured ("load:0": times) or ran

    def observe(self, owner: Owner, status: dict[str, Any]) -> Observed:
        obs = Observed(generation=owner.generation, status=status, now=self.now)
        for (kind, name), obj in self.objects.items():
            gen = int(obj["metadata"]["labels"]["servelab.dev/generation"])
            if gen != owner.generation:
                obs.stale.append((obj["apiVersion"], kind, name))
            elif kind == "Deployment":
                obs.server = ServerState(exists=True, node="gpu-0", ready=self.scenario.server == "ok",
                                         failed="container engine exited with code 1" if self.scenario.server == "crash" else None)  # fmt: skip
        for (gen, sid), job in self.jobs.items():
            if gen == owner.generation:
                obs.jobs[sid] = job
        for (gen, sid), result in self.results.items():
            if gen == owner.generation:
                obs.results[sid] = result
        return obs

    def apply(self, owner: Owner, spec: ServeBenchmarkSpec, decision: core.Decision) -> None:
        create, delete = render.decision_objects(owner, spec, decision, SETTINGS)
        for obj in create:
            self.objects.setdefault((obj["kind"], obj["metadata"]["name"]), obj)
        for _, kind, name in delete:
            self.objects.pop((kind, name), None)

    def advance(self) -> None:
        """Time passes: each Job's worker (as scripted) measures one more point of its sweep and publishes
        what it has (partial until the last, resuming after what its result ConfigMap already holds, as the
        perf worker's --resume does), then completes."""
        self.now += timedelta(seconds=1)
        for (kind, name), obj in list(self.objects.items()):
            if kind != "Job":
                continue
            labels = obj["metadata"]["labels"]
            gen, sid = int(labels["servelab.dev/generation"]), labels["servelab.dev/step"]
            if (gen, sid) in self.jobs and not self.jobs[(gen, sid)].active:
                continue
            command = obj["spec"]["template"]["spec"]["containers"][0]["command"]
            if "--wait-ready" in command and (gen, sid) not in self.results:  # its client starts, says so
                self.results[(gen, sid)] = {"partial": True, "clientReady": True, "points": []}
                self.jobs[(gen, sid)] = JobState(name, active=True)
                continue
            if self.scenario.server != "ok" and any(k == "Deployment" for k, _ in self.objects):
                continue  # its worker waits for the server (--wait-ready), which never answers
            rc, result = self.scenario.steps[sid]
            points = (result or {}).get("points", [])[: sweep_points(command)]
            have = len((self.results.get((gen, sid)) or {}).get("points", []))
            if have < len(points):  # one more point measured and published
                key = f"{sid}:{have}"
                self.runs[key] = self.runs.get(key, 0) + 1
                have += 1
                self.results[(gen, sid)] = {
                    "points": points[:have],
                    **({"partial": True} if have < len(points) else {}),
                }
                if have < len(points):
                    self.jobs[(gen, sid)] = JobState(name, active=True)
                    continue
            elif result is None:
                self.runs[sid] = self.runs.get(sid, 0) + 1
            elif not points:
                self.results[(gen, sid)] = result
            self.jobs[(gen, sid)] = JobState(name, succeeded=rc == 0, failed=rc != 0,
                                             message="" if rc == 0 else "BackoffLimitExceeded: Job has reached the specified backoff limit",
                                             completed_at=self.now)  # fmt: skip


def run_cluster(world: Cluster, body: dict[str, Any], generation: int = 1, status: dict[str, Any] | None = None,
                max_ticks: int = 400, stop_after: str | None = None) -> dict[str, Any]:  # fmt: skip
    spec = ServeBenchmarkSpec.model_validate(body)
    owner = Owner("ServeBenchmark", "sc", "ns", "uid-sc", generation)
    status = status or {}
    for _ in range(max_ticks):
        d = core.decide_benchmark(owner, spec, world.observe(owner, status), cluster_site(SETTINGS))
        world.apply(owner, spec, d)
        status = d.status.to_wire()
        if status.get("phase") in ("Succeeded", "Failed"):
            return status
        if stop_after and stop_after in world.runs:
            return status  # the operator is killed here (after that point was measured)
        world.advance()
    raise AssertionError(f"no end after {max_ticks} ticks: {status.get('progress')}")


def sweep_points(argv: list[str]) -> int:
    """How many points a sweep step's command asks for (its --parallel values)."""
    if "--parallel" not in argv:
        return 0
    rest = argv[argv.index("--parallel") + 1 :]
    return next((i for i, a in enumerate(rest) if a.startswith("--")), len(rest))


# ---- servelab run's backend: real processes ---------------------------------------------------------
SERVER = textwrap.dedent("""
    import http.server, os, sys
    mode = os.environ["SCENARIO_SERVER"]
    if mode == "crash":
        sys.exit(1)
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # a loaded server lists its model
            self.send_response(200 if mode == "ok" else 503)
            self.end_headers()
            if mode == "ok" and self.path == "/v1/models":
                self.wfile.write(b'{"data": [{"id": "m"}]}')
        def log_message(self, *a):
            pass
    http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
""")
WORKER = textwrap.dedent("""
    import argparse, json, os, sys, time
    from servelab.workers import perf
    from servelab.workers.publish import sink_from_spec
    sid, argv = sys.argv[1], sys.argv[2:]
    if sid == "model":  # the model step before the server (an init container, which the fake cluster omits)
        sys.exit(0)
    rc, result = json.loads(os.environ["SCENARIO_STEPS"])[sid]
    sink = sink_from_spec(None)
    def ran(what):
        with open(os.environ["SCENARIO_RUNS"], "a") as f:
            f.write(what + "\\n")
    if argv[2] == "perf" and result is not None:  # a sweep: the perf worker's own arguments and resume
        parser = argparse.ArgumentParser()
        perf.add_arguments(parser)
        args = parser.parse_args(argv[3:])
        if args.resume and args.wait_ready and not sink.read():  # the client ready: the server may start
            sink.publish({"partial": True, "clientReady": True, "points": []})
        if args.wait_ready:  # as the perf worker: measure nothing before the server answers
            from servelab.workers.common import server_root, wait_ready
            while wait_ready(server_root(args.url), 1) >= 1:
                pass
        key = perf.sweep_key(args)
        points = result["points"][: len(args.parallel)]
        done = [d["point"] for d in perf.published_points(sink.read() or {}, key)] if args.resume else []
        for i in range(len(done), len(points)):
            ran(f"{sid}:{i}")
            if i == int(os.environ.get("SCENARIO_HANG_AT", "-1")):
                time.sleep(60)
            done.append(points[i])
            last = len(done) == len(points)
            sink.publish({"points": done, "sweepKey": key, **({} if last else {"partial": True})})
    else:
        ran(sid)
        if result is not None:
            sink.publish(result)
    sys.exit(rc)
""")


@dataclass
class ScriptedToolchain(Toolchain):
    """The server and worker programs replaced by scripts; everything else is the real local executor."""

    scenario: Scenario
    scripts: Path
    runs_file: Path

    hang_at: int = -1  # the sweep's worker hangs at this point (to be interrupted)

    def env(self) -> dict[str, str]:
        return {"SCENARIO_SERVER": self.scenario.server, "SCENARIO_STEPS": json.dumps(self.scenario.steps),
                "SCENARIO_RUNS": str(self.runs_file), "PATH": "/usr/bin:/bin", "SCENARIO_HANG_AT": str(self.hang_at),
                "PYTHONPATH": str(Path(core.__file__).parent.parent)}  # fmt: skip

    def worker_argv(self, step: WorkerStep) -> tuple[list[str], dict[str, str]]:
        return [sys.executable, str(self.scripts / "worker.py"), step.id, *step.argv], self.env()

    def server_argv(self, engine: str, command: list[str]) -> tuple[list[str], dict[str, str]]:
        port = command[command.index("--port") + 1]
        return [sys.executable, str(self.scripts / "server.py"), port], self.env()


def local_executor(tmp: Path, scenario: Scenario, hang_at: int = -1) -> tuple[LocalExecutor, Path]:
    (tmp / "server.py").write_text(SERVER)
    (tmp / "worker.py").write_text(WORKER)
    runs = tmp / "runs.txt"
    tool = ScriptedToolchain(scenario=scenario, scripts=tmp, runs_file=runs, hang_at=hang_at)
    return LocalExecutor(runs_dir=tmp / "runs", log=lambda _: None, toolchain=tool, tick_seconds=0.1), runs


def resource(body: dict[str, Any]) -> Resource:
    doc = {"apiVersion": API_VERSION, "kind": "ServeBenchmark", "metadata": {"name": "sc"}, "spec": body}
    return Resource("ServeBenchmark", "sc", None, doc, "test")


def run_local(tmp: Path, scenario: Scenario, body: dict[str, Any], resume: bool = False) -> tuple[dict[str, Any], list[str]]:  # fmt: skip
    ex, runs = local_executor(tmp, scenario)
    try:
        status = ex.run(resource(body), resume=resume).to_wire()
    finally:
        ex.stop_all()
    return status, runs.read_text().split() if runs.exists() else []


# ---- the table ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_both_backends_end_with_the_same_status(scenario: Scenario, tmp_path: Path) -> None:
    body = spec_body(scenario.ready_seconds)
    world = Cluster(scenario)  # its clock is simulated: a second per tick
    in_cluster = run_cluster(world, body)
    local, ran = run_local(tmp_path, scenario, body)
    assert normalized(in_cluster) == normalized(local)
    assert local["phase"] == scenario.expect_phase
    assert normalized(local)["failedReason"] == scenario.expect_reason
    assert sorted(ran) == sorted(sid for sid, n in world.runs.items() for _ in range(n))  # the same steps ran


def test_restart_mid_sweep_loses_and_repeats_no_point(tmp_path: Path) -> None:
    """The operator killed after the sweep's first point and restarted / `servelab run` interrupted during
    its second point and `--resume`d: the sweep goes on from the first point without a published result
    (the worker keeps what it published), no point is measured twice, and both end as an uninterrupted
    run does."""
    scenario = Scenario("three", {"load": (0, sweep(row(1), row(2), row(4)))})
    body = spec_body(parallel=(1, 2, 4))
    world = Cluster(scenario)
    half = run_cluster(world, body, stop_after="load:0")
    assert half["phase"] == "Running" and [r["concurrency"] for r in half["results"]] == [1]
    in_cluster = run_cluster(world, body, status=half)  # a new operator process: only what is stored
    assert world.runs == {"load:0": 1, "load:1": 1, "load:2": 1}

    # in a cluster, the sweep's Job gone after its first point (deleted; its pod's node lost): created again,
    # its new worker resumes from the published result
    again = Cluster(scenario)
    half = run_cluster(again, body, stop_after="load:0")
    again.jobs.pop((1, "load"))
    again.objects.pop(("Job", "sc-g1-load"))
    assert run_cluster(again, body, status=half)["phase"] == "Succeeded"
    assert again.runs == {"load:0": 1, "load:1": 1, "load:2": 1}

    # locally: the sweep's worker hangs in its second point, the run is cut (as Ctrl-C would), then resumed
    ex, runs = local_executor(tmp_path, scenario, hang_at=1)
    import threading

    def interrupted_run() -> None:
        with contextlib.suppress(KeyboardInterrupt):
            ex.run(resource(body))

    t = threading.Thread(target=interrupted_run, daemon=True)
    t.start()
    for _ in range(300):
        if "load:1" in (runs.read_text() if runs.exists() else ""):
            break
        threading.Event().wait(0.1)
    ex.interrupted.set()  # what Ctrl-C does to `servelab run`
    t.join(10)
    ex.stop_all()  # and its processes die with it
    assert not t.is_alive()
    published = json.loads((tmp_path / "runs" / "servebenchmark-sc" / "load.result.json").read_text())
    assert published["partial"] and len(published["points"]) == 1  # the first point, published
    local, ran = run_local(tmp_path, scenario, body, resume=True)
    # the interrupted point is measured again (it had no result); the first is not
    assert ran == ["load:0", "load:1", "load:1", "load:2"]
    assert normalized(local) == normalized(in_cluster)


def test_spec_change_starts_the_next_generation_in_both(tmp_path: Path) -> None:
    scenario = SCENARIOS[0]
    world = Cluster(scenario)
    first = run_cluster(world, spec_body())
    changed = spec_body(parallel=(1,))
    second = run_cluster(world, changed, generation=2, status=first)
    assert second["observedGeneration"] == 2 and [r["concurrency"] for r in second["results"]] == [1]
    assert not any(
        int(o["metadata"]["labels"]["servelab.dev/generation"]) == 1 for o in world.objects.values()
    )

    run_local(tmp_path, scenario, spec_body())
    local, _ = run_local(tmp_path, scenario, changed, resume=True)
    assert normalized(local) == normalized(second)
    # the older generation's result is stale: deleted, not resumed from (a different sweep)
    assert json.loads((tmp_path / "runs" / "servebenchmark-sc" / "load.result.json").read_text())[
        "points"
    ] == [row(1)["points"][0]]


def test_an_existing_endpoint_is_measured_with_nothing_deployed(tmp_path: Path) -> None:
    """spec.endpoint: no server is created or torn down in either backend; clients get the endpoint's URL, its
    API key from its Secret (an env var, never an argument) and wait for it to answer first."""
    body = spec_body()
    del body["model"]
    body["engine"] = {"name": "vllm"}
    body["endpoint"] = {"url": "http://127.0.0.1:{port}/v1", "servedModelName": "prod-llm", "tokenizer": "/tok",
                        "apiKeySecretRef": {"name": "llm-key", "key": "token"}}  # fmt: skip
    scenario = SCENARIOS[0]
    world = Cluster(scenario)
    in_cluster = run_cluster(world, body)
    assert not any(kind in ("Deployment", "Service") for kind, _ in world.objects)
    job = next(o for (kind, _), o in world.objects.items() if kind == "Job")
    c = job["spec"]["template"]["spec"]["containers"][0]
    assert "http://127.0.0.1:{port}/v1" in c["command"] and "--wait-ready" in c["command"]
    assert {
        "name": "SERVELAB_API_KEY",
        "valueFrom": {"secretKeyRef": {"name": "llm-key", "key": "token"}},
    } in c["env"]
    assert in_cluster["phase"] == "Succeeded" and in_cluster["server"] == "http://127.0.0.1:{port}"
    ready = next(c for c in in_cluster["conditions"] if c["type"] == "ServerReady")
    assert ready["reason"] == "ExternalEndpoint" and in_cluster["provenance"].get("command", []) == []

    # locally: the scripted server plays the endpoint, started by the test (the executor starts nothing)
    import os
    import socket
    import subprocess

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (tmp_path / "server.py").write_text(SERVER)
    server = subprocess.Popen([sys.executable, str(tmp_path / "server.py"), str(port)],
                              env={**os.environ, "SCENARIO_SERVER": "ok"})  # fmt: skip
    os.environ["SERVELAB_SECRET_LLM_KEY_TOKEN"] = "canary-3e1f"
    try:
        local_body = json.loads(json.dumps(body).replace("{port}", str(port)))
        ex, _ = local_executor(tmp_path, scenario)
        (tmp_path / "worker.py").write_text(
            WORKER.replace(
                "sys.exit(rc)", "assert os.environ['SERVELAB_API_KEY'] == 'canary-3e1f'\nsys.exit(rc)"
            )
        )
        local = ex.run(resource(local_body)).to_wire()
        ex.stop_all()
    finally:
        os.environ.pop("SERVELAB_SECRET_LLM_KEY_TOKEN", None)
        server.terminate()
        server.wait(10)
    assert not ex.servers  # nothing was started for the server
    assert normalized(local) == {**normalized(in_cluster), "ready": "True"}
    assert "canary-3e1f" not in (tmp_path / "runs" / "servebenchmark-sc" / "status.yaml").read_text()
