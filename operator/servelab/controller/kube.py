"""The operator's only contact with the API server: watch children, apply decisions, write status.

Children are observed from watches, not listed per reconcile: one list-then-watch loop per kind (Jobs,
Deployments, server pods, result ConfigMaps, and the `FailedCreate` Events of Jobs), selected on the
server by servelab's labels, cluster-wide or per watched namespace, keeps a compact summary of every
child keyed by its owner's uid (`ChildCache`). A change wakes the owner (`on_change`); observing an owner
reads memory only. A watch that breaks resumes from its last resourceVersion, and one that is too old
(410 Gone, e.g. after an apiserver restart) lists again and replaces what it held, so a child deleted
meanwhile is forgotten too. What the operator creates is put into the cache at once (what it just made
exists, whatever the watch has delivered yet), so a reconcile right after never creates it twice.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kubernetes import client, config
from kubernetes.client.rest import ApiException

from servelab import GROUP, VERSION
from servelab.api.quantjob import QuantJobSpec
from servelab.api.servebenchmark import ServeBenchmarkSpec, ServerFootprint
from servelab.api.verdict import Baseline
from servelab.controller import render
from servelab.controller.render import Obj
from servelab.controller.settings import Settings
from servelab.core import Decision, JobState, Observed, Owner, ServerState, Site

log = logging.getLogger("servelab.kube")

#: A result ConfigMap's payload larger than this is refused (the run fails with InvalidResult) unread.
MAX_RESULT_BYTES = 900 * 1024
#: Pod creation refusals that retrying cannot fix (a quota, Pod Security, a LimitRange): the step or the
#: server fails with the apiserver's message. Others (a ServiceAccount not yet in the admission cache) are
#: transient: the Job and ReplicaSet controllers retry them.
PERMANENT_REFUSALS = (
    "exceeded quota",
    "violates PodSecurity",
    "must specify",
    "forbidden: maximum",
    "forbidden: minimum",
)


MADE_CAP = 30_000  # RBAC objects remembered as made (3 per run; the oldest are forgotten first)


class ChildRefused(Exception):
    """The apiserver refused a child object (invalid, forbidden, over quota): permanent for this spec."""

    def __init__(self, kind: str, name: str, status: int, message: str) -> None:
        super().__init__(f"{kind} {name} refused by the apiserver (HTTP {status}): {message}")
        self.kind, self.name, self.status = kind, name, status


class InvalidResultData(Exception):
    """A result ConfigMap that cannot be read as a result (too large, not JSON, not an object)."""


def result_from_configmap(cm: dict[str, Any]) -> dict[str, Any] | None:
    data = (cm.get("data") or {}).get(render.RESULT_KEY)
    return parse_result(data) if data else None


def parse_result(data: str) -> dict[str, Any]:
    if len(data.encode()) > MAX_RESULT_BYTES:
        raise InvalidResultData(f"{len(data.encode())} bytes, over the {MAX_RESULT_BYTES}-byte cap")
    try:
        parsed = json.loads(data)
    except ValueError as err:
        raise InvalidResultData(f"not JSON: {err}") from None
    if not isinstance(parsed, dict):
        raise InvalidResultData(f"a JSON {type(parsed).__name__}, not an object")
    return parsed


BASELINE_KEY = "baseline.json"


def saved_baseline(data: dict[str, str]) -> dict[str, Any] | None:
    """A result saved by `servelab baseline save`: {"spec", "status"} of the run, as JSON."""
    raw = data.get(BASELINE_KEY)
    if not raw:
        return None
    try:
        body: dict[str, Any] = json.loads(raw)
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def cluster_site(settings: Settings) -> Site:
    """Servers listen on their pod's own IP (downward API), where probes and the Service reach them."""
    return Site(artifacts=render.ARTIFACTS, server_host="$(POD_IP)", server_url=render.server_url,
                images=settings.image, quantjob_grace_seconds=settings.quantjob_grace_seconds)  # fmt: skip


