"""The decision core: from what is observed of one resource's run to the status it should have and the
actions that move the world towards its plan. No I/O, no clock of its own, no Kubernetes objects.

Both executors run exactly these functions, each as an observe/apply backend:

- the operator (`servelab.controller`): children are Kubernetes objects; `controller/kube.py` observes
  Jobs, Deployments, pods and result ConfigMaps and renders the actions into objects (`render.py`);
- `servelab run` (`servelab.local`): children are processes and result files; `local/executor.py`
  observes process exits, health endpoints and result files and starts or stops processes.

Level-triggered: status is rebuilt from the published results every time, a step is started only
when absent (deterministic ids), so a restarted executor neither loses nor repeats a load point, and
the same function serves create, resume and spec changes. What differs between the two places a run
can happen is data (`Site`), not code.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from servelab import status as st
from servelab.api.common import ModelSource
from servelab.api.quantjob import QuantJobSpec, QuantJobStatus
from servelab.api.results import QuantVariantResult
from servelab.api.servebenchmark import (
    Provenance,
    ServeBenchmarkSpec,
    ServeBenchmarkStatus,
    ServerFootprint,
    Timing,
)
from servelab.engines import ServedModel, ServerLaunch
from servelab.engines import get as get_engine
from servelab.plan import (
    BenchmarkPlan,
    ScoreRun,
    WorkerStep,
    compile_benchmark,
    compile_quantjob,
    model_location,
    output_source,
    quant_output,
    quant_score_runs,
    served_model,
)
from servelab.verdict import benchmark_verdict, quant_verdict

# A worker publishes its result before it exits; a step finished this long without one is broken.
RESULT_GRACE_SECONDS = 30


# ---- where a run happens ------------------------------------------------------------------------
@dataclass(frozen=True)
class Owner:
    """The resource a run belongs to, and the deterministic names of its children."""

    kind: str  # ServeBenchmark | QuantJob
    name: str
    namespace: str
    uid: str
    generation: int

    def child(self, suffix: str) -> str:
        from servelab.names import child_name

        return child_name(self.kind, self.name, self.generation, suffix)


@dataclass(frozen=True)
class Site:
    """What differs between the places a run can happen, as data the decisions read."""

    artifacts: str  # where workers write their artifacts (a pod's /artifacts; the run directory locally)
    server_host: str  # what the server binds to ($(POD_IP) in a pod; 127.0.0.1 locally)
    server_url: Callable[[Owner, int], str]  # how clients reach the server on a port
    server_port: int | None = None  # overrides the engine's port (locally: a free port)
    model_root: str = "/models"  # where PVC model sources and outputs are mounted
    quantjob_grace_seconds: float = 60  # a referenced QuantJob may be applied moments after the benchmark
    default_output: str | None = None  # a QuantJob output when the spec names none (locally: the run dir)
    images: Callable[[str], str] | None = None  # worker image by plan image name (None: no containers)
    node: str | None = None  # where servers run when the observation cannot say (locally: this host)


# ---- what is observed ---------------------------------------------------------------------------
@dataclass
class JobState:
    """A worker step's run: a Job in a cluster, a process (and its exit file) locally."""

    name: str
    active: bool = False
    succeeded: bool = False
    failed: bool = False
    message: str = ""
    completed_at: datetime | None = None


@dataclass
class ServerState:
    exists: bool = False
    ready: bool = False
    node: str | None = None
    gpu_product: str | None = None
    unschedulable: str | None = None
    failed: str | None = None
    # what the backend measured of the model's load (pod/process start to ready, the model step's size
    # report, the engine's log); folded into status.footprint once the server is ready
    footprint: ServerFootprint | None = None


@dataclass
class Observed:
    generation: int
    status: dict[str, Any]
    now: datetime
    server: ServerState = field(default_factory=ServerState)
    jobs: dict[str, JobState] = field(default_factory=dict)  # by step id, current generation
    results: dict[str, dict[str, Any]] = field(default_factory=dict)  # by step id, current generation
    stale: list[Any] = field(default_factory=list)  # children of older generations (backend's references)
    quantjob: dict[str, Any] | None = None  # the referenced QuantJob ({"spec", "status"}), if it exists
    baseline: dict[str, Any] | None = None  # spec.baseline's run ({"spec", "status"}), if it exists
    benchmarks: dict[str, dict[str, Any]] = field(default_factory=dict)  # a QuantJob's scoring runs, by name


