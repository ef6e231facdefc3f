"""kopf handlers: thin wrappers that observe, call the pure decision functions, and apply.

One timer per unfinished resource is the reconcile loop (level-triggered: every tick decides from
what exists). Finished resources are not polled; a spec change (new generation) restarts the loop,
and a QuantJob's phase change wakes the benchmarks waiting on it.
"""

from __future__ import annotations

import time
from typing import Any

import kopf
from pydantic import ValidationError

from servelab import GROUP, VERSION
from servelab import status as st
from servelab.api import QuantJobSpec, QuantJobStatus, ServeBenchmarkSpec, ServeBenchmarkStatus
from servelab.controller import metrics
from servelab.controller.kube import Kube, load_config
from servelab.controller.reconcile import Decision, decide_benchmark, decide_quantjob
from servelab.controller.render import Owner
from servelab.controller.settings import Settings
from servelab.engines import ServedModel
from servelab.plan import compile_benchmark, compile_quantjob

SETTINGS = Settings.from_env()
_state: dict[str, Any] = {}


def needs_work(body: kopf.Body, **_: Any) -> bool:
    status = body.get("status") or {}
    if status.get("observedGeneration") != body.get("metadata", {}).get("generation"):
        return True
    return status.get("phase") not in ("Succeeded", "Failed", "Waiting")


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, logger: kopf.Logger, **_: Any) -> None:
    settings.persistence.finalizer = SETTINGS.finalizer
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=SETTINGS.prefix)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=SETTINGS.prefix, key="last-handled"
    )
    settings.watching.server_timeout = SETTINGS.server_timeout
    settings.watching.client_timeout = SETTINGS.client_timeout
    settings.networking.request_timeout = SETTINGS.request_timeout
    settings.queueing.worker_limit = SETTINGS.worker_limit
    settings.posting.level = 20  # INFO and above become Kubernetes events
    _state["kube"] = Kube(load_config(), SETTINGS)
    if SETTINGS.metrics_port and "metrics" not in _state:
        from prometheus_client import start_http_server

        server, thread = start_http_server(SETTINGS.metrics_port, registry=metrics.REGISTRY)
        _state["metrics"] = (server, thread)
        logger.info(f"metrics on :{SETTINGS.metrics_port}/metrics")


@kopf.on.login()
def login(**kwargs: Any) -> Any:
    """In a pod: the service account; elsewhere: $KUBECONFIG as it is now (client-file certificates,
    tokens), read at login time rather than when a client library was first imported."""
    return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)


@kopf.on.cleanup()
async def cleanup(**_: Any) -> None:
    server = _state.pop("metrics", None)
    if server:
        server[0].shutdown()
    kube = _state.pop("kube", None)
    if kube:
        kube.api.close()


def _owner(kind: str, body: kopf.Body) -> Owner:
    meta = body["metadata"]
    return Owner(kind, meta["name"], meta["namespace"], meta["uid"], int(meta.get("generation") or 1))


def _status_patch(status: ServeBenchmarkStatus | QuantJobStatus) -> dict[str, Any]:
    """The whole status as a merge patch: fields that became empty are deleted explicitly."""
    wire = status.to_wire()
    for field in type(status).model_fields.values():
        key = field.alias or ""
        if key and key not in wire:
            wire[key] = None
    return wire


def _emit(body: kopf.Body, decision: Decision) -> None:
    for type_, reason, message in decision.events:
        kopf.event(body, type=type_, reason=reason, message=message[:1000])


async def _invalid(kind: str, body: kopf.Body, patch: kopf.Patch, err: ValidationError) -> None:
    status_cls = ServeBenchmarkStatus if kind == "ServeBenchmark" else QuantJobStatus
    status = status_cls()
    msg = "; ".join(f"spec.{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
    st.fail(status, "InvalidSpec", msg, int(body["metadata"].get("generation") or 1))
    patch.status.update(_status_patch(status))
    kopf.event(body, type="Warning", reason="InvalidSpec", message=msg[:1000])


async def _reconcile(kind: str, body: kopf.Body, patch: kopf.Patch) -> None:
    """Observe, decide (pure), apply, write status: the same for both kinds."""
    t0 = time.monotonic()
    try:
        spec: ServeBenchmarkSpec | QuantJobSpec = (
            ServeBenchmarkSpec if kind == "ServeBenchmark" else QuantJobSpec
        ).model_validate(body["spec"])
    except ValidationError as err:
        await _invalid(kind, body, patch, err)
        return
    owner = _owner(kind, body)
    kube: Kube = _state["kube"]
    status = dict(body.get("status") or {})
    try:
        if isinstance(spec, ServeBenchmarkSpec):
            steps = [s.id for s in compile_benchmark(spec, ServedModel("model"), "http://x", "/a").steps]
            ref = spec.quant_job_ref.name if spec.quant_job_ref else None
            decision = decide_benchmark(owner, spec, await kube.observe(owner, steps, status, ref), SETTINGS)
        else:
            steps = [s.id for s in compile_quantjob(spec, "m", "/o", "/a").steps]
            decision = decide_quantjob(owner, spec, await kube.observe(owner, steps, status), SETTINGS)
        await kube.apply(owner.namespace, decision)
    except Exception:
        metrics.reconciles.labels(kind, "error").inc()
        raise
    finally:
        metrics.reconcile_seconds.labels(kind).observe(time.monotonic() - t0)
    metrics.reconciles.labels(kind, "ok").inc()
    patch.status.update(_status_patch(decision.status))
    _emit(body, decision)


@kopf.timer(GROUP, VERSION, "servebenchmarks", interval=SETTINGS.interval, when=needs_work)
async def reconcile_servebenchmark(body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
    await _reconcile("ServeBenchmark", body, patch)


@kopf.timer(GROUP, VERSION, "quantjobs", interval=SETTINGS.interval, when=needs_work)
async def reconcile_quantjob(body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
    await _reconcile("QuantJob", body, patch)


@kopf.on.field(GROUP, VERSION, "quantjobs", field="status.phase")
async def quantjob_phase_changed(body: kopf.Body, new: Any, logger: kopf.Logger, **_: Any) -> None:
    if new in ("Succeeded", "Failed"):
        woken = await _state["kube"].wake_waiting(body["metadata"]["namespace"], body["metadata"]["name"])
        if woken:
            logger.info(f"QuantJob {new}: woke {', '.join(woken)}")


@kopf.on.event(GROUP, VERSION, "servebenchmarks")
def servebenchmark_metrics(type: str, body: kopf.Body, **_: Any) -> None:
    meta = body.get("metadata", {})
    if type == "DELETED":
        metrics.forget("ServeBenchmark", meta.get("namespace", ""), meta.get("name", ""))
    else:
        metrics.observe("ServeBenchmark", dict(body))


@kopf.on.event(GROUP, VERSION, "quantjobs")
def quantjob_metrics(type: str, body: kopf.Body, **_: Any) -> None:
    meta = body.get("metadata", {})
    if type == "DELETED":
        metrics.forget("QuantJob", meta.get("namespace", ""), meta.get("name", ""))
    else:
        metrics.observe("QuantJob", dict(body))