def load_config(pool: int = 32) -> client.ApiClient:
    cfg = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=cfg)
    except config.ConfigException:
        # read $KUBECONFIG now: the client library reads it once, when it is first imported
        config.load_kube_config(config_file=os.environ.get("KUBECONFIG") or None, client_configuration=cfg)
    cfg.connection_pool_maxsize = pool
    return client.ApiClient(cfg)


def _time(value: str | None) -> datetime | None:
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC) if value else None


def _permanent(message: str) -> bool:
    return any(p in message for p in PERMANENT_REFUSALS)


# ---- what is kept of each child -----------------------------------------------------------------------
@dataclass(slots=True)
class Child:
    kind: str  # Job | ConfigMap | Deployment | Pod
    name: str
    namespace: str
    uid: str
    owner: str  # the owner-uid label
    owned: bool  # an owner reference to that uid (pods: owned through their ReplicaSet)
    generation: str
    step: str
    component: str
    deleting: bool
    summary: Any  # kind-specific, see _summarize


def _job_summary(obj: dict[str, Any]) -> JobState:
    status = obj.get("status") or {}
    conds = {c.get("type"): c for c in status.get("conditions") or []}
    failed = conds.get("Failed")
    return JobState(
        name=obj["metadata"]["name"], active=bool(status.get("active")),
        succeeded=bool(status.get("succeeded")) and "Complete" in conds,
        failed=failed is not None and failed.get("status") == "True",
        message=f"{failed.get('reason')}: {failed.get('message')}" if failed is not None else "",
        completed_at=_time(status.get("completionTime")),
    )  # fmt: skip


@dataclass(slots=True)
class PodSummary:
    node: str | None
    phase: str | None
    unschedulable: str | None
    ready: bool
    failed: str | None
    load_seconds: float | None = None  # the engine container's start to the pod's Ready condition
    model_report: dict[str, Any] | None = None  # the model step's termination message (size on disk)


_WAITING_FAILURES = ("CrashLoopBackOff", "ErrImagePull", "ImagePullBackOff", "CreateContainerConfigError",
                     "InvalidImageName")  # fmt: skip


def _disrupted(obj: dict[str, Any]) -> bool:
    """A pod on its way out for a reason of the cluster's (its node gone, evicted, preempted): its ReplicaSet
    replaces it, so it says nothing about the server (a pod that failed by itself does)."""
    conds = (obj.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "DisruptionTarget" and c.get("status") == "True" for c in conds)


def _pod_summary(obj: dict[str, Any]) -> PodSummary:
    status, spec = obj.get("status") or {}, obj.get("spec") or {}
    conds = {c.get("type"): c for c in status.get("conditions") or []}
    sched = conds.get("PodScheduled")
    unschedulable = None
    if sched is not None and sched.get("status") == "False":
        unschedulable = f"{sched.get('reason')}: {sched.get('message')}"
    ready = conds.get("Ready")
    failed = None
    phase = status.get("phase")
    for cs in status.get("containerStatuses") or []:
        state = cs.get("state") or {}
        waiting, term = state.get("waiting"), state.get("terminated")
        if waiting and waiting.get("reason") in _WAITING_FAILURES:
            failed = (
                f"container {cs.get('name')}: {waiting.get('reason')}: {waiting.get('message') or ''}".strip()
            )
        if term and phase in ("Failed", "Succeeded"):
            failed = f"container {cs.get('name')} exited with code {term.get('exitCode')}: {term.get('reason') or ''}".strip()
    report = None
    for cs in status.get("initContainerStatuses") or []:  # the model step (a ModelScope download)
        state = cs.get("state") or {}
        waiting, term = (
            state.get("waiting"),
            state.get("terminated") or (cs.get("lastState") or {}).get("terminated"),
        )
        if term and term.get("exitCode") == 0 and cs.get("name") == "model":
            try:
                report = json.loads(term.get("message") or "")
            except ValueError:
                report = None
        elif waiting and waiting.get("reason") in _WAITING_FAILURES:
            why = f": {term.get('message')}" if term and term.get("message") else ""
            failed = f"init container {cs.get('name')}: {waiting.get('reason')}{why}".strip()
    if phase == "Failed" and not failed:
        failed = f"server pod failed: {status.get('reason') or ''} {status.get('message') or ''}".strip()
    is_ready = ready is not None and ready.get("status") == "True"
    load = None
    engine = next((cs for cs in status.get("containerStatuses") or [] if cs.get("name") == "engine"), None)
    started = _time(((engine or {}).get("state") or {}).get("running", {}).get("startedAt"))
    became = _time(ready.get("lastTransitionTime")) if is_ready and ready is not None else None
    if started and became and became >= started and not (engine or {}).get("restartCount"):
        load = (became - started).total_seconds()
    return PodSummary(spec.get("nodeName"), phase, unschedulable, is_ready, failed, load,
                      report if isinstance(report, dict) else None)  # fmt: skip