# ---- what is decided ----------------------------------------------------------------------------
@dataclass(frozen=True)
class CreateServer:
    launch: ServerLaunch
    image: str
    source: ModelSource | None  # the model source to make visible to the server (a PVC to mount)
    prepare: WorkerStep | None = None  # the model step, run to completion before the server starts


@dataclass(frozen=True)
class RunStep:
    step: WorkerStep


@dataclass(frozen=True)
class CreateScoreRun:
    name: str
    run: ScoreRun


@dataclass(frozen=True)
class DeleteServer:
    pass


Action = CreateServer | RunStep | CreateScoreRun | DeleteServer


@dataclass
class Decision:
    status: ServeBenchmarkStatus | QuantJobStatus
    actions: list[Action] = field(default_factory=list)
    stale: list[Any] = field(default_factory=list)  # delete these (what the backend observed as stale)
    events: list[tuple[str, str, str]] = field(default_factory=list)  # (type, reason, message)
    wake_after: float | None = None
    now: datetime | None = None  # the observation's time (what timestamps in status use)

    def event(self, reason: str, message: str, type_: str = "Normal") -> None:
        self.events.append((type_, reason, message))

    def due_in(self, seconds: float) -> None:
        """A time-based decision (a timeout, a grace period) falls due in `seconds`: look again then even
        if nothing changes (a backend otherwise waits for a change, or its slow safety resync)."""
        wake = max(seconds, 0.0) + 1.0  # just past the deadline, so the next look finds it passed
        self.wake_after = wake if self.wake_after is None else min(self.wake_after, wake)


# ---- helpers ------------------------------------------------------------------------------------
def timestamp(now: datetime) -> str:
    return now.strftime("%Y-%m-%dT%H:%M:%SZ")


def _seconds_since(ts: str | None, now: datetime) -> float:
    if not ts:
        return 0.0
    return (now - datetime.strptime(ts, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)).total_seconds()


def _silent(d: Decision, job: JobState | None, now: datetime) -> bool:
    """The step's Job finished successfully but its worker never published a (final) result: true once
    RESULT_GRACE_SECONDS have passed since it finished; until then the decision is due at that moment.
    Callers ask only while the result is missing."""
    if not (job and job.succeeded and job.completed_at):
        return False
    waited = (now - job.completed_at).total_seconds()
    if waited > RESULT_GRACE_SECONDS:
        return True
    d.due_in(RESULT_GRACE_SECONDS - waited)
    return False


def _fresh(kind: type[ServeBenchmarkStatus] | type[QuantJobStatus], obs: Observed) -> Any:
    stored = kind.model_validate(obs.status or {})
    if stored.observed_generation != obs.generation:
        return kind()  # a new spec: a new run (the old run's children are deleted as stale)
    return stored


def _start(status: Any, obs: Observed, total: int, d: Decision, what: str) -> None:
    st.start(status, obs.generation, total)
    status.start_time = timestamp(obs.now)
    d.event("Started", f"{what} of generation {obs.generation} started")


def resolve_quantjob_model(
    spec: ServeBenchmarkSpec, qj: dict[str, Any], model_root: str = "/models"
) -> tuple[ServedModel, str, ModelSource]:
    """The model a benchmark serves from a Succeeded QuantJob (raises ValueError when it cannot)."""
    assert spec.quant_job_ref
    ref = spec.quant_job_ref
    qstatus = QuantJobStatus.model_validate(qj.get("status") or {})
    qspec = QuantJobSpec.model_validate(qj["spec"])
    candidates: list[QuantVariantResult] = ([qstatus.base] if qstatus.base else []) + qstatus.variants
    chosen = st.pick_variant(qstatus, ref.variant)
    if chosen is None or not chosen.path:
        raise ValueError(
            f"QuantJob {ref.name} has no output {ref.variant!r} (has: {', '.join(v.name for v in candidates)})"
        )
    source = output_source(qspec, chosen.path, model_root)  # the QuantJob's scoring runs serve the same
    return served_model(source, model_root, name=chosen.name, engine=spec.engine.name), chosen.name, source


