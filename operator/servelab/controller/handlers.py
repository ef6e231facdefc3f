"""kopf handlers: thin wrappers that observe, call the pure decision functions, and apply.

Watch-driven. Each unfinished resource has one kopf daemon: it decides (with the decision core
`servelab.core` that `servelab run` also runs) when something it depends on changed, and otherwise sleeps.
What wakes it: a change of one of its children, seen by the child watches (`kube.ChildCache`, keyed by
the owner-uid label: no LIST per reconcile, no reads of results that did not change); a change of the
QuantJob a benchmark waits for, or of a QuantJob's scoring ServeBenchmarks (kopf indexes kept by the
watches of servelab's own resources); a change of its own spec; its next deadline (what only time
changes: timeouts, grace periods; the decision's `wake_after`); and a slow safety resync
(`SETTINGS.resync`, 300 s) in case an event was missed, which decides from memory and writes nothing
unless the status changed. Finished resources have no daemon; a spec change (new generation) starts one again.

Decisions never act on stale status: the status a write stored (the patch's answer) is what the next
decision starts from, until the watch has delivered it; every write is guarded by the resourceVersion
it was decided from (a conflict decides again from the newer object); Events are posted only with the
status write or the creation they describe, so a decision repeated from an old view posts nothing.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import os
import time
from dataclasses import dataclass, field
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
from servelab.core import Decision, DeleteServer, Owner, decide

SETTINGS = Settings.from_env()
_state: dict[str, Any] = {}
log = logging.getLogger("servelab.operator")


@dataclass
class OwnerLoop:
    """What the daemon of one resource keeps between its reconciles."""

    wake: asyncio.Event = field(default_factory=asyncio.Event)
    stored: dict[str, Any] | None = None  # the object as our last status write stored it
    superseded: set[str] = field(default_factory=set)  # resourceVersions older than `stored`
    wrote: list[str] = field(default_factory=list)  # resourceVersions of our last writes
    waits_for: tuple[str, str] | None = None  # (namespace, QuantJob) it reads


_owners: dict[str, OwnerLoop] = {}  # by uid, while its daemon runs
_waiters: dict[tuple[str, str], set[str]] = {}  # (namespace, QuantJob name) -> uids of benchmarks reading it
_background: set[asyncio.Future[None]] = set()


def _notify(uid: str | None) -> None:
    loop = _owners.get(uid or "")
    if loop is not None:
        loop.wake.set()


def needs_work(body: kopf.Body, **_: Any) -> bool:
    status = body.get("status") or {}
    if status.get("observedGeneration") != body.get("metadata", {}).get("generation"):
        return True
    return status.get("phase") not in ("Succeeded", "Failed")


# ---- indexes of servelab's own resources (kept by kopf's watches of them) ------------------------------
def _snapshot(body: kopf.Body) -> dict[str, Any]:
    meta = body.get("metadata", {})
    return {
        "metadata": {k: copy.deepcopy(meta.get(k)) for k in ("name", "namespace", "uid", "labels", "ownerReferences")},
        "spec": copy.deepcopy(dict(body.get("spec") or {})),
        "status": copy.deepcopy(dict(body.get("status") or {})),
    }  # fmt: skip


@kopf.index(GROUP, VERSION, "quantjobs")
def quantjob_bodies(namespace: str | None, name: str, body: kopf.Body, **_: Any) -> dict[Any, Any]:
    """(namespace, name) -> the QuantJob's spec and status as the watch last saw them."""
    return {(namespace, name): _snapshot(body)}


@kopf.index(GROUP, VERSION, "servebenchmarks", labels={f"{SETTINGS.prefix}/owner-uid": kopf.PRESENT})
def scoring_runs(body: kopf.Body, **_: Any) -> dict[Any, Any]:
    """owner uid -> the ServeBenchmarks a QuantJob made to score its outputs."""
    return {body["metadata"]["labels"][f"{SETTINGS.prefix}/owner-uid"]: _snapshot(body)}