def _footprint(s: PodSummary) -> ServerFootprint:
    """What the pod's status says of the model's load (the engine's log is not read: no pods/log right)."""
    fp = ServerFootprint()
    if s.load_seconds is not None:
        fp.load_seconds = s.load_seconds
        fp.load_source = "engine container start to the pod's Ready condition (1 s resolution)"
    if s.model_report:
        fp.model_bytes, fp.model_bytes_source = s.model_report.get("bytes"), s.model_report.get("source")
    return fp


def _deployment_summary(obj: dict[str, Any]) -> str | None:
    """A permanent refusal of the server's pods (ReplicaFailure: over a quota, Pod Security), else None."""
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == "ReplicaFailure" and c.get("status") == "True":
            message = str(c.get("message") or "")
            if _permanent(message):
                return f"{c.get('reason')}: {message}"
    return None


def _configmap_summary(obj: dict[str, Any]) -> str | None:
    """The raw result (parsed when observed: a few microseconds, and far smaller than parsed)."""
    data: str | None = (obj.get("data") or {}).get(render.RESULT_KEY)
    return data


# ---- watches ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class WatchKind:
    kind: str
    list_ns: Callable[..., Any]
    list_all: Callable[..., Any]
    label_selector: str = ""
    field_selector: str = ""


class _Gone(Exception):
    """The watch's resourceVersion is too old: list again."""


def _lines(resp: Any) -> Iterator[str]:
    """The lines of a streamed watch response (one JSON event each)."""
    buf = b""
    for chunk in resp.stream(amt=None, decode_content=False):
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            if line.strip():
                yield line.decode("utf-8")
    if buf.strip():
        yield buf.decode("utf-8")


class Watch:
    """List, then watch, one kind in one namespace (or all): a thread, until stopped."""

    def __init__(self, cache: ChildCache, what: WatchKind, namespace: str | None, timeout: int) -> None:
        self.cache, self.what, self.namespace, self.timeout = cache, what, namespace, timeout
        self.synced = threading.Event()
        self.rv: str | None = None
        self._stop = threading.Event()
        self._resp: Any = None
        self.relists = 0
        self.thread = threading.Thread(target=self._run, daemon=True,
                                       name=f"watch-{what.kind}-{namespace or 'all'}")  # fmt: skip

    def start(self) -> Watch:
        self.thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        resp = self._resp
        if resp is not None:
            with contextlib.suppress(Exception):  # already closed
                resp.shutdown()

    def _call(self, **kwargs: Any) -> Any:
        kwargs |= {"_preload_content": False}
        if self.what.label_selector:
            kwargs["label_selector"] = self.what.label_selector
        if self.what.field_selector:
            kwargs["field_selector"] = self.what.field_selector
        if self.namespace is None:
            return self.what.list_all(**kwargs)
        return self.what.list_ns(self.namespace, **kwargs)

    def _run(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            try:
                if self.rv is None:
                    self._list()
                self._watch()
                backoff = 0.5
            except _Gone:
                self.rv = None
                self.relists += 1
            except Exception as err:
                if self._stop.is_set():
                    break
                if isinstance(err, ApiException) and err.status == 410:
                    self.rv = None
                    self.relists += 1
                    continue
                log.warning("watch of %s in %s: %s; again in %.1fs", self.what.kind, self.namespace or "all namespaces",
                            str(err).splitlines()[0][:300], backoff)  # fmt: skip
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 30.0)

    def _list(self) -> None:
        items: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"limit": 500, "_request_timeout": 60}
            if token:
                kwargs["_continue"] = token
            resp = self._call(**kwargs)
            page = json.loads(resp.data)
            items += page.get("items") or []
            meta = page.get("metadata") or {}
            token = meta.get("continue")
            if not token:
                self.rv = meta.get("resourceVersion")
                break
        self.cache._replace(self.what.kind, self.namespace, items)
        self.synced.set()

    def _watch(self) -> None:
        resp = self._call(watch=True, resource_version=self.rv, allow_watch_bookmarks=True,
                          timeout_seconds=self.timeout, _request_timeout=(10, self.timeout + 30))  # fmt: skip
        self._resp = resp
        try:
            for line in _lines(resp):
                if self._stop.is_set():
                    return
                event = json.loads(line)
                kind, obj = event.get("type"), event.get("object") or {}
                if kind == "ERROR":
                    if obj.get("code") == 410:
                        raise _Gone()
                    raise ApiException(status=obj.get("code") or 500, reason=obj.get("message"))
                rv = (obj.get("metadata") or {}).get("resourceVersion")
                if kind == "BOOKMARK":
                    self.rv = rv or self.rv
                    continue
                if kind == "DELETED":
                    self.cache._remove(self.what.kind, obj)
                else:
                    self.cache._upsert(self.what.kind, obj)
                self.rv = rv or self.rv
        finally:
            self._resp = None
            resp.release_conn()