def plan_benchmark(
    owner: Owner, spec: ServeBenchmarkSpec, model: ServedModel, site: Site, source: ModelSource | None = None
) -> BenchmarkPlan:
    """The compiled plan of one tick: the server launched once, its URL, the steps."""
    return compile_benchmark(
        spec, model, artifacts=site.artifacts, host=site.server_host, port=site.server_port,
        server_url=lambda port: site.server_url(owner, port), source=source, mount_root=site.model_root,
    )  # fmt: skip


# ---- ServeBenchmark -----------------------------------------------------------------------------
def decide_benchmark(owner: Owner, spec: ServeBenchmarkSpec, obs: Observed, site: Site) -> Decision:
    status: ServeBenchmarkStatus = _fresh(ServeBenchmarkStatus, obs)
    d = Decision(status=status, stale=list(obs.stale), now=obs.now)
    gen = obs.generation
    if status.phase in ("Succeeded", "Failed"):
        if obs.server.exists and _teardown(spec, status.phase):
            d.actions.append(DeleteServer())
        return d
    if status.phase is None:
        _start(status, obs, 0, d, "run")
        status.engine = spec.engine.name

    # --- the model -------------------------------------------------------------------------------
    quant = spec.engine.quantization
    source: ModelSource | None = spec.model
    if spec.endpoint:  # a server that already runs
        model = ServedModel(spec.endpoint.url, spec.endpoint.tokenizer, name=spec.endpoint.served_model_name)
        source = None
    elif spec.model:
        model = served_model(spec.model, site.model_root, name=owner.name, engine=spec.engine.name)
    else:
        assert spec.quant_job_ref
        ref = spec.quant_job_ref.name
        if obs.quantjob is None:
            if _seconds_since(status.start_time, obs.now) >= site.quantjob_grace_seconds:
                return _fail(
                    d, spec, "QuantJobNotFound", f"QuantJob {ref} does not exist in {owner.namespace}"
                )
            status.phase = "Pending"  # rechecked every tick until it exists or the grace period ends
            st.step(status, f"waiting for QuantJob {ref} to exist", 0, 0)
            st.reconciling(status, "Pending", f"waiting for QuantJob {ref} to exist", gen)
            d.wake_after = 5
            return d
        qphase = (obs.quantjob.get("status") or {}).get("phase")
        if qphase == "Failed":
            msg = (obs.quantjob.get("status") or {}).get("message", "")
            return _fail(d, spec, "QuantJobFailed", f"QuantJob {ref} failed: {msg}")
        if qphase != "Succeeded":
            status.phase = "Waiting"
            st.step(status, f"waiting for QuantJob {ref} ({qphase or 'Pending'})", 0, 0)
            st.reconciling(status, "Waiting", f"waiting for QuantJob {ref} ({qphase or 'Pending'})", gen)
            return d  # reconciled again when the QuantJob changes (or by the slow resync)
        try:
            model, quant, source = resolve_quantjob_model(spec, obs.quantjob, site.model_root)
        except ValueError as err:
            return _fail(d, spec, "QuantJobFailed", str(err))
    status.phase = "Running"
    st.reconciling(status, "Running", "run in progress", gen)
    status.model, status.quantization = model.location, quant
    if spec.endpoint:
        status.model = f"{spec.endpoint.served_model_name} at {spec.endpoint.url}"

    plan = plan_benchmark(owner, spec, model, site, source)
    adapter = get_engine(spec.engine.name)
    image = spec.engine.image or (spec.images.server if spec.images and spec.images.server else None)
    image = image or adapter.default_image
    offline = [replace(s, engine_image=image) for s in plan.offline]  # the engine itself: the server's image
    total = len(offline) + len(plan.steps) + 2
    images: dict[str, str] = {}
    if site.images:  # where steps run in containers: which images (none locally)
        images = {s.image: site.images(s.image) for s in plan.steps}
        if plan.server:
            images["server"] = image
        images.update({s.id: image for s in offline})
    status.provenance = Provenance(
        images=images, command=plan.server.command if plan.server else [],
        node=None if spec.endpoint else obs.server.node or site.node, gpu_product=obs.server.gpu_product,
    )  # fmt: skip

    # --- results so far (rebuilt from the published results every time) -----------------------------
    status.results, status.scores, status.depth = [], [], []
    unreadable: tuple[WorkerStep, ValidationError] | None = None
    for step in [*offline, *plan.steps]:
        try:
            st.fold_benchmark(status, step, obs.results.get(step.id), plan.points)
        except ValidationError as invalid:  # a worker of another version, or a broken one: never into status
            unreadable = unreadable or (step, invalid)
    status.summary = st.summarize(status, plan.points)
    stored = obs.status or {}
    before = len(stored.get("results") or []) if stored.get("observedGeneration") == obs.generation else 0
    for k, r in enumerate(status.results[before:], start=before + 1):  # a sweep's points, as they come
        tps = (
            f", {r.output_tokens_per_second:.1f} out tok/s" if r.output_tokens_per_second is not None else ""
        )
        d.event("PointMeasured", f"load {k}/{plan.points}: concurrency {r.concurrency}, {r.requests} requests{tps}"
                f"{'' if r.valid else ' (invalid)'}")  # fmt: skip
    if unreadable is not None:
        bad, exc = unreadable
        return _fail(d, spec, "InvalidResult", f"{bad.title}: the worker published a result that does not "
                     f"match servelab's result schema ({exc.error_count()} error(s): {_first_errors(exc)})")  # fmt: skip

    if _seconds_since(status.start_time, obs.now) > plan.total_timeout_seconds:
        return _fail(d, spec, "Timeout", f"the run took over {plan.total_timeout_seconds}s")
    d.due_in(plan.total_timeout_seconds - _seconds_since(status.start_time, obs.now))

    # --- steps with no server (vLLM's offline benchmark): first, so they never share the GPUs with it ------
    if offline:
        pending = _offline_steps(d, spec, obs, offline, status, total)
        if pending is not None:
            return pending
        if not plan.steps and not obs.server.exists:  # nothing is served: done without a server
            done = _run_steps(d, spec, obs, plan, status, len(offline))
            done.actions = [a for a in done.actions if not isinstance(a, DeleteServer)]
            return done

    # --- the server --------------------------------------------------------------------------------
    if plan.server is None:  # spec.endpoint: nothing to deploy, wait for or tear down; clients check it
        st.set_condition(status, st.SERVER_READY, True, "ExternalEndpoint",
                         f"{plan.server_url}: an existing endpoint (nothing deployed or torn down)", gen)  # fmt: skip
        status.server = plan.server_url
        return _run_steps(d, spec, obs, plan, status, 0)
    if not obs.server.exists:
        first = plan.steps[0] if plan.steps else None
        if first is not None and "--wait-ready" in first.argv and first.result == "points":
            # the sweep's client starts first and says when it is ready (imports, tokenizer loaded): the
            # server, and the GPUs it holds, only then; a client that cannot start fails with none held
            job, said = obs.jobs.get(first.id), obs.results.get(first.id)
            if job is not None and job.failed:
                reason, message = st.step_failure(
                    first.result, _point_title(spec, status, plan), said, job.message or "job failed"
                )
                return _fail(d, spec, reason, message)
            if said is None:
                if job is None:
                    d.actions.append(RunStep(first))
                    d.event("StepStarted", f"{first.title} (its client starts before the server)")
                if _seconds_since(status.start_time, obs.now) > plan.ready_timeout_seconds:
                    return _fail(d, spec, "LoadFailed",
                                 f"the load client did not start within {plan.ready_timeout_seconds}s")  # fmt: skip
                d.due_in(plan.ready_timeout_seconds - _seconds_since(status.start_time, obs.now))
                st.step(status, "start the load client (the server starts when it is ready)", 0, total)
                return d
        d.actions.append(CreateServer(plan.server, image, source, plan.model_step))
        status.timing = Timing(server_created_at=timestamp(obs.now))
        first = plan.steps[0] if plan.steps else None
        if first is not None and "--wait-ready" in first.argv and first.id not in obs.jobs:
            # a sweep resumed after its client was gone: started again with the server, it waits for it
            d.actions.append(RunStep(first))
            d.event("StepStarted", f"{first.title} (waits for the server)")
        st.step(status, "start server", len(offline), total)
        d.event(
            "ServerCreated",
            f"{spec.engine.name} server {owner.child('server')}: {' '.join(plan.server.command)}",
        )
        return d
    if obs.server.failed:
        st.set_condition(status, st.SERVER_READY, False, "ServerFailed", obs.server.failed, gen)
        return _fail(d, spec, "ServerFailed", obs.server.failed)
    if not obs.server.ready:
        waited = _seconds_since(status.start_time, obs.now)
        if obs.server.unschedulable:
            status.phase = "Pending"
            st.reconciling(status, "Unschedulable", obs.server.unschedulable, gen)
            st.set_condition(status, st.SERVER_READY, False, "Unschedulable", obs.server.unschedulable, gen)
            st.step(status, f"server unschedulable: {obs.server.unschedulable}", 0, total)
        else:
            st.set_condition(
                status, st.SERVER_READY, False, "ServerStarting", "waiting for the health endpoint", gen
            )
            st.step(status, "waiting for the server to become ready", len(offline) + 1, total)
        if waited > plan.ready_timeout_seconds:
            why = obs.server.unschedulable or "health endpoint never answered"
            return _fail(d, spec, "ServerNotReady", f"not ready within {plan.ready_timeout_seconds}s: {why}")
        d.due_in(plan.ready_timeout_seconds - waited)
        return d
    url = plan.server_url
    ready = st.condition(status, st.SERVER_READY)
    if status.timing is not None and status.timing.server_ready_at is None:
        status.timing.server_ready_at = timestamp(obs.now)
    status.footprint = _footprint(status.footprint, obs.server.footprint)
    if ready is None or ready.status != "True":
        took = _seconds_since(status.start_time, obs.now)
        d.event("ServerReady", f"server ready on {obs.server.node or site.node} ({took:.0f}s after start)")
    st.set_condition(status, st.SERVER_READY, True, "ServerReady", f"{url} is ready", gen)
    status.server = url
    return _run_steps(d, spec, obs, plan, status, len(offline) + 2)


