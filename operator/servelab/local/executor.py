"""The local executor: runs a plan as processes on this machine.

The server runs as a process (what the operator runs as a Deployment), each worker step runs as
`python -m servelab worker ...` inside its image's environment (what the operator runs as a Job),
and results come back through the same publish interface (a file here, a ConfigMap in a cluster).
Status is folded by the same pure functions the operator uses and written next to the artifacts.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from servelab import API_VERSION
from servelab import status as st
from servelab.api.quantjob import QuantJobSpec, QuantJobStatus
from servelab.api.servebenchmark import ServeBenchmarkSpec, ServeBenchmarkStatus
from servelab.engines import ServedModel
from servelab.local.processes import Processes, StepFailed, Toolchain, expand, free_port, wait_ready
from servelab.manifests import Resource
from servelab.plan import (
    BenchmarkPlan,
    WorkerStep,
    compile_benchmark,
    compile_quantjob,
    model_location,
    quant_score_runs,
)

Log = Callable[[str], None]


@dataclass
class LocalExecutor:
    runs_dir: Path
    log: Log = print
    toolchain: Toolchain = field(default_factory=Toolchain)
    quant_results: dict[str, QuantJobStatus] = field(default_factory=dict)
    procs: Processes = field(default_factory=Processes)

    # ---- plumbing -------------------------------------------------------------------------------
    def _dir(self, res: Resource) -> Path:
        d = self.runs_dir / f"{res.kind.lower()}-{res.name}"
        d.mkdir(parents=True, exist_ok=True)
        return d

    def _write(self, res: Resource, status: QuantJobStatus | ServeBenchmarkStatus) -> None:
        body = {**res.body, "status": status.to_wire()}
        d = self._dir(res)
        (d / "status.json").write_text(json.dumps(body, indent=2))
        (d / "status.yaml").write_text(yaml.safe_dump(body, sort_keys=False))

    def run_step(self, step: WorkerStep, out: Path) -> tuple[int, dict[str, Any] | None]:
        """Run one worker step to completion; return its exit code and published result."""
        result_file = out / f"{step.id}.result.json"
        result_file.unlink(missing_ok=True)
        argv, env = self.toolchain.worker_argv(step)
        env["SERVELAB_RESULT_SINK"] = f"file:{result_file}"
        argv = [expand(a, env) for a in argv]
        proc = self.procs.spawn(argv, env, out / f"{step.id}.log")
        try:
            rc = proc.wait(step.timeout_seconds)
        except subprocess.TimeoutExpired:
            self.procs.stop(proc)
            rc = -1
        result = json.loads(result_file.read_text()) if result_file.exists() else None
        return rc, result

    @contextmanager
    def _server(self, res: Resource, plan: BenchmarkPlan, engine: str) -> Iterator[subprocess.Popen[bytes]]:
        argv, env = self.toolchain.server_argv(engine, plan.server.command)
        env.update(plan.server.env)
        for name, (secret, key) in plan.server.secret_env.items():
            env.setdefault(
                name, os.environ.get(f"SERVELAB_SECRET_{secret}_{key}".upper().replace("-", "_"), "")
            )
        argv = [expand(a, env) for a in argv]
        log = self._dir(res) / "server.log"
        proc = self.procs.spawn(argv, env, log)
        try:
            yield proc
        finally:
            self.procs.stop(proc)

    # ---- QuantJob ---------------------------------------------------------------------------------
    def run_quantjob(self, res: Resource) -> QuantJobStatus:
        spec = res.spec()
        assert isinstance(spec, QuantJobSpec)
        env = dict(os.environ)
        model = expand(model_location(spec.model), env)
        d = self._dir(res)
        output = expand(spec.output.path, env) if spec.output.path else str(d / "output")
        plan = compile_quantjob(spec, model, output, str(d))
        status = st.start(QuantJobStatus(model=model, output=output), 1, len(plan.steps))
        status.artifacts = str(d)
        self._write(res, status)
        t0 = time.monotonic()

        def done(status: QuantJobStatus) -> QuantJobStatus:
            self._write(res, status)
            self.quant_results[res.name] = status
            return status

        for i, step in enumerate(plan.steps):
            st.step(status, step.title, i, len(plan.steps))
            self._write(res, status)
            self.log(f"[{time.monotonic() - t0:6.1f}s] quantjob/{res.name}: {step.title}")
            rc, result = self.run_step(step, d)
            if result:
                st.fold_quant(status, result)
            if rc != 0:
                reason = (result or {}).get("reason") or f"exit code {rc}; see {d / (step.id + '.log')}"
                st.fail(status, "QuantizeFailed", str(reason), 1)
                return done(status)
        # task scores: each output served and evaluated, as the operator does with child ServeBenchmarks
        runs = quant_score_runs(spec, status)
        total = len(plan.steps) + len(runs)
        for i, run in enumerate(runs, start=len(plan.steps)):
            st.step(status, f"score {run.variant} ({i - len(plan.steps) + 1}/{len(runs)})", i, total)
            self._write(res, status)
            name = f"{res.name}-{run.suffix}"
            self.log(f"[{time.monotonic() - t0:6.1f}s] quantjob/{res.name}: score {run.variant} "
                     f"(servebenchmark/{name})")  # fmt: skip
            body = {"apiVersion": API_VERSION, "kind": "ServeBenchmark", "metadata": {"name": name},
                    "spec": run.spec.to_wire()}  # fmt: skip
            child = self.run_benchmark(Resource("ServeBenchmark", name, res.namespace, body, res.source))
            st.fold_variant_scores(status, run.variant, child.scores)
            if child.phase != "Succeeded":
                st.fail(
                    status, "EvalFailed", f"scoring {run.variant} (servebenchmark/{name}): {child.message}", 1
                )
                return done(status)
        st.step(status, "done", total, total)
        scored = f", {len(runs)} scored" if runs else ""
        st.succeed(status, f"{len(status.variants)} variant(s) in {output}{scored}", 1)
        return done(status)

    def resolve_model(self, spec: ServeBenchmarkSpec) -> tuple[ServedModel, str | None]:
        """The model a benchmark serves, and its quantization label."""
        env = dict(os.environ)
        if spec.model:
            tok = expand(spec.model.tokenizer, env) if spec.model.tokenizer else None
            loc = expand(model_location(spec.model), env)
            return ServedModel(loc, tok, name=Path(loc).name or "model"), spec.engine.quantization
        assert spec.quant_job_ref
        ref = spec.quant_job_ref
        qj = self.quant_results.get(ref.name) or self._load_quant_status(ref.name)
        if qj is None:
            raise StepFailed(
                "QuantJobNotFound", f"QuantJob {ref.name} has not run here (run it in the same manifest)"
            )
        if qj.phase != "Succeeded":
            raise StepFailed("QuantJobFailed", f"QuantJob {ref.name} is {qj.phase}: {qj.message}")
        candidates = ([qj.base] if qj.base else []) + qj.variants
        chosen = st.pick_variant(qj, ref.variant)
        if chosen is None or not chosen.path:
            names = ", ".join(v.name for v in candidates)
            raise StepFailed(
                "QuantJobFailed", f"QuantJob {ref.name} has no variant {ref.variant!r} (has: {names})"
            )
        tokenizer = qj.model if chosen.path.endswith(".gguf") else None
        return ServedModel(chosen.path, tokenizer, name=Path(chosen.path).stem), chosen.name

    def _load_quant_status(self, name: str) -> QuantJobStatus | None:
        path = self.runs_dir / f"quantjob-{name}" / "status.json"
        if not path.exists():
            return None
        return QuantJobStatus.model_validate(json.loads(path.read_text()).get("status", {}))

    # ---- ServeBenchmark ---------------------------------------------------------------------------
    def run_benchmark(self, res: Resource) -> ServeBenchmarkStatus:
        spec = res.spec()
        assert isinstance(spec, ServeBenchmarkSpec)
        d = self._dir(res)
        status = ServeBenchmarkStatus(engine=spec.engine.name)
        status.artifacts = str(d)
        t0 = time.monotonic()

        def say(msg: str) -> None:
            self.log(f"[{time.monotonic() - t0:6.1f}s] servebenchmark/{res.name}: {msg}")

        try:
            model, quant = self.resolve_model(spec)
        except StepFailed as err:
            st.fail(status, err.reason, str(err), 1)
            self._write(res, status)
            return status
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        plan = compile_benchmark(spec, model, url, str(d), host="127.0.0.1", port=port)
        status.model, status.quantization = model.location, quant
        total = len(plan.steps) + 2
        st.start(status, 1, total)
        status.server = url
        status.provenance = st_provenance(plan)
        self._write(res, status)
        try:
            st.step(status, "start server", 0, total)
            say(f"starting {spec.engine.name}: {' '.join(plan.server.command)}")
            with self._server(res, plan, spec.engine.name) as proc:
                try:
                    took = wait_ready(url + plan.server.health_path, proc, plan.ready_timeout_seconds,
                                      d / "server.log")  # fmt: skip
                except StepFailed as err:
                    st.set_condition(status, st.READY, False, err.reason, str(err), 1)
                    raise
                st.set_condition(status, st.READY, True, "ServerReady", f"ready after {took:.1f}s", 1)
                say(f"server ready after {took:.1f}s")
                for i, step in enumerate(plan.steps, start=1):
                    st.step(status, step.title, i, total)
                    self._write(res, status)
                    say(step.title)
                    rc, result = self.run_step(step, d)
                    st.fold_benchmark(status, step, result, plan.points)
                    self._write(res, status)
                    check_step(step, rc, result, d)
            st.set_condition(status, st.READY, False, "ServerStopped", "server stopped after the run", 1)
            st.step(status, "done", total, total)
            st.succeed(status, st.outcome(status), 1)
        except StepFailed as err:
            st.fail(status, err.reason, str(err), 1)
        finally:
            status.server = None
            self._write(res, status)
            say(f"{status.phase} ({status.message})")
        return status


def st_provenance(plan: BenchmarkPlan) -> Any:
    from servelab.api.servebenchmark import Provenance

    return Provenance(command=plan.server.command, node=socket.gethostname(), gpu_product="cpu (local)")


def check_step(step: WorkerStep, rc: int, result: dict[str, Any] | None, d: Path) -> None:
    """Turn a worker's exit into a failure reason; what it published is already folded in."""
    if rc == 0:
        return
    if rc == -1:
        raise StepFailed("Timeout", f"{step.title}: over {step.timeout_seconds}s")
    reason, message = st.step_failure(
        step.result, step.title, result, f"exit code {rc}; see {d / (step.id + '.log')}"
    )
    raise StepFailed(reason, message)