# ---- operator lifecycle -----------------------------------------------------------------------------------
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
    # no limit on kopf's per-object workers: with indexes, each waits until every object is indexed, so a
    # limit below the number of objects would deadlock the start (the API calls are bounded by Kube's pool)
    settings.queueing.worker_limit = None
    # kopf's own log lines stay in the log; Events are what servelab posts (kopf.event), and warnings
    settings.posting.level = logging.WARNING
    _owners.clear()
    _waiters.clear()
    loop = asyncio.get_running_loop()

    def changed(uid: str) -> None:  # from the watch threads
        loop.call_soon_threadsafe(_notify, uid)

    kube = Kube(
        load_config(),
        SETTINGS,
        on_change=changed,
        watch_api=load_config(pool=8),
        workers=SETTINGS.worker_limit,
    )
    _state["kube"] = kube
    # `servelab operator` says what it watches; `kopf run -n ...` watches a namespace once it holds work
    scope = os.environ.get("SERVELAB_WATCH_NAMESPACES")
    if scope == "*":
        kube.cache.watch(None)
    elif scope:
        for ns in scope.split(","):
            kube.cache.watch(ns)
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
        await asyncio.to_thread(kube.close)


# ---- reconciling ------------------------------------------------------------------------------------------
class Conflict(Exception):
    """The object changed since the decision was made from it (HTTP 409): decide again."""

    def __init__(self, resource_version: str | None) -> None:
        super().__init__(resource_version)
        self.resource_version = resource_version


def _owner(kind: str, body: kopf.Body) -> Owner:
    meta = body["metadata"]
    return Owner(kind, meta["name"], meta["namespace"], meta["uid"], int(meta.get("generation") or 1))


def _status_patch(status: ServeBenchmarkStatus | QuantJobStatus) -> dict[str, Any]:
    """The whole status as a merge patch: fields that became empty are deleted explicitly."""
    wire = status.to_wire()
    for f in type(status).model_fields.values():
        key = f.alias or ""
        if key and key not in wire:
            wire[key] = None
    return wire


def _material(status: dict[str, Any]) -> dict[str, Any]:
    """The status without what only the clock changes (the server time held so far of a running server):
    a resync that finds nothing else changed writes nothing. Written with every other change, and final
    when the server is released."""
    timing = status.get("timing")
    if not isinstance(timing, dict) or timing.get("serverReleasedAt"):
        return status
    return {
        **status,
        "timing": {k: v for k, v in timing.items() if k not in ("serverHeldSeconds", "dutyCycle")},
    }


def _current(body: kopf.Body, me: OwnerLoop) -> tuple[dict[str, Any], str | None]:
    """The status and resourceVersion to decide from: our last write's, while the watch lags behind it."""
    rv = body["metadata"].get("resourceVersion")
    if me.stored is not None and rv in me.superseded:
        return dict(me.stored.get("status") or {}), me.stored["metadata"].get("resourceVersion")
    me.stored, me.superseded = None, set()
    return dict(body.get("status") or {}), rv


def _emit(body: kopf.Body, events: list[tuple[str, str, str]]) -> None:
    for type_, reason, message in events:
        kopf.event(body, type=type_, reason=reason, message=message[:1000])


def _spec(kind: str, body: kopf.Body) -> ServeBenchmarkSpec | QuantJobSpec:
    """The validated spec, each reconcile (tens of microseconds; kept per live resource it cost about
    5 KB each, 10 MB at 2,000: docs/scale.md)."""
    cls = ServeBenchmarkSpec if kind == "ServeBenchmark" else QuantJobSpec
    return cls.model_validate(dict(body["spec"]))


def _teardown_on_failure(spec: ServeBenchmarkSpec | QuantJobSpec, decision: Decision) -> None:
    """What the core does when it fails a run itself: the server goes unless the policy keeps it."""
    if isinstance(spec, ServeBenchmarkSpec) and spec.server_policy == "Delete" and not spec.endpoint:
        decision.status.server = None  # type: ignore[union-attr]
        decision.actions = [DeleteServer()]
    else:
        decision.actions = []