def _offline_steps(
    d: Decision, spec: ServeBenchmarkSpec, obs: Observed, steps: list[WorkerStep], status: ServeBenchmarkStatus,
    total: int,
) -> Decision | None:  # fmt: skip
    """The steps that run the engine themselves, one at a time, before the server: the decision while one
    is pending or failed, None once all have published their results."""
    for i, step in enumerate(steps):
        job, result = obs.jobs.get(step.id), obs.results.get(step.id)
        if job and job.failed:
            reason, message = st.step_failure(step.result, step.title, result, job.message or "job failed")
            return _fail(d, spec, reason, message)
        if job and job.succeeded and result is not None:
            continue
        if result is None and _silent(d, job, obs.now):
            reason, _ = st.step_failure(step.result, step.title, None, "")
            return _fail(d, spec, reason, f"{step.title}: the worker finished without publishing a result")
        st.step(status, step.title, i, total)
        if job is None:
            d.actions.append(RunStep(step))
            d.event("StepStarted", step.title)
        return d
    return None


def _footprint(stored: ServerFootprint | None, seen: ServerFootprint | None) -> ServerFootprint | None:
    """What is known of the model's load: a figure once measured stays, a missing one is filled in when
    the backend measures it later (the engine's log read after readiness)."""
    if seen is None:
        return stored
    if stored is None:
        return seen
    merged = stored.model_copy()
    for name, value in seen:
        if getattr(merged, name) is None and value is not None:
            setattr(merged, name, value)
    return merged


