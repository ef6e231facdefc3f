"""kopf handlers: thin wrappers that observe, call the pure decision functions, and apply.

One timer per unfinished resource is the reconcile loop (level-triggered: every tick decides from
what exists, with the decision core `servelab.core` that `servelab run` also runs). Finished resources
are not polled; a spec change (new generation) restarts the loop. A benchmark waiting for a QuantJob
checks the QuantJob's phase in an in-memory index (kept by the QuantJob watch) on each tick, so it
wakes within one interval of the QuantJob finishing without any API call while it waits, and nothing
writes into another resource's status. Status is written only when it changed, guarded by the
resourceVersion the decision was made from.
"""

from __future__ import annotations

import time
from typing import Any

import kopf
from kubernetes.client.rest import ApiException
from pydantic import ValidationError

from servelab import GROUP, VERSION
from servelab import status as st
from servelab.api import QuantJobSpec, QuantJobStatus, ServeBenchmarkSpec, ServeBenchmarkStatus
from servelab.controller import metrics
from servelab.controller.kube import ChildRefused, Kube, cluster_site, load_config
from servelab.controller.settings import Settings
from servelab.core import Decision, Owner, decide

SETTINGS = Settings.from_env()
_state: dict[str, Any] = {}


def needs_work(body: kopf.Body, **_: Any) -> bool:
    status = body.get("status") or {}
    if status.get("observedGeneration") != body.get("metadata", {}).get("generation"):
        return True
    return status.get("phase") not in ("Succeeded", "Failed")


@kopf.index(GROUP, VERSION, "quantjobs")
def quantjob_phases(namespace: str | None, name: str, body: kopf.Body, **_: Any) -> dict[Any, Any]:
    """(namespace, name) -> the QuantJob's phase, as the watch last saw it."""
    return {(namespace, name): (body.get("status") or {}).get("phase")}


def _still_waiting(body: kopf.Body, phases: kopf.Index[Any, Any]) -> bool:
    """A Waiting benchmark whose QuantJob is, by the index, still neither finished nor gone."""
    status = body.get("status") or {}
    if status.get("phase") != "Waiting":
        return False
    if status.get("observedGeneration") != body.get("metadata", {}).get("generation"):
        return False
    ref = (body.get("spec", {}).get("quantJobRef") or {}).get("name")
    seen = list(phases.get((body["metadata"]["namespace"], ref), []))
    return bool(seen) and all(phase not in ("Succeeded", "Failed") for phase in seen)


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


def _emit(body: kopf.Body, events: list[tuple[str, str, str]]) -> None:
    for type_, reason, message in events:
        kopf.event(body, type=type_, reason=reason, message=message[:1000])


async def _invalid(kind: str, body: kopf.Body, patch: kopf.Patch, err: ValidationError) -> None:
    status_cls = ServeBenchmarkStatus if kind == "ServeBenchmark" else QuantJobStatus
    status = status_cls()
    msg = "; ".join(f"spec.{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
    st.fail(status, "InvalidSpec", msg, int(body["metadata"].get("generation") or 1))
    patch.status.update(_status_patch(status))
    kopf.event(body, type="Warning", reason="InvalidSpec", message=msg[:1000])


async def _reconcile(kind: str, body: kopf.Body, patch: kopf.Patch) -> None:
    """Observe, decide (pure, shared with `servelab run`), apply, write status: the same for both kinds."""
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
    stored = {k: v for k, v in (body.get("status") or {}).items() if k != "kopf"}
    ref = spec.quant_job_ref.name if isinstance(spec, ServeBenchmarkSpec) and spec.quant_job_ref else None
    try:
        baseline = spec.baseline if isinstance(spec, ServeBenchmarkSpec) else None
        observed = await kube.observe(owner, stored, ref, baseline)
        decision: Decision = decide(owner, spec, observed, cluster_site(SETTINGS))
        try:
            await kube.apply(owner, spec, decision)
        except ChildRefused as err:  # permanent for this spec: say so instead of retrying every tick
            st.fail(decision.status, "ChildRefused", str(err), owner.generation)
            decision.event("ChildRefused", str(err), "Warning")
        wire = decision.status.to_wire()
        if wire != stored:
            try:
                await kube.write_status(
                    owner, _status_patch(decision.status), body["metadata"].get("resourceVersion")
                )
            except ApiException as err:
                if err.status == 409:  # another writer changed it since we observed: decide again
                    raise kopf.TemporaryError("status changed meanwhile; reconciling again", delay=1) from err
                raise
    except Exception:
        metrics.reconciles.labels(kind, "error").inc()
        raise
    finally:
        metrics.reconcile_seconds.labels(kind).observe(time.monotonic() - t0)
    metrics.reconciles.labels(kind, "ok").inc()
    _emit(body, decision.events)  # only once the status that goes with them is stored


@kopf.timer(GROUP, VERSION, "servebenchmarks", interval=SETTINGS.interval, when=needs_work)
async def reconcile_servebenchmark(body: kopf.Body, patch: kopf.Patch, **kwargs: Any) -> None:
    quantjob_phases: kopf.Index[Any, Any] = kwargs["quantjob_phases"]
    if _still_waiting(body, quantjob_phases):
        return  # nothing to decide until the QuantJob finishes: no API call while waiting
    await _reconcile("ServeBenchmark", body, patch)


@kopf.timer(GROUP, VERSION, "quantjobs", interval=SETTINGS.interval, when=needs_work)
async def reconcile_quantjob(body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
    await _reconcile("QuantJob", body, patch)


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