async def _write(owner: Owner, me: OwnerLoop, status: dict[str, Any], rv: str | None) -> None:
    kube: Kube = _state["kube"]
    try:
        stored = await kube.write_status(owner, status, rv)
    except ApiException as err:
        if err.status == 409:  # another writer changed it since we observed: decide again
            raise Conflict(rv) from err
        raise
    if rv:
        me.superseded.add(rv)
    # what the next decision needs of it (not its managedFields: thousands of these are held)
    written_rv = stored["metadata"].get("resourceVersion", "")
    me.stored = {"metadata": {"resourceVersion": written_rv}, "status": stored.get("status") or {}}
    me.wrote = [*me.wrote[-3:], written_rv]


async def _write_decided(body: kopf.Body, owner: Owner, me: OwnerLoop, patch: dict[str, Any],
                         decided_from: dict[str, Any], rv: str | None) -> None:  # fmt: skip
    """Write a decided status. When the object changed meanwhile (409) but neither its spec nor its status
    did (kopf's finalizer, a label), the decision still holds: it is written on top of the newer object
    (what was created for it is announced with it). Otherwise the decision is dropped (Conflict)."""
    for _ in range(3):
        try:
            await _write(owner, me, patch, rv)
            return
        except Conflict:
            await _changed_since(body, rv, 2.0)
            now_status = {k: v for k, v in (body.get("status") or {}).items() if k != "kopf"}
            if int(body["metadata"].get("generation") or 1) != owner.generation or now_status != decided_from:
                raise
            rv = body["metadata"].get("resourceVersion")
    raise Conflict(rv)