def _run_steps(
    d: Decision,
    spec: ServeBenchmarkSpec,
    obs: Observed,
    plan: BenchmarkPlan,
    status: ServeBenchmarkStatus,
    first: int,
) -> Decision:
    """The steps, one at a time (progress counts the server's two steps first, when there is a server)."""
    gen = obs.generation
    total = len(plan.steps) + first
    _timing(status, obs, released=False, endpoint=spec.endpoint is not None)
    for i, step in enumerate(plan.steps, start=first):
        job = obs.jobs.get(step.id)
        result = obs.results.get(step.id)
        if job and job.failed:
            title = _point_title(spec, status, plan) if step.result == "points" else step.title
            reason, message = st.step_failure(step.result, title, result, job.message or "job failed")
            return _fail(d, spec, reason, message)
        # a sweep publishes after each point ("partial"); only its last result finishes the step
        final = result is not None and not result.get("partial")
        if job and job.succeeded and (final or step.result == "warmup"):
            continue
        if not final and _silent(d, job, obs.now):
            reason, _ = st.step_failure(step.result, step.title, None, "")
            return _fail(d, spec, reason, f"{step.title}: the worker finished without publishing a result")
        st.step(status, _point_title(spec, status, plan) if step.result == "points" else step.title, i, total)
        if job is None:
            d.actions.append(RunStep(step))
            d.event("StepStarted", step.title)
        return d
    st.step(status, "done", total, total)
    _timing(status, obs, released=True, endpoint=spec.endpoint is not None)
    if spec.slo or spec.baseline:
        status.verdict = benchmark_verdict(spec, status, obs.baseline, server_gpus(spec))
    st.succeed(status, st.outcome(status), gen)
    _succeeded_events(d)
    if _teardown(spec, "Succeeded") and not spec.endpoint:
        st.set_condition(status, st.SERVER_READY, False, "ServerStopped", "server deleted after the run", gen)
        status.server = None
        d.actions.append(DeleteServer())
    return d