class ChildCache:
    """Every child servelab made, as its watches last saw it, by owner uid."""

    def __init__(self, api: client.ApiClient, settings: Settings, on_change: Callable[[str], None]) -> None:
        p = settings.prefix
        core, apps, batch = client.CoreV1Api(api), client.AppsV1Api(api), client.BatchV1Api(api)
        managed = "app.kubernetes.io/managed-by=servelab"
        self.kinds = [
            WatchKind("Job", batch.list_namespaced_job, batch.list_job_for_all_namespaces, f"{managed},{p}/owner-uid"),
            WatchKind("Deployment", apps.list_namespaced_deployment, apps.list_deployment_for_all_namespaces,
                      f"{managed},{p}/owner-uid"),
            WatchKind("Pod", core.list_namespaced_pod, core.list_pod_for_all_namespaces,
                      f"{managed},{p}/owner-uid,{p}/component=server"),
            WatchKind("ConfigMap", core.list_namespaced_config_map, core.list_config_map_for_all_namespaces,
                      f"{managed},{p}/owner-uid,{p}/result=true"),
            WatchKind("Event", core.list_namespaced_event, core.list_event_for_all_namespaces,
                      field_selector="involvedObject.kind=Job,reason=FailedCreate"),
        ]  # fmt: skip
        self.settings = settings
        self.on_change = on_change
        self.timeout = settings.server_timeout
        self._lock = threading.Lock()
        self._by_owner: dict[str, dict[tuple[str, str], Child]] = {}
        self._where: dict[tuple[str, str, str], str] = {}  # (kind, namespace, name) -> owner uid
        self._refused: dict[str, str] = {}  # Job uid -> why its pods are refused
        self._watches: dict[str | None, list[Watch]] = {}

    # ---- lifecycle --------------------------------------------------------------------------------
    def watch(self, namespace: str | None) -> list[Watch]:
        """Start the watches of a namespace (None: every namespace) unless they run."""
        with self._lock:
            found = self._watches.get(namespace) or self._watches.get(None)
            if found is None:
                found = [Watch(self, k, namespace, self.timeout).start() for k in self.kinds]
                self._watches[namespace] = found
            return found

    def synced(self, namespace: str) -> bool:
        with self._lock:
            found = self._watches.get(None) or self._watches.get(namespace)
        return found is not None and all(w.synced.is_set() for w in found)

    async def wait_synced(self, namespace: str) -> None:
        watches = self.watch(namespace)
        while not all(w.synced.is_set() for w in watches):
            await asyncio.sleep(0.05)

    def stop(self) -> None:
        with self._lock:
            watches = [w for ws in self._watches.values() for w in ws]
            self._watches.clear()
        for w in watches:
            w.stop()
        for w in watches:
            w.thread.join(5)

    @property
    def relists(self) -> int:
        with self._lock:
            return sum(w.relists for ws in self._watches.values() for w in ws)

    # ---- updates (watch threads; the operator's own creations) ---------------------------------------
    def _child(self, kind: str, obj: dict[str, Any]) -> Child | None:
        p = self.settings.prefix
        meta = obj.get("metadata") or {}
        labels = meta.get("labels") or {}
        owner = labels.get(f"{p}/owner-uid")
        if not owner:
            return None
        refs = meta.get("ownerReferences") or []
        summary: Any
        if kind == "Job":
            summary = _job_summary(obj)
        elif kind == "Pod":
            summary = _pod_summary(obj)
        elif kind == "Deployment":
            summary = _deployment_summary(obj)
        else:
            summary = _configmap_summary(obj)
        return Child(
            kind=kind, name=meta.get("name", ""), namespace=meta.get("namespace", ""), uid=meta.get("uid", ""),
            owner=owner, owned=kind == "Pod" or any(r.get("uid") == owner for r in refs),
            generation=labels.get(f"{p}/generation", ""), step=labels.get(f"{p}/step", ""),
            component=labels.get(f"{p}/component", ""), deleting=bool(meta.get("deletionTimestamp")) or _disrupted(obj),
            summary=summary,
        )  # fmt: skip

    def _refusal(self, obj: dict[str, Any]) -> tuple[str, str] | None:
        """A Job's FailedCreate Event -> (the Job's uid, its owner), for a Job of ours refused for good."""
        involved = obj.get("involvedObject") or {}
        message = str(obj.get("message") or "")
        if not involved.get("uid") or not _permanent(message):
            return None
        with self._lock:
            owner = self._where.get(("Job", involved.get("namespace", ""), involved.get("name", "")))
        return (str(involved["uid"]), owner) if owner else None

    def _upsert(self, kind: str, obj: dict[str, Any], only_new: bool = False) -> None:
        if kind == "Event":
            refused = self._refusal(obj)
            if refused is not None:
                with self._lock:
                    self._refused[refused[0]] = f"FailedCreate: {obj.get('message')}"
                self.on_change(refused[1])
            return
        child = self._child(kind, obj)
        if child is None:
            return
        with self._lock:
            children = self._by_owner.setdefault(child.owner, {})
            if only_new and (kind, child.name) in children:
                return
            children[(kind, child.name)] = child
            self._where[(kind, child.namespace, child.name)] = child.owner
        self.on_change(child.owner)

    def _remove(self, kind: str, obj: dict[str, Any]) -> None:
        meta = obj.get("metadata") or {}
        if kind == "Event":
            return
        with self._lock:
            owner = self._where.pop((kind, meta.get("namespace", ""), meta.get("name", "")), None)
            if owner is None:
                return
            children = self._by_owner.get(owner, {})
            gone = children.pop((kind, meta.get("name", "")), None)
            if gone is not None and kind == "Job":
                self._refused.pop(gone.uid, None)
            if not children:
                self._by_owner.pop(owner, None)
        self.on_change(owner)

    def _replace(self, kind: str, namespace: str | None, items: list[dict[str, Any]]) -> None:
        """A (re)list: what it holds of this kind and namespace is exactly what was listed."""
        if kind == "Event":  # refusals are forgotten with their Job
            for obj in items:
                self._upsert(kind, obj)
            return
        fresh = [c for c in (self._child(kind, o) for o in items) if c is not None]
        changed: set[str] = set()
        with self._lock:
            for (k, ns, name), owner in list(self._where.items()):
                if k == kind and (namespace is None or ns == namespace):
                    del self._where[(k, ns, name)]
                    children = self._by_owner.get(owner, {})
                    children.pop((kind, name), None)
                    if not children:
                        self._by_owner.pop(owner, None)
                    changed.add(owner)
            for child in fresh:
                self._by_owner.setdefault(child.owner, {})[(kind, child.name)] = child
                self._where[(kind, child.namespace, child.name)] = child.owner
                changed.add(child.owner)
        for owner in changed:
            self.on_change(owner)

    def created(self, obj: dict[str, Any]) -> None:
        """What the operator just created (or found already there) exists, whatever the watch says yet."""
        kind = obj.get("kind", "")
        if kind in ("Job", "Deployment"):
            self._upsert(kind, obj, only_new=True)

    def children(self, owner_uid: str) -> list[Child]:
        with self._lock:
            return list(self._by_owner.get(owner_uid, {}).values())

    def refused(self, job_uid: str) -> str | None:
        with self._lock:
            return self._refused.get(job_uid)

    def size(self) -> int:
        with self._lock:
            return len(self._where)


