"""Pure reconciliation: from what is observed (the resource, its children, published results) to
the status it should have and the actions that move the world towards the plan. No API calls.

Level-triggered: the status table is rebuilt from the result ConfigMaps every time, a step's Job is
created only when absent (names are deterministic), so a restarted operator neither loses nor repeats
a load point, and the same function serves create, resume and spec changes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from servelab import status as st
from servelab.api.common import ModelSource
from servelab.api.quantjob import QuantJobSpec, QuantJobStatus
from servelab.api.results import QuantVariantResult
from servelab.api.servebenchmark import Provenance, ServeBenchmarkSpec, ServeBenchmarkStatus
from servelab.controller import render
from servelab.controller.render import Obj, Owner
from servelab.controller.settings import Settings
from servelab.engines import ServedModel
from servelab.engines import get as get_engine
from servelab.plan import (
    BenchmarkPlan,
    compile_benchmark,
    compile_quantjob,
    model_location,
    output_source,
    quant_score_runs,
)

QUANTJOB_GRACE_SECONDS = 60  # a referenced QuantJob may be applied moments after the benchmark


@dataclass
class JobState:
    name: str
    active: bool = False
    succeeded: bool = False
    failed: bool = False
    message: str = ""
    completed_at: datetime | None = None


# A worker publishes its result before it exits; a Job complete this long without one is broken.
RESULT_GRACE_SECONDS = 30


def _silent(job: JobState | None, now: datetime) -> bool:
    """The Job finished successfully but its worker never published a result."""
    return bool(
        job
        and job.succeeded
        and job.completed_at
        and (now - job.completed_at).total_seconds() > RESULT_GRACE_SECONDS
    )


@dataclass
class ServerState:
    exists: bool = False
    ready: bool = False
    node: str | None = None
    gpu_product: str | None = None
    unschedulable: str | None = None
    failed: str | None = None


@dataclass
class Observed:
    generation: int
    status: dict[str, Any]
    now: datetime
    server: ServerState = field(default_factory=ServerState)
    jobs: dict[str, JobState] = field(default_factory=dict)  # by step id, current generation
    results: dict[str, dict[str, Any]] = field(default_factory=dict)  # by step id, current generation
    stale: list[tuple[str, str, str]] = field(default_factory=list)  # (apiVersion, kind, name) of old runs
    quantjob: dict[str, Any] | None = None  # the referenced QuantJob's body, if it exists
    benchmarks: dict[str, dict[str, Any]] = field(default_factory=dict)  # a QuantJob's scoring runs, by name


@dataclass
class Decision:
    status: ServeBenchmarkStatus | QuantJobStatus
    create: list[Obj] = field(default_factory=list)
    delete: list[tuple[str, str, str]] = field(default_factory=list)
    events: list[tuple[str, str, str]] = field(default_factory=list)  # (type, reason, message)
    wake_after: float | None = None

    def event(self, reason: str, message: str, type_: str = "Normal") -> None:
        self.events.append((type_, reason, message))


def _seconds_since(ts: str | None, now: datetime) -> float:
    if not ts:
        return 0.0
    return (now - datetime.strptime(ts, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)).total_seconds()


def _fresh(kind: type[ServeBenchmarkStatus] | type[QuantJobStatus], obs: Observed) -> Any:
    stored = kind.model_validate(obs.status or {})
    if stored.observed_generation != obs.generation:
        return kind()  # a new spec: a new run (the old run's children are deleted as stale)
    return stored


def _server_children(owner: Owner) -> list[tuple[str, str, str]]:
    name = owner.child("server")
    return [("apps/v1", "Deployment", name), ("v1", "Service", name)]


def resolve_quantjob_model(
    spec: ServeBenchmarkSpec, qj: dict[str, Any]
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
    source = output_source(qspec, chosen.path)  # the QuantJob's scoring runs serve from the same source
    return ServedModel(chosen.path, source.tokenizer, name=chosen.name), chosen.name, source


def decide_benchmark(owner: Owner, spec: ServeBenchmarkSpec, obs: Observed, settings: Settings) -> Decision:
    status: ServeBenchmarkStatus = _fresh(ServeBenchmarkStatus, obs)
    d = Decision(status=status, delete=list(obs.stale))
    gen = obs.generation
    if status.phase in ("Succeeded", "Failed"):
        if obs.server.exists and _teardown(spec, status.phase):
            d.delete += _server_children(owner)
        return d
    if status.phase is None:
        st.start(status, gen, 0)
        status.start_time = obs.now.strftime("%Y-%m-%dT%H:%M:%SZ")
        status.engine = spec.engine.name
        d.event("Started", f"run of generation {gen} started")

    # --- the model -------------------------------------------------------------------------------
    quant = spec.engine.quantization
    source: ModelSource | None = spec.model
    if spec.model:
        model = ServedModel(model_location(spec.model), spec.model.tokenizer, name=owner.name)
    else:
        assert spec.quant_job_ref
        ref = spec.quant_job_ref.name
        if obs.quantjob is None:
            if _seconds_since(status.start_time, obs.now) > QUANTJOB_GRACE_SECONDS:
                return _fail(
                    d, owner, spec, "QuantJobNotFound", f"QuantJob {ref} does not exist in {owner.namespace}"
                )
            status.phase = "Pending"  # rechecked every tick until it exists or the grace period ends
            st.step(status, f"waiting for QuantJob {ref} to exist", 0, 0)
            d.wake_after = 5
            return d
        qphase = (obs.quantjob.get("status") or {}).get("phase")
        if qphase == "Failed":
            msg = (obs.quantjob.get("status") or {}).get("message", "")
            return _fail(d, owner, spec, "QuantJobFailed", f"QuantJob {ref} failed: {msg}")
        if qphase != "Succeeded":
            status.phase = "Waiting"
            st.step(status, f"waiting for QuantJob {ref} ({qphase or 'Pending'})", 0, 0)
            return d  # woken by the QuantJob's own status change, no polling
        try:
            model, quant, source = resolve_quantjob_model(spec, obs.quantjob)
        except ValueError as err:
            return _fail(d, owner, spec, "QuantJobFailed", str(err))
    status.phase = "Running"
    status.model, status.quantization = model.location, quant

    # the server listens on its pod's own IP (downward API), as probes and the Service reach it there
    host = "$(POD_IP)"
    adapter = get_engine(spec.engine.name)
    url = render.server_url(owner, adapter.launch(spec.engine, model, host=host))
    plan = compile_benchmark(spec, model, url, render.ARTIFACTS, host=host)
    total = len(plan.steps) + 2
    image = spec.engine.image or (spec.images.server if spec.images and spec.images.server else None)
    image = image or adapter.default_image
    status.provenance = Provenance(
        images={"server": image, **{s.image: settings.image(s.image) for s in plan.steps}},
        command=plan.server.command, node=obs.server.node, gpu_product=obs.server.gpu_product,
    )  # fmt: skip

    # --- results so far (rebuilt from the published results every time) -----------------------------
    status.results, status.scores, status.depth = [], [], []
    for step in plan.steps:
        st.fold_benchmark(status, step, obs.results.get(step.id), plan.points)
    status.summary = st.summarize(status, plan.points)

    if _seconds_since(status.start_time, obs.now) > plan.total_timeout_seconds:
        return _fail(d, owner, spec, "Timeout", f"the run took over {plan.total_timeout_seconds}s")

    # --- the server --------------------------------------------------------------------------------
    if not obs.server.exists:
        d.create += render.worker_rbac(owner, settings)
        d.create += render.server_objects(owner, spec, plan.server, image, settings, source)
        st.step(status, "start server", 0, total)
        d.event(
            "ServerCreated",
            f"{spec.engine.name} server {owner.child('server')}: {' '.join(plan.server.command)}",
        )
        return d
    if obs.server.failed:
        st.set_condition(status, st.READY, False, "ServerFailed", obs.server.failed, gen)
        return _fail(d, owner, spec, "ServerFailed", obs.server.failed)
    if not obs.server.ready:
        waited = _seconds_since(status.start_time, obs.now)
        if obs.server.unschedulable:
            status.phase = "Pending"
            st.set_condition(status, st.READY, False, "Unschedulable", obs.server.unschedulable, gen)
            st.step(status, f"server unschedulable: {obs.server.unschedulable}", 0, total)
        else:
            st.set_condition(
                status, st.READY, False, "ServerStarting", "waiting for the health endpoint", gen
            )
            st.step(status, "waiting for the server to become ready", 1, total)
        if waited > plan.ready_timeout_seconds:
            why = obs.server.unschedulable or "health endpoint never answered"
            return _fail(
                d, owner, spec, "ServerNotReady", f"not ready within {plan.ready_timeout_seconds}s: {why}"
            )
        return d
    if st.condition(status, st.READY) is None or st.condition(status, st.READY).status != "True":  # type: ignore[union-attr]
        d.event("ServerReady", f"server ready on node {obs.server.node}")
    st.set_condition(status, st.READY, True, "ServerReady", f"{url} is ready", gen)
    status.server = url

    # --- the steps, one Job at a time --------------------------------------------------------------
    for i, step in enumerate(plan.steps, start=2):
        job = obs.jobs.get(step.id)
        result = obs.results.get(step.id)
        if job and job.failed:
            reason, message = st.step_failure(step.result, step.title, result, job.message or "job failed")
            return _fail(d, owner, spec, reason, message)
        if job and job.succeeded and (result is not None or step.result == "warmup"):
            continue
        if result is None and _silent(job, obs.now):
            reason, _ = st.step_failure(step.result, step.title, None, "")
            return _fail(
                d, owner, spec, reason, f"{step.title}: the worker finished without publishing a result"
            )
        st.step(status, step.title, i, total)
        if job is None:
            d.create.append(render.worker_job(owner, step, settings))
            d.event("StepStarted", step.title)
        return d
    st.step(status, "done", total, total)
    st.succeed(status, st.outcome(status), gen)
    d.event("Succeeded", status.message or "")
    if _teardown(spec, "Succeeded"):
        st.set_condition(status, st.READY, False, "ServerStopped", "server deleted after the run", gen)
        status.server = None
        d.delete += _server_children(owner)
    return d


def _teardown(spec: ServeBenchmarkSpec, phase: str) -> bool:
    return spec.server_policy == "Delete" or (spec.server_policy == "KeepOnFailure" and phase == "Succeeded")


def _fail(d: Decision, owner: Owner, spec: ServeBenchmarkSpec, reason: str, message: str) -> Decision:
    assert isinstance(d.status, ServeBenchmarkStatus)
    st.fail(d.status, reason, message, owner.generation)
    d.event(reason, message, "Warning")
    if _teardown(spec, "Failed"):
        d.status.server = None
        d.delete += _server_children(owner)
    return d


def decide_quantjob(owner: Owner, spec: QuantJobSpec, obs: Observed, settings: Settings) -> Decision:
    status: QuantJobStatus = _fresh(QuantJobStatus, obs)
    d = Decision(status=status, delete=list(obs.stale))
    gen = obs.generation
    if status.phase in ("Succeeded", "Failed"):
        return d
    model = model_location(spec.model)
    out = spec.output
    output = (
        f"/models/{out.pvc.claim_name}/{out.pvc.path}".rstrip("/") if out.pvc else (out.path or out.s3 or "")
    )
    plan = compile_quantjob(spec, model, output, render.ARTIFACTS)
    if status.phase is None:
        st.start(status, gen, len(plan.steps))
        status.start_time = obs.now.strftime("%Y-%m-%dT%H:%M:%SZ")
        d.event("Started", f"quantization of generation {gen} started")
    status.phase, status.model, status.output = "Running", model, output
    step = plan.steps[0]
    job, result = obs.jobs.get(step.id), obs.results.get(step.id)
    if result:
        st.fold_quant(status, result)
    if _seconds_since(status.start_time, obs.now) > plan.total_timeout_seconds:
        st.fail(status, "Timeout", f"quantization took over {plan.total_timeout_seconds}s", gen)
        d.event("Timeout", status.message or "", "Warning")
        return d
    if job is None:
        d.create += render.worker_rbac(owner, settings)
        volumes: list[Obj] = []
        mounts: list[Obj] = []
        env: list[Obj] = []
        if out.pvc:
            volumes.append({"name": "output", "persistentVolumeClaim": {"claimName": out.pvc.claim_name}})
            mounts.append({"name": "output", "mountPath": f"/models/{out.pvc.claim_name}"})
        mv, mm = render.model_volume(spec.model)
        volumes += [*mv, {"name": "hf-cache", "emptyDir": {}}]  # a remote model is downloaded here
        mounts += [*mm, {"name": "hf-cache", "mountPath": "/root/.cache/huggingface"}]
        if spec.hf_token_secret_ref:
            env.append(
                {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": spec.hf_token_secret_ref.to_wire()}}
            )
        env += [e.to_wire() for e in spec.env]
        d.create.append(render.worker_job(owner, step, settings, spec.placement, env, (volumes, mounts)))
        st.step(status, step.title, 0, 1)
        d.event("StepStarted", step.title)
        return d
    if job.failed:
        why = (result or {}).get("reason") or job.message or "quantize job failed"
        st.fail(status, "QuantizeFailed", str(why), gen)
        d.event("QuantizeFailed", str(why), "Warning")
        return d
    if result is None and _silent(job, obs.now):
        st.fail(status, "QuantizeFailed", "the quantize worker finished without publishing a result", gen)
        d.event("QuantizeFailed", status.message or "", "Warning")
        return d
    if job.succeeded and result is not None:
        return _score_quantjob(d, owner, spec, obs, settings, output)
    st.step(status, step.title, 0, 1)
    return d


def _score_quantjob(
    d: Decision, owner: Owner, spec: QuantJobSpec, obs: Observed, settings: Settings, output: str
) -> Decision:
    """After quantizing: one child ServeBenchmark per output to score, one at a time (they would compete
    for the same GPUs); scores are folded from the children's status on every tick."""
    status = d.status
    assert isinstance(status, QuantJobStatus)
    gen = obs.generation
    runs = quant_score_runs(spec, status)
    total = 1 + len(runs)
    for i, run in enumerate(runs, start=1):
        name = owner.child(run.suffix)
        child = obs.benchmarks.get(name)
        if child is None:
            d.create.append(render.score_benchmark(owner, name, run, settings))
            st.step(status, f"score {run.variant} ({i}/{len(runs)})", i, total)
            d.event("StepStarted", f"score {run.variant}: ServeBenchmark {name}")
            return d
        cstatus = ServeBenchmarkStatus.model_validate(child.get("status") or {})
        st.fold_variant_scores(status, run.variant, cstatus.scores)
        if cstatus.phase == "Failed":
            message = f"scoring {run.variant} (ServeBenchmark {name}): {cstatus.message}"
            st.fail(status, "EvalFailed", message, gen)
            d.event("EvalFailed", message, "Warning")
            return d
        if cstatus.phase != "Succeeded":
            st.step(
                status, f"score {run.variant} ({i}/{len(runs)}): {cstatus.message or 'pending'}", i, total
            )
            return d
    st.step(status, "done", total, total)
    scored = f", {len(runs)} scored" if runs else ""
    st.succeed(status, f"{len(status.variants)} output(s) in {output}{scored}", gen)
    d.event("Succeeded", status.message or "")
    return d


def result_from_configmap(cm: dict[str, Any]) -> dict[str, Any] | None:
    data = (cm.get("data") or {}).get(render.RESULT_KEY)
    parsed: dict[str, Any] | None = json.loads(data) if data else None
    return parsed


__all__ = [
    "BenchmarkPlan",
    "Decision",
    "JobState",
    "Observed",
    "ServerState",
    "decide_benchmark",
    "decide_quantjob",
]