def _point_title(spec: ServeBenchmarkSpec, status: ServeBenchmarkStatus, plan: BenchmarkPlan) -> str:
    """The sweep's point that runs now (the first without a result), or the first invalid one."""
    load = spec.load
    assert load is not None
    bad = next((k for k, r in enumerate(status.results) if not r.valid), None)
    k = bad if bad is not None else min(len(status.results), plan.points - 1)
    return f"load {k + 1}/{plan.points} (parallel {load.parallel[k]}, number {load.number[k]})"


def _succeeded_events(d: Decision) -> None:
    """Succeeded, then the gate's outcome (a Warning with the failed checks when it did not pass)."""
    d.event("Succeeded", d.status.message or "")
    verdict = d.status.verdict
    if verdict is not None:
        d.event("GatePassed" if verdict.passed else "GateFailed", verdict.message or verdict.reason,
                "Normal" if verdict.passed else "Warning")  # fmt: skip


def server_gpus(spec: ServeBenchmarkSpec) -> int:
    """GPUs of the server pod: resources.gpus, else the tensor-parallel size (what render requests)."""
    if spec.resources and spec.resources.gpus is not None:
        return spec.resources.gpus
    return spec.engine.tensor_parallel_size


def _teardown(spec: ServeBenchmarkSpec, phase: str) -> bool:
    return spec.server_policy == "Delete" or (spec.server_policy == "KeepOnFailure" and phase == "Succeeded")


def _timing(status: ServeBenchmarkStatus, obs: Observed, released: bool, endpoint: bool) -> None:
    """Server time held so far (to now, or to its release) against the load measured in it."""
    # only valid points measured anything: a point whose requests all timed out held the server for nothing
    measured = round(sum(r.duration_seconds or 0.0 for r in status.results if r.valid), 3)
    if endpoint:
        status.timing = Timing(measured_seconds=measured,
                               note="an existing endpoint: no server held, no duty cycle")  # fmt: skip
        return
    t = status.timing
    if t is None or t.server_created_at is None:
        return
    if released and t.server_released_at is None:
        t.server_released_at = timestamp(obs.now)
    end = _parse(t.server_released_at) if t.server_released_at else obs.now
    held = max((end - _parse(t.server_created_at)).total_seconds(), 0.0)
    t.server_held_seconds, t.measured_seconds = round(held, 3), measured
    t.duty_cycle = round(measured / held, 4) if held > 0 else None


def _parse(ts: str) -> datetime:
    return datetime.strptime(ts, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def _first_errors(err: ValidationError, n: int = 3) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors()[:n])


def _fail(d: Decision, spec: ServeBenchmarkSpec, reason: str, message: str) -> Decision:
    assert isinstance(d.status, ServeBenchmarkStatus)
    if d.status.timing is not None and d.now is not None and not spec.endpoint:
        _timing(d.status, Observed(generation=0, status={}, now=d.now), released=True, endpoint=False)
    st.fail(d.status, reason, message, d.status.observed_generation)
    d.event(reason, message, "Warning")
    if _teardown(spec, "Failed") and not spec.endpoint:
        d.status.server = None
        d.actions.append(DeleteServer())
    return d