async def _reconcile(kind: str, body: kopf.Body, me: OwnerLoop, indexes: dict[str, Any]) -> float | None:
    """Observe (memory), decide (pure, shared with `servelab run`), apply, write status; returns when the
    decision wants to look again without a change (None: at the next resync)."""
    kube: Kube = _state["kube"]
    owner = _owner(kind, body)
    status, rv = _current(body, me)
    stored = {k: v for k, v in status.items() if k != "kopf"}
    try:
        spec = _spec(kind, body)
    except ValidationError as err:
        failed = (ServeBenchmarkStatus if kind == "ServeBenchmark" else QuantJobStatus)()
        msg = "; ".join(f"spec.{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
        st.fail(failed, "InvalidSpec", msg, owner.generation)
        await _write(owner, me, _status_patch(failed), rv)
        kopf.event(body, type="Warning", reason="InvalidSpec", message=msg[:1000])
        return None
    quantjob = None
    if isinstance(spec, ServeBenchmarkSpec) and spec.quant_job_ref:
        key = (owner.namespace, spec.quant_job_ref.name)
        if me.waits_for != key:
            _unwait(owner.uid, me)
            me.waits_for = key
            _waiters.setdefault(key, set()).add(owner.uid)
        found = list(indexes["quantjob_bodies"].get(key, []))
        quantjob = found[0] if found else None
    benchmarks = list(indexes["scoring_runs"].get(owner.uid, [])) if kind == "QuantJob" else None
    baseline = spec.baseline if isinstance(spec, ServeBenchmarkSpec) else None
    observed, invalid = await kube.observe(owner, stored, quantjob, baseline, benchmarks)
    decision: Decision = decide(owner, spec, observed, cluster_site(SETTINGS))
    if invalid and decision.status.phase not in ("Succeeded", "Failed"):
        # a result ConfigMap too large or not a JSON object: nothing of it reaches status
        message = "; ".join(invalid)
        st.fail(decision.status, "InvalidResult", message, owner.generation)
        decision.events = [("Warning", "InvalidResult", message)]
        _teardown_on_failure(spec, decision)
    created = 0
    teardown = _teardown_after_write(decision)
    try:
        created = await kube.apply(owner, spec, decision)
    except ChildRefused as err:  # permanent for this spec: say so instead of retrying
        st.fail(decision.status, "ChildRefused", str(err), owner.generation)
        decision.event("ChildRefused", str(err), "Warning")
        _teardown_on_failure(spec, decision)
        decision.stale, decision.events = [], [e for e in decision.events if e[1] == "ChildRefused"]
        teardown = _teardown_after_write(decision)

    async def finish() -> None:
        written = False
        if _material(decision.status.to_wire()) != _material(stored):
            await _write_decided(body, owner, me, _status_patch(decision.status), stored, rv)
            written = True
        if written or created:  # posted once: with the status or the children that go with them
            _emit(body, decision.events)
        if teardown is not None:
            await kube.apply(owner, spec, teardown)

    # what was applied is written and announced even if the daemon is being stopped meanwhile (a final
    # status stops it): the write, its Events and the teardown are not cancelled halfway
    await asyncio.shield(finish())
    return decision.wake_after


def _teardown_after_write(decision: Decision) -> Decision | None:
    """A finished run's server is deleted after its final status is stored, never before: an operator
    killed in between would otherwise find a run whose server is gone but whose status says it still
    needs one, and start it again. (Killed after the write, the finished resource's server is deleted
    by `_release_server` when the operator starts again.)"""
    if decision.status.phase not in ("Succeeded", "Failed"):
        return None
    deletes = [a for a in decision.actions if isinstance(a, DeleteServer)]
    if not deletes:
        return None
    decision.actions = [a for a in decision.actions if not isinstance(a, DeleteServer)]
    return Decision(status=decision.status, actions=list(deletes))


def _unwait(uid: str, me: OwnerLoop) -> None:
    if me.waits_for is not None:
        waiting = _waiters.get(me.waits_for)
        if waiting is not None:
            waiting.discard(uid)
            if not waiting:
                del _waiters[me.waits_for]
        me.waits_for = None


async def _changed_since(body: kopf.Body, rv: str | None, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while body["metadata"].get("resourceVersion") == rv and time.monotonic() < deadline:
        await asyncio.sleep(0.05)


async def _loop(kind: str, body: kopf.Body, stopped: kopf.DaemonStopped, logger: kopf.Logger,
                indexes: dict[str, Any]) -> None:  # fmt: skip
    uid, ns = body["metadata"]["uid"], body["metadata"]["namespace"]
    me = _owners[uid] = OwnerLoop()
    kube: Kube = _state["kube"]

    async def until_stopped() -> None:
        await stopped.wait()

    stop = asyncio.ensure_future(until_stopped())
    failures = 0
    try:
        await kube.cache.wait_synced(ns)  # decide only from a complete view of the children
        while not stopped:
            me.wake.clear()
            began = time.monotonic()
            timeout: float = SETTINGS.resync
            outcome = "ok"
            try:
                wake_after = await _reconcile(kind, body, me, indexes)
                failures = 0
                if wake_after is not None:
                    timeout = min(timeout, wake_after)
            except Conflict as conflict:
                outcome = "conflict"
                await _changed_since(body, conflict.resource_version, 2.0)
                me.wake.set()
            except Exception as err:  # the apiserver away, a timeout: again with backoff, never a crash loop
                outcome = "error"
                failures += 1
                timeout = min(SETTINGS.resync, 0.5 * 2**failures)
                logger.warning(f"reconcile failed ({failures}x), again in {timeout:.1f}s: {err}")
            finally:
                metrics.reconciles.labels(kind, outcome).inc()
                metrics.reconcile_seconds.labels(kind).observe(time.monotonic() - began)
            if not me.wake.is_set():
                wake = asyncio.ensure_future(me.wake.wait())
                await asyncio.wait({wake, stop}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
                wake.cancel()
            rest = SETTINGS.interval - (time.monotonic() - began)
            if rest > 0 and not stopped:  # a burst of child events is decided once
                await asyncio.sleep(rest)
    finally:
        stop.cancel()
        _unwait(uid, me)
        if _owners.get(uid) is me:
            del _owners[uid]


@kopf.daemon(
    GROUP, VERSION, "servebenchmarks", when=needs_work, cancellation_backoff=5.0, cancellation_timeout=10.0
)
async def reconcile_servebenchmark(body: kopf.Body, stopped: kopf.DaemonStopped, logger: kopf.Logger,
                                   **kwargs: Any) -> None:  # fmt: skip
    await _loop("ServeBenchmark", body, stopped, logger, kwargs)


@kopf.daemon(
    GROUP, VERSION, "quantjobs", when=needs_work, cancellation_backoff=5.0, cancellation_timeout=10.0
)
async def reconcile_quantjob(body: kopf.Body, stopped: kopf.DaemonStopped, logger: kopf.Logger,
                             **kwargs: Any) -> None:  # fmt: skip
    await _loop("QuantJob", body, stopped, logger, kwargs)


# ---- what else a change of servelab's resources wakes, and the metrics ------------------------------------
def _written_by_us(uid: str, body: kopf.Body) -> bool:
    """The event is our own status write: the watch has caught up with it, the copy kept is not needed."""
    me = _owners.get(uid)
    ours = me is not None and body["metadata"].get("resourceVersion") in me.wrote
    rv = body["metadata"].get("resourceVersion")
    if (
        me is not None
        and ours
        and me.stored is not None
        and me.stored["metadata"].get("resourceVersion") == rv
    ):
        me.stored, me.superseded = None, set()
    return ours


def _finished_with_server(body: kopf.Body) -> bool:
    """A finished run whose policy deletes its server (the server may still exist: see _release_server)."""
    status, spec = body.get("status") or {}, body.get("spec") or {}
    phase = status.get("phase")
    if phase not in ("Succeeded", "Failed") or status.get("observedGeneration") != body["metadata"].get(
        "generation"
    ):
        return False
    policy = spec.get("serverPolicy") or "Delete"
    return not spec.get("endpoint") and (
        policy == "Delete" or (policy == "KeepOnFailure" and phase == "Succeeded")
    )


async def _release_server(body: kopf.Body) -> None:
    """Delete the server of a finished run if it still exists (its operator was killed between the
    final status write and the teardown): read from the child watches, so a no-op costs no request."""
    kube: Kube | None = _state.get("kube")
    if kube is None:
        return
    owner = _owner("ServeBenchmark", body)
    await kube.cache.wait_synced(owner.namespace)
    current = str(owner.generation)
    if any(
        c.kind == "Deployment" and c.generation == current and not c.deleting
        for c in kube.cache.children(owner.uid)
    ):
        spec = ServeBenchmarkSpec.model_validate(dict(body["spec"]))
        await kube.apply(owner, spec, Decision(status=ServeBenchmarkStatus(), actions=[DeleteServer()]))


@kopf.on.event(GROUP, VERSION, "servebenchmarks")
async def servebenchmark_changed(type: str, body: kopf.Body, **_: Any) -> None:
    meta = body.get("metadata", {})
    if not _written_by_us(meta.get("uid", ""), body):
        _notify(meta.get("uid"))  # its own spec (or anything but our write) changed
    if type != "DELETED" and meta.get("uid") not in _owners and _finished_with_server(body):
        task = asyncio.ensure_future(_release_server(body))
        _background.add(task)
        task.add_done_callback(_background.discard)
    _notify((meta.get("labels") or {}).get(f"{SETTINGS.prefix}/owner-uid"))  # a QuantJob's scoring run
    if type == "DELETED":
        metrics.forget("ServeBenchmark", meta.get("namespace", ""), meta.get("name", ""))
    else:
        metrics.observe("ServeBenchmark", dict(body))


@kopf.on.event(GROUP, VERSION, "quantjobs")
async def quantjob_changed(type: str, body: kopf.Body, **_: Any) -> None:
    meta = body.get("metadata", {})
    if not _written_by_us(meta.get("uid", ""), body):
        _notify(meta.get("uid"))
    for uid in list(_waiters.get((meta.get("namespace", ""), meta.get("name", "")), ())):
        _notify(uid)  # the benchmarks that read it
    if type == "DELETED":
        metrics.forget("QuantJob", meta.get("namespace", ""), meta.get("name", ""))
    else:
        metrics.observe("QuantJob", dict(body))