# ---- the API, and observing from the cache ---------------------------------------------------------
@dataclass
class NodeLabels:
    labels: dict[str, str]
    at: float = field(default_factory=time.monotonic)


class Kube:
    def __init__(self, api: client.ApiClient, settings: Settings, on_change: Callable[[str], None] | None = None,
                 watch_api: client.ApiClient | None = None, workers: int = 16) -> None:  # fmt: skip
        self.api = api
        self.settings = settings
        self.core = client.CoreV1Api(api)
        self.apps = client.AppsV1Api(api)
        self.batch = client.BatchV1Api(api)
        self.rbac = client.RbacAuthorizationV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        self.watch_api = watch_api or api
        self.cache = ChildCache(self.watch_api, settings, on_change or (lambda uid: None))
        self.pool = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="servelab-api")
        self._nodes: dict[str, NodeLabels] = {}
        # RBAC objects this process created or found (not watched): a later decision that renders them
        # again (the sweep's client first, then its server) sends no second create
        self._made: collections.OrderedDict[tuple[str, str, str, str], None] = collections.OrderedDict()
        self._made_lock = threading.Lock()

    def close(self) -> None:
        self.cache.stop()
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.api.close()
        if self.watch_api is not self.api:
            self.watch_api.close()

    async def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)

    # ---- observe ----------------------------------------------------------------------------------
    def observe_cached(self, owner: Owner, status: dict[str, Any], quantjob: dict[str, Any] | None = None,
                       benchmarks: list[dict[str, Any]] | None = None) -> tuple[Observed, list[str]]:  # fmt: skip
        """What the owner's children are, from the watches' memory. Also returns what is wrong with its
        published results (too large, not JSON): the run fails on those without reading them further."""
        p = self.settings.prefix
        obs = Observed(generation=owner.generation, status=status, now=datetime.now(UTC))
        current = str(owner.generation)
        invalid: list[str] = []
        deployments: list[Child] = []
        pods: list[Child] = []
        for child in self.cache.children(owner.uid):
            if child.kind == "Pod":
                pods.append(child)
                continue
            if not child.owned:
                continue
            if child.kind == "Job":
                if child.generation != current:
                    obs.stale.append(("batch/v1", "Job", child.name))
                    continue
                state: JobState = child.summary
                refusal = self.cache.refused(child.uid) if child.uid else None
                if refusal and not state.succeeded:
                    state = JobState(name=state.name, failed=True, message=refusal)
                obs.jobs[child.step] = state
            elif child.kind == "ConfigMap":
                if child.generation != current:
                    obs.stale.append(("v1", "ConfigMap", child.name))
                    continue
                if child.name != owner.child(f"{child.step}-result"):
                    continue  # only the step's own result ConfigMap is its result
                if child.summary is not None:
                    try:
                        obs.results[child.step] = parse_result(child.summary)
                    except InvalidResultData as err:
                        invalid.append(f"result ConfigMap {child.name}: {err}")
            elif child.kind == "Deployment":
                if child.generation != current:
                    obs.stale += [("apps/v1", "Deployment", child.name), ("v1", "Service", child.name)]
                else:
                    deployments.append(child)
        for dep in deployments:
            obs.server = self._server_state(dep, [c for c in pods if c.generation == dep.generation])
        if quantjob is not None:
            obs.quantjob = quantjob
        for sb in benchmarks or []:
            meta = sb.get("metadata", {})
            if not any(r.get("uid") == owner.uid for r in meta.get("ownerReferences") or []):
                continue
            if (meta.get("labels") or {}).get(f"{p}/generation") != current:
                obs.stale.append((f"{GROUP}/{VERSION}", "ServeBenchmark", meta["name"]))
            else:
                obs.benchmarks[meta["name"]] = sb
        return obs, invalid

    def _server_state(self, dep: Child, pods: list[Child]) -> ServerState:
        state = ServerState(exists=True)
        if dep.summary:
            state.failed = f"server pods refused: {dep.summary}"
        for pod in pods:
            if pod.deleting or pod.component != "server":
                continue
            s: PodSummary = pod.summary
            state.unschedulable = s.unschedulable or state.unschedulable
            state.ready = state.ready or s.ready
            state.failed = s.failed or state.failed
            if s.ready:
                state.footprint = _footprint(s)
            if s.node:
                state.node = s.node
                state.gpu_product = self.node_labels(s.node).get("nvidia.com/gpu.product")
        return state

    def node_labels(self, name: str) -> dict[str, str]:
        """A node's labels, read once per node name (nodes are not watched: a node's GPU product does not
        change, and a resync must cost no request)."""
        known = self._nodes.get(name)
        if known is not None and known.labels:
            return known.labels
        try:
            resp = self.core.read_node(name, _preload_content=False, _request_timeout=10)
            labels = (json.loads(resp.data).get("metadata") or {}).get("labels") or {}
        except ApiException:
            labels = {}
        except Exception:
            return known.labels if known else {}
        self._nodes[name] = NodeLabels(labels)
        return dict(labels)

    def _baseline(self, ns: str, baseline: Baseline) -> dict[str, Any] | None:
        try:
            if baseline.name:
                found: dict[str, Any] = self.custom.get_namespaced_custom_object(
                    GROUP, VERSION, ns, "servebenchmarks", baseline.name
                )
                return found
            assert baseline.config_map_name
            cm = self.core.read_namespaced_config_map(baseline.config_map_name, ns)
        except ApiException as err:
            if err.status == 404:
                return None
            raise
        return saved_baseline(cm.data or {})

    async def observe(self, owner: Owner, status: dict[str, Any], quantjob: dict[str, Any] | None = None,
                      baseline: Baseline | None = None, benchmarks: list[dict[str, Any]] | None = None,
                      ) -> tuple[Observed, list[str]]:  # fmt: skip
        """From memory; only a spec.baseline is read from the API (rare; read as the run decides)."""
        obs, invalid = await self._run(self.observe_cached, owner, status, quantjob, benchmarks)
        if baseline is not None:
            obs.baseline = await self._run(self._baseline, owner.namespace, baseline)
        return obs, invalid

    # ---- apply ------------------------------------------------------------------------------------
    def _create(self, obj: Obj) -> bool:
        ns = obj["metadata"]["namespace"]
        kind = obj["kind"]
        made = None
        if kind in ("ServiceAccount", "Role", "RoleBinding"):
            owners = obj["metadata"].get("ownerReferences") or [{}]
            made = (kind, ns, obj["metadata"]["name"], str(owners[0].get("uid", "")))
            with self._made_lock:
                if made in self._made:
                    return False
        made_now = self._create_call(obj, ns, kind)
        if made is not None:
            with self._made_lock:
                self._made[made] = None
                while len(self._made) > MADE_CAP:
                    self._made.popitem(last=False)
        return made_now

    def _create_call(self, obj: Obj, ns: str, kind: str) -> bool:
        raw = {"_preload_content": False}
        fns: dict[str, Callable[[], Any]] = {
            "Deployment": lambda: self.apps.create_namespaced_deployment(ns, obj, **raw),
            "Service": lambda: self.core.create_namespaced_service(ns, obj, **raw),
            "Job": lambda: self.batch.create_namespaced_job(ns, obj, **raw),
            "ServiceAccount": lambda: self.core.create_namespaced_service_account(ns, obj, **raw),
            "Role": lambda: self.rbac.create_namespaced_role(ns, obj, **raw),
            "RoleBinding": lambda: self.rbac.create_namespaced_role_binding(ns, obj, **raw),
            "ConfigMap": lambda: self.core.create_namespaced_config_map(ns, obj, **raw),
            "ServeBenchmark": lambda: self.custom.create_namespaced_custom_object(
                GROUP, VERSION, ns, "servebenchmarks", obj, **raw
            ),
        }
        try:
            resp = fns[kind]()
            self.cache.created(json.loads(resp.data))
            log.info("created %s %s/%s", kind, ns, obj["metadata"]["name"])
            return True
        except ApiException as err:
            if err.status == 409:  # already there: deterministic names make creation idempotent
                self.cache.created(obj)
                return False
            if err.status in (400, 403, 404, 422):  # invalid, forbidden (RBAC, quota), namespace gone
                raise ChildRefused(kind, obj["metadata"]["name"], err.status, _api_message(err)) from err
            raise

    def _delete(self, ns: str, kind: str, name: str) -> None:
        body = client.V1DeleteOptions(propagation_policy="Background")
        fns: dict[str, Callable[[], Any]] = {
            "Deployment": lambda: self.apps.delete_namespaced_deployment(name, ns, body=body, _preload_content=False),
            "Service": lambda: self.core.delete_namespaced_service(name, ns, body=body, _preload_content=False),
            "Job": lambda: self.batch.delete_namespaced_job(name, ns, body=body, _preload_content=False),
            "ConfigMap": lambda: self.core.delete_namespaced_config_map(name, ns, body=body, _preload_content=False),
            "ServeBenchmark": lambda: self.custom.delete_namespaced_custom_object(
                GROUP, VERSION, ns, "servebenchmarks", name, body=body, _preload_content=False
            ),
        }  # fmt: skip
        try:
            fns[kind]()
            log.info("deleted %s %s/%s", kind, ns, name)
        except ApiException as err:
            if err.status != 404:
                raise

    def _apply(self, owner: Owner, spec: ServeBenchmarkSpec | QuantJobSpec, decision: Decision) -> int:
        """Create what the decision needs and delete what it drops; returns how many objects were new."""
        create, delete = render.decision_objects(owner, spec, decision, self.settings)
        # the server's Deployment last of its objects: a Deployment that exists says its Service and the
        # worker's RBAC do (an operator killed halfway through creating them leaves nothing missing)
        create.sort(key=lambda obj: obj["kind"] == "Deployment")
        created = 0
        for obj in create:
            created += self._create(obj)
        for _, kind, name in delete:
            self._delete(owner.namespace, kind, name)
        return created

    async def apply(self, owner: Owner, spec: ServeBenchmarkSpec | QuantJobSpec, decision: Decision) -> int:
        created: int = await self._run(self._apply, owner, spec, decision)
        return created

    def _write_status(
        self, owner: Owner, status: dict[str, Any], resource_version: str | None
    ) -> dict[str, Any]:
        """The whole status as a merge patch guarded by the resourceVersion the decision was made from:
        a concurrent writer makes it fail with 409 instead of being overwritten (lost update). Returns
        the object as stored."""
        plural = "servebenchmarks" if owner.kind == "ServeBenchmark" else "quantjobs"
        body: dict[str, Any] = {"status": status}
        if resource_version:
            body["metadata"] = {"resourceVersion": resource_version}
        resp = self.custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, owner.namespace, plural, owner.name, body, _preload_content=False
        )
        stored: dict[str, Any] = json.loads(resp.data)
        return stored

    async def write_status(
        self, owner: Owner, status: dict[str, Any], resource_version: str | None
    ) -> dict[str, Any]:
        stored: dict[str, Any] = await self._run(self._write_status, owner, status, resource_version)
        return stored


def _api_message(err: ApiException) -> str:
    try:
        return str(json.loads(err.body or "{}").get("message") or err.reason)
    except (ValueError, AttributeError):
        return str(err.reason)


__all__ = [
    "MAX_RESULT_BYTES",
    "ChildCache",
    "ChildRefused",
    "Kube",
    "cluster_site",
    "load_config",
    "parse_result",
    "render",
    "result_from_configmap",
]