# ---- QuantJob -----------------------------------------------------------------------------------
def decide_quantjob(owner: Owner, spec: QuantJobSpec, obs: Observed, site: Site) -> Decision:
    status: QuantJobStatus = _fresh(QuantJobStatus, obs)
    d = Decision(status=status, stale=list(obs.stale))
    if status.phase in ("Succeeded", "Failed"):
        return d
    model = model_location(spec.model, site.model_root)
    output = quant_output(spec, site.model_root, site.default_output)
    plan = compile_quantjob(spec, model, output, site.artifacts, site.model_root)
    if status.phase is None:
        _start(status, obs, len(plan.steps), d, "quantization")
    status.phase, status.model, status.output = "Running", model, output
    step = plan.steps[0]
    job, result = obs.jobs.get(step.id), obs.results.get(step.id)
    if result:
        try:
            st.fold_quant(status, result)
            st.relate_to_base(status)
        except ValidationError as err:
            return _fail_quant(d, "QuantizeFailed", f"the quantize worker published a result that does not match "
                               f"servelab's result schema ({_first_errors(err)})")  # fmt: skip
    if _seconds_since(status.start_time, obs.now) > plan.total_timeout_seconds:
        return _fail_quant(d, "Timeout", f"quantization took over {plan.total_timeout_seconds}s")
    d.due_in(plan.total_timeout_seconds - _seconds_since(status.start_time, obs.now))
    if job is None:
        d.actions.append(RunStep(step))
        st.step(status, step.title, 0, 1)
        d.event("StepStarted", step.title)
        return d
    if job.failed:
        why = (result or {}).get("reason") or job.message or "quantize job failed"
        return _fail_quant(d, "QuantizeFailed", str(why))
    if result is None and _silent(d, job, obs.now):
        return _fail_quant(d, "QuantizeFailed", "the quantize worker finished without publishing a result")
    if job.succeeded and result is not None:
        return _score_quantjob(d, owner, spec, obs, output)
    st.step(status, step.title, 0, 1)
    return d


def _fail_quant(d: Decision, reason: str, message: str) -> Decision:
    assert isinstance(d.status, QuantJobStatus)
    st.fail(d.status, reason, message, d.status.observed_generation)
    d.event(reason, message, "Warning")
    return d


def _score_quantjob(d: Decision, owner: Owner, spec: QuantJobSpec, obs: Observed, output: str) -> Decision:
    """After quantizing: one scoring run (a ServeBenchmark of its own) per output, one at a time (they
    would compete for the same GPUs); scores are folded from the children's status on every tick."""
    status = d.status
    assert isinstance(status, QuantJobStatus)
    runs = quant_score_runs(spec, status)
    ev = spec.evaluation
    total = 1 + len(runs)
    for i, run in enumerate(runs, start=1):
        name = owner.child(run.suffix)
        child = obs.benchmarks.get(name)
        if child is None:
            d.actions.append(CreateScoreRun(name, run))
            st.step(status, f"score {run.variant} ({i}/{len(runs)})", i, total)
            d.event("StepStarted", f"score {run.variant}: ServeBenchmark {name}")
            return d
        cstatus = ServeBenchmarkStatus.model_validate(child.get("status") or {})
        st.fold_variant_run(status, run.variant, cstatus, ev.speed if ev else None)
        st.relate_to_base(status)
        if cstatus.phase == "Failed":
            return _fail_quant(
                d, "EvalFailed", f"scoring {run.variant} (ServeBenchmark {name}): {cstatus.message}"
            )
        if cstatus.phase != "Succeeded":
            st.step(
                status, f"score {run.variant} ({i}/{len(runs)}): {cstatus.message or 'pending'}", i, total
            )
            return d
    st.step(status, "done", total, total)
    scored = f", {len(runs)} scored" if runs else ""
    if spec.acceptance:
        status.verdict = quant_verdict(spec, status)
    st.succeed(status, f"{len(status.variants)} output(s) in {output}{scored}", obs.generation)
    _succeeded_events(d)
    return d


def decide(owner: Owner, spec: ServeBenchmarkSpec | QuantJobSpec, obs: Observed, site: Site) -> Decision:
    if isinstance(spec, ServeBenchmarkSpec):
        return decide_benchmark(owner, spec, obs, site)
    return decide_quantjob(owner, spec, obs, site)


__all__ = [
    "Action",
    "CreateScoreRun",
    "CreateServer",
    "Decision",
    "DeleteServer",
    "JobState",
    "Observed",
    "Owner",
    "RunStep",
    "ServerState",
    "Site",
    "decide",
    "decide_benchmark",
    "decide_quantjob",
]
