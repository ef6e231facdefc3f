"""The local executor: `servelab run` runs the decision core (`servelab.core`) that the operator runs,
with processes and files for children.

| the operator's child        | here                                                                 |
|-----------------------------|----------------------------------------------------------------------|
| server Deployment + Service | a server process (the engine's local build), 127.0.0.1 on a free port |
| a step's Job                | a `servelab worker ...` process in its image's environment; its exit  |
|                             | code is kept in `<step>.exit` (what a Job's conditions say)           |
| result ConfigMap            | `<step>.result.json` (the worker's FileSink)                          |
| a QuantJob's scoring runs   | child ServeBenchmarks run by this same loop, each in its own run dir  |
| status subresource          | `status.yaml` / `status.json` next to the artifacts                  |

Each tick observes those, calls the same `decide()` as the operator and applies its actions, so the
two executors cannot drift: there is no second state machine here. A run resumed with `--resume`
continues from the first step without a published result, as a restarted operator does.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from servelab import API_VERSION
from servelab.api.quantjob import QuantJobSpec, QuantJobStatus
from servelab.api.servebenchmark import ServeBenchmarkSpec, ServeBenchmarkStatus, ServerFootprint
from servelab.core import (
    CreateScoreRun,
    CreateServer,
    Decision,
    DeleteServer,
    JobState,
    Observed,
    Owner,
    RunStep,
    ServerState,
    Site,
    decide,
)
from servelab.local.processes import Processes, Toolchain, expand, free_port
from servelab.manifests import Resource
from servelab.plan import WorkerStep

Log = Callable[[str], None]
LOCAL_NAMESPACE = "local"
PREFIX = "servelab.dev"
TERMINAL = ("Succeeded", "Failed")


@dataclass
class _Server:
    proc: subprocess.Popen[bytes] | None  # None: its model step failed (`failed` says how)
    health: str
    log: Path
    engine: str = ""
    started: float = 0.0  # time.monotonic() of the process's start
    model_report: Path | None = None  # the model step's report (size on disk)
    footprint: ServerFootprint | None = None  # measured once, when first healthy
    failed: str | None = None


@dataclass
class _Step:
    step: WorkerStep
    proc: subprocess.Popen[bytes]
    started: float
    log: Path


def expand_tree(value: Any, env: dict[str, str]) -> Any:
    """${VAR} in every string of a manifest, as `envsubst` would before `kubectl apply`."""
    if isinstance(value, str):
        return expand(value, env)
    if isinstance(value, list):
        return [expand_tree(v, env) for v in value]
    if isinstance(value, dict):
        return {k: expand_tree(v, env) for k, v in value.items()}
    return value


def _tail(path: Path, n: int = 2000) -> str:
    return path.read_text(errors="replace")[-n:] if path.exists() else ""


@dataclass
class LocalExecutor:
    runs_dir: Path
    log: Log = print
    toolchain: Toolchain = field(default_factory=Toolchain)
    procs: Processes = field(default_factory=Processes)
    resume: bool = False
    tick_seconds: float = 0.5
    servers: dict[str, _Server] = field(default_factory=dict)  # by owner key
    steps: dict[str, dict[str, _Step]] = field(default_factory=dict)  # owner key -> step id -> process
    ports: dict[str, int] = field(default_factory=dict)  # owner key -> the server's port
    interrupted: threading.Event = field(default_factory=threading.Event)  # set: stop at the next tick
    _t0: float = field(default_factory=time.monotonic)

    # ---- places -----------------------------------------------------------------------------------
    def run_dir(self, kind: str, name: str) -> Path:
        d = (self.runs_dir / f"{kind.lower()}-{name}").resolve()
        if not d.is_relative_to(self.runs_dir.resolve()):  # names are DNS subdomains; never trust that here
            raise ValueError(f"{kind} name {name!r} would put its run directory outside {self.runs_dir}")
        return d

    def baseline_path(self, name: str) -> Path:
        path = (self.runs_dir / "baselines" / f"{name}.json").resolve()
        if not path.is_relative_to((self.runs_dir / "baselines").resolve()):
            raise ValueError(f"baseline name {name!r} would leave {self.runs_dir}/baselines")
        return path

    def _stored(self, kind: str, name: str) -> dict[str, Any] | None:
        path = self.run_dir(kind, name) / "status.json"
        if not path.exists():
            return None
        body: dict[str, Any] = json.loads(path.read_text())
        return body

    def _write(self, owner: Owner, body: dict[str, Any], status: dict[str, Any]) -> None:
        d = self.run_dir(owner.kind, owner.name)
        d.mkdir(parents=True, exist_ok=True)
        full = {**body, "status": status}
        full.setdefault("metadata", {})["generation"] = owner.generation
        for name, text in (("status.json", json.dumps(full, indent=2)),
                           ("status.yaml", yaml.safe_dump(full, sort_keys=False))):  # fmt: skip
            tmp = d / f".{name}.tmp"
            tmp.write_text(text)
            os.replace(tmp, d / name)

    def site(self, owner: Owner) -> Site:
        d = self.run_dir(owner.kind, owner.name)
        port = self.ports.setdefault(self._key(owner), free_port())
        return Site(
            artifacts=str(d), server_host="127.0.0.1", server_url=lambda _o, p: f"http://127.0.0.1:{p}",
            server_port=port, model_root=str(self.runs_dir.resolve() / "pvc"), quantjob_grace_seconds=0,
            default_output=str(d / "output"), images=None, node=socket.gethostname(),
        )  # fmt: skip

    @staticmethod
    def _key(owner: Owner) -> str:
        return f"{owner.kind}/{owner.name}/{owner.generation}"

    def say(self, owner: Owner, message: str) -> None:
        self.log(f"[{time.monotonic() - self._t0:6.1f}s] {owner.kind.lower()}/{owner.name}: {message}")

    # ---- one resource, to the end -----------------------------------------------------------------
    def run_quantjob(self, res: Resource) -> QuantJobStatus:
        status = self.run(res)
        assert isinstance(status, QuantJobStatus)
        return status

    def run_benchmark(self, res: Resource) -> ServeBenchmarkStatus:
        status = self.run(res)
        assert isinstance(status, ServeBenchmarkStatus)
        return status

    def run(self, res: Resource, resume: bool | None = None) -> ServeBenchmarkStatus | QuantJobStatus:
        """Reconcile one resource until it is finished (or nothing here can move it on)."""
        body = expand_tree(res.body, dict(os.environ))
        spec = Resource(res.kind, res.name, res.namespace, body, res.source).spec()
        assert isinstance(spec, ServeBenchmarkSpec | QuantJobSpec)
        owner, stored = self._begin(res.kind, res.name, body, self.resume if resume is None else resume)
        status = stored
        while True:
            if self.interrupted.is_set():
                raise KeyboardInterrupt
            self._drive_children(owner, spec)
            obs = self.observe(owner, spec, status)
            decision = decide(owner, spec, obs, self.site(owner))
            self.apply(owner, spec, body, decision)
            status = decision.status.to_wire()
            self._write(owner, body, status)
            for type_, reason, message in decision.events:
                self.say(owner, f"{reason}: {message}" if type_ == "Warning" else message)
            phase = decision.status.phase
            if phase in TERMINAL:
                for run in self.steps.pop(self._key(owner), {}).values():
                    self.procs.stop(run.proc)  # a step still running when the run failed (a timeout)
                return decision.status  # a server kept by serverPolicy runs until `servelab run` ends
            if phase in ("Waiting", "Pending") and not self._active(owner) and not decision.actions:
                why = decision.status.progress.step if decision.status.progress else phase
                self.say(
                    owner, f"blocked: {why}; the QuantJob it needs is not part of this run (run it first)"
                )
                return decision.status
            time.sleep(self.tick_seconds)

    def _begin(
        self, kind: str, name: str, body: dict[str, Any], resume: bool
    ) -> tuple[Owner, dict[str, Any]]:
        """The generation of this run: a fresh run starts over at 1; a resumed one keeps the stored run
        when its spec is unchanged, and starts the next generation when it changed (as the apiserver)."""
        d = self.run_dir(kind, name)
        stored = self._stored(kind, name) if resume else None
        gen, status = 1, dict[str, Any]()
        if stored is not None:
            old = int((stored.get("metadata") or {}).get("generation") or 1)
            status = stored.get("status") or {}
            gen = old if stored.get("spec") == body.get("spec") else old + 1
        if not status or int(status.get("observedGeneration") or 0) != gen:
            self._clear(d)  # a new run: what older runs published is stale
        d.mkdir(parents=True, exist_ok=True)
        owner = Owner(kind, name, LOCAL_NAMESPACE, f"local-{kind.lower()}-{name}", gen)
        return owner, status

    @staticmethod
    def _clear(d: Path) -> None:
        if not d.exists():
            return
        for pattern in ("*.result.json", "*.exit", "*.log", "children.json"):
            for path in d.glob(pattern):
                path.unlink()

    def _active(self, owner: Owner) -> bool:
        key = self._key(owner)
        server = self.servers.get(key)
        return bool(self.steps.get(key)) or (
            server is not None and server.proc is not None and server.proc.poll() is None
        )

    # ---- observe ----------------------------------------------------------------------------------
    def observe(
        self, owner: Owner, spec: ServeBenchmarkSpec | QuantJobSpec, status: dict[str, Any]
    ) -> Observed:
        d = self.run_dir(owner.kind, owner.name)
        now = datetime.now(UTC)
        obs = Observed(generation=owner.generation, status=status, now=now)
        key = self._key(owner)
        for sid, run in list(self.steps.get(key, {}).items()):
            rc = run.proc.poll()
            if rc is None and time.monotonic() - run.started > run.step.timeout_seconds:
                self.procs.stop(run.proc)  # what a Job's activeDeadlineSeconds does
                self._exit(d, sid, -1, f"DeadlineExceeded: {run.step.title} ran longer than "
                                       f"{run.step.timeout_seconds}s; see {run.log}")  # fmt: skip
            elif rc is not None:
                self._exit(d, sid, rc, "" if rc == 0 else f"exit code {rc}; see {run.log}")
            else:
                obs.jobs[sid] = JobState(name=sid, active=True)
                continue
            del self.steps[key][sid]
        if not self.steps.get(key):
            self.steps.pop(key, None)
        for path in d.glob("*.exit"):
            sid = path.name[: -len(".exit")]
            done = json.loads(path.read_text())
            rc = int(done["rc"])
            obs.jobs[sid] = JobState(
                name=sid, succeeded=rc == 0, failed=rc != 0, message=done.get("message", ""),
                completed_at=datetime.fromisoformat(done["at"]),
            )  # fmt: skip
        for path in d.glob("*.result.json"):
            try:
                obs.results[path.name[: -len(".result.json")]] = json.loads(path.read_text())
            except ValueError:
                continue  # being written; the worker replaces it atomically, so this is a foreign file
        server = self.servers.get(key)
        if server is not None:
            obs.server = ServerState(exists=True, node=socket.gethostname(), gpu_product="cpu (local)")
            rc = server.proc.poll() if server.proc is not None else None
            if server.failed:
                obs.server.failed = server.failed
            elif rc is not None:
                obs.server.failed = f"server exited with code {rc}:\n{_tail(server.log)}"
            else:
                obs.server.ready = _healthy(server.health)
                if obs.server.ready and server.footprint is None:
                    server.footprint = _footprint(server, time.monotonic())
                obs.server.footprint = server.footprint
        if isinstance(spec, ServeBenchmarkSpec) and spec.quant_job_ref:
            obs.quantjob = self._stored("QuantJob", spec.quant_job_ref.name)
        if isinstance(spec, ServeBenchmarkSpec) and spec.baseline:
            b = spec.baseline
            if b.name:
                obs.baseline = self._stored("ServeBenchmark", b.name)
            elif b.config_map_name:  # a saved result (`servelab baseline save --runs-dir`)
                path = self.baseline_path(b.config_map_name)
                obs.baseline = json.loads(path.read_text()) if path.exists() else None
        for name in self._children(owner):
            child = self._stored("ServeBenchmark", name)
            if child is not None:
                obs.benchmarks[name] = child
        return obs

    @staticmethod
    def _exit(d: Path, sid: str, rc: int, message: str) -> None:
        at = datetime.now(UTC).isoformat()
        (d / f"{sid}.exit").write_text(json.dumps({"rc": rc, "message": message, "at": at}))

    def _children(self, owner: Owner) -> list[str]:
        path = self.run_dir(owner.kind, owner.name) / "children.json"
        names: list[str] = json.loads(path.read_text()) if path.exists() else []
        return names

    def _drive_children(self, owner: Owner, spec: ServeBenchmarkSpec | QuantJobSpec) -> None:
        """Children left unfinished by an interrupted run are resumed (the operator reconciles each
        child on its own; here they run one after another)."""
        for name in self._children(owner):
            child = self._stored("ServeBenchmark", name)
            if child is not None and (child.get("status") or {}).get("phase") not in TERMINAL:
                res = Resource(
                    "ServeBenchmark",
                    name,
                    LOCAL_NAMESPACE,
                    {k: child[k] for k in ("apiVersion", "kind", "metadata", "spec")},
                    "child",
                )
                self.run(res, resume=True)

    # ---- apply ------------------------------------------------------------------------------------
    def apply(
        self, owner: Owner, spec: ServeBenchmarkSpec | QuantJobSpec, body: dict[str, Any], decision: Decision
    ) -> None:
        key = self._key(owner)
        d = self.run_dir(owner.kind, owner.name)
        for action in decision.actions:
            if isinstance(action, CreateServer):
                assert isinstance(spec, ServeBenchmarkSpec)
                self._start_server(owner, spec, action, d)
            elif isinstance(action, RunStep):
                self.steps.setdefault(key, {})[action.step.id] = self._start_step(action.step, d)
            elif isinstance(action, CreateScoreRun):
                names = self._children(owner)
                if action.name not in names:
                    (d / "children.json").write_text(json.dumps([*names, action.name]))
                child = {"apiVersion": API_VERSION, "kind": "ServeBenchmark",
                         "metadata": {"name": action.name, "labels": {f"{PREFIX}/owner-uid": owner.uid}},
                         "spec": action.run.spec.to_wire()}  # fmt: skip
                self.run(
                    Resource("ServeBenchmark", action.name, LOCAL_NAMESPACE, child, "child"), resume=False
                )
            elif isinstance(action, DeleteServer):
                server = self.servers.pop(key, None)
                if server is not None and server.proc is not None:
                    self.procs.stop(server.proc)

    def _prepare(self, step: WorkerStep, d: Path, report: Path) -> str | None:
        """A step's model step (`servelab worker model`), run to completion first, as an init container is;
        its report (the model's size on disk) written to `report`. Returns why it failed, or None."""
        report.unlink(missing_ok=True)
        argv, env = self.toolchain.worker_argv(step)
        env["SERVELAB_RESULT_SINK"] = f"file:{report}"
        log = d / f"{step.id}.log"
        proc = self.procs.spawn([expand(a, env) for a in argv], env, log)
        try:
            rc = proc.wait(timeout=step.timeout_seconds)
        except subprocess.TimeoutExpired:
            self.procs.stop(proc)
            return f"{step.title}: ran longer than {step.timeout_seconds}s; see {log}"
        return None if rc == 0 else f"{step.title} exited with code {rc}:\n{_tail(log)}"

    def _start_server(self, owner: Owner, spec: ServeBenchmarkSpec, action: CreateServer, d: Path) -> None:
        launch = action.launch
        health = f"http://127.0.0.1:{launch.port}{launch.health_path}"
        log = d / "server.log"
        report = d / "model.report.json"
        if action.prepare is not None:
            self.say(owner, action.prepare.title)
            why = self._prepare(action.prepare, d, report)
            if why is not None:  # what an init container's failure is: the server never starts
                self.servers[self._key(owner)] = _Server(None, health, log, spec.engine.name, failed=why)
                return
        argv, env = self.toolchain.server_argv(spec.engine.name, launch.command)
        env.update(launch.env)
        for name, (secret, key) in launch.secret_env.items():  # a Secret's key, from the environment here
            env.setdefault(
                name, os.environ.get(f"SERVELAB_SECRET_{secret}_{key}".upper().replace("-", "_"), "")
            )
        argv = [expand(a, env) for a in argv]
        proc = self.procs.spawn(argv, env, log)
        self.servers[self._key(owner)] = _Server(
            proc, health, log, spec.engine.name, time.monotonic(), report if action.prepare else None
        )

    def _start_step(self, step: WorkerStep, d: Path) -> _Step:
        result_file = d / f"{step.id}.result.json"
        if "--resume" not in step.argv:  # a resumable step keeps what it published (it resumes from it)
            result_file.unlink(missing_ok=True)
        if step.prepare is not None:  # the step's model step first, as the Job's init container
            why = self._prepare(step.prepare, d, d / f"{step.id}.model.report.json")
            if why is not None:
                argv = ["sh", "-c", 'echo "$1" >&2; exit 1', "sh", why]  # the step fails with the reason
                log = d / f"{step.id}.log"
                return _Step(step, self.procs.spawn(argv, dict(os.environ), log), time.monotonic(), log)
        argv, env = self.toolchain.worker_argv(step)
        env["SERVELAB_RESULT_SINK"] = f"file:{result_file}"
        for name, (secret, key) in step.secret_env.items():
            env[name] = secret_value(secret, key)
        argv = [expand(a, env) for a in argv]
        log = d / f"{step.id}.log"
        return _Step(step, self.procs.spawn(argv, env, log), time.monotonic(), log)

    def stop_all(self) -> None:
        self.procs.stop_all()
        self.servers.clear()
        self.steps.clear()


def secret_value(secret: str, key: str) -> str:
    """A Secret's key, locally: the environment variable SERVELAB_SECRET_<SECRET>_<KEY> (upper case, - as _)."""
    return os.environ.get(f"SERVELAB_SECRET_{secret}_{key}".upper().replace("-", "_").replace(".", "_"), "")


def _footprint(server: _Server, now: float) -> ServerFootprint:
    """Process start to its first healthy answer, the model step's size report, the engine's log."""
    from servelab.engines import get

    fp = ServerFootprint(
        load_seconds=round(now - server.started, 2),
        load_source="server process start to its first healthy answer (polled every 0.5 s)",
    )
    if server.model_report is not None and server.model_report.is_file():
        report = json.loads(server.model_report.read_text())
        fp.model_bytes, fp.model_bytes_source = report.get("bytes"), report.get("source")
    if server.log.is_file():
        memory = get(server.engine).gpu_memory(server.log.read_text(errors="replace"))
        if memory is not None:
            fp.gpu_memory_bytes, fp.gpu_memory_source = memory
    return fp


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return False


__all__ = ["LocalExecutor", "expand_tree"]
