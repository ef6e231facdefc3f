"""The operator's only contact with the API server: observe children, apply decisions."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from kubernetes import client, config
from kubernetes.client.rest import ApiException

from servelab import GROUP, VERSION
from servelab.api.quantjob import QuantJobSpec
from servelab.api.servebenchmark import ServeBenchmarkSpec
from servelab.api.verdict import Baseline
from servelab.controller import render
from servelab.controller.render import Obj
from servelab.controller.settings import Settings
from servelab.core import Decision, JobState, Observed, Owner, ServerState, Site


class ChildRefused(Exception):
    """The apiserver refused a child object (invalid, forbidden, over quota): permanent for this spec."""

    def __init__(self, kind: str, name: str, status: int, message: str) -> None:
        super().__init__(f"{kind} {name} refused by the apiserver (HTTP {status}): {message}")
        self.kind, self.name, self.status = kind, name, status


def result_from_configmap(cm: dict[str, Any]) -> dict[str, Any] | None:
    data = (cm.get("data") or {}).get(render.RESULT_KEY)
    parsed: dict[str, Any] | None = json.loads(data) if data else None
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


def load_config() -> client.ApiClient:
    try:
        config.load_incluster_config()
    except config.ConfigException:
        # read $KUBECONFIG now: the client library reads it once, when it is first imported
        config.load_kube_config(config_file=os.environ.get("KUBECONFIG") or None)
    return client.ApiClient()


class Kube:
    def __init__(self, api: client.ApiClient, settings: Settings) -> None:
        self.api = api
        self.settings = settings
        self.core = client.CoreV1Api(api)
        self.apps = client.AppsV1Api(api)
        self.batch = client.BatchV1Api(api)
        self.rbac = client.RbacAuthorizationV1Api(api)
        self.custom = client.CustomObjectsApi(api)

    # ---- observe ----------------------------------------------------------------------------------
    def _observe(
        self, owner: Owner, status: dict[str, Any], quantjob: str | None, baseline: Baseline | None = None
    ) -> Observed:
        p = self.settings.prefix
        ns = owner.namespace
        obs = Observed(generation=owner.generation, status=status, now=datetime.now(UTC))
        selector = render.owner_selector(owner, p)

        def owned(obj: Any) -> bool:
            return any(r.uid == owner.uid for r in (obj.metadata.owner_references or []))

        current = str(owner.generation)
        for job in self.batch.list_namespaced_job(ns, label_selector=selector).items:
            if not owned(job):
                continue
            labels = job.metadata.labels or {}
            if labels.get(f"{p}/generation") != current:
                obs.stale.append(("batch/v1", "Job", job.metadata.name))
                continue
            conds = {c.type: c for c in (job.status.conditions or [])}
            failed = conds.get("Failed")
            state = JobState(
                name=job.metadata.name, active=bool(job.status.active),
                succeeded=bool(job.status.succeeded) and "Complete" in conds,
                failed=failed is not None and failed.status == "True",
                message=f"{failed.reason}: {failed.message}" if failed is not None else "",
                completed_at=job.status.completion_time,
            )  # fmt: skip
            obs.jobs[labels.get(f"{p}/step", "")] = state
        # result ConfigMaps carry their owner's labels (the worker writes them): no namespace-wide list
        for cm in self.core.list_namespaced_config_map(
            ns, label_selector=f"{selector},{p}/result=true"
        ).items:
            if not owned(cm):
                continue
            labels = cm.metadata.labels or {}
            if labels.get(f"{p}/generation") != current:
                obs.stale.append(("v1", "ConfigMap", cm.metadata.name))
                continue
            parsed = result_from_configmap({"data": cm.data})
            if parsed is not None:
                obs.results[labels.get(f"{p}/step", "")] = parsed
        for dep in self.apps.list_namespaced_deployment(ns, label_selector=selector).items:
            if not owned(dep):
                continue
            if (dep.metadata.labels or {}).get(f"{p}/generation") != current:
                obs.stale += [
                    ("apps/v1", "Deployment", dep.metadata.name),
                    ("v1", "Service", dep.metadata.name),
                ]
            else:
                obs.server = self._server_state(ns, dep)
        if owner.kind == "QuantJob":  # its scoring runs
            listed = self.custom.list_namespaced_custom_object(
                GROUP, VERSION, ns, "servebenchmarks", label_selector=selector
            )
            for sb in listed["items"]:
                meta = sb.get("metadata", {})
                if not any(r.get("uid") == owner.uid for r in meta.get("ownerReferences") or []):
                    continue
                if (meta.get("labels") or {}).get(f"{p}/generation") != current:
                    obs.stale.append((f"{GROUP}/{VERSION}", "ServeBenchmark", meta["name"]))
                else:
                    obs.benchmarks[meta["name"]] = sb
        if quantjob:
            try:
                obs.quantjob = self.custom.get_namespaced_custom_object(
                    GROUP, VERSION, ns, "quantjobs", quantjob
                )
            except ApiException as err:
                if err.status != 404:
                    raise
        if baseline is not None:
            obs.baseline = self._baseline(ns, baseline)
        return obs

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

    def _server_state(self, ns: str, dep: Any) -> ServerState:
        state = ServerState(exists=True)
        sel = ",".join(f"{k}={v}" for k, v in dep.spec.selector.match_labels.items())
        for pod in self.core.list_namespaced_pod(ns, label_selector=sel).items:
            if pod.metadata.deletion_timestamp:
                continue
            conds = {c.type: c for c in (pod.status.conditions or [])}
            sched = conds.get("PodScheduled")
            if sched is not None and sched.status == "False":
                state.unschedulable = f"{sched.reason}: {sched.message}"
            ready = conds.get("Ready")
            state.ready = state.ready or (ready is not None and ready.status == "True")
            for cs in pod.status.container_statuses or []:
                waiting = cs.state.waiting if cs.state else None
                term = cs.state.terminated if cs.state else None
                if waiting is not None and waiting.reason in ("CrashLoopBackOff", "ErrImagePull", "ImagePullBackOff",
                                                              "CreateContainerConfigError", "InvalidImageName"):  # fmt: skip
                    state.failed = f"container {cs.name}: {waiting.reason}: {waiting.message or ''}".strip()
                if term is not None and pod.status.phase in ("Failed", "Succeeded"):
                    state.failed = (
                        f"container {cs.name} exited with code {term.exit_code}: {term.reason or ''}".strip()
                    )
            if pod.status.phase == "Failed" and not state.failed:
                state.failed = (
                    f"server pod failed: {pod.status.reason or ''} {pod.status.message or ''}".strip()
                )
            if pod.spec.node_name:
                state.node = pod.spec.node_name
                try:
                    node = self.core.read_node(pod.spec.node_name)
                    state.gpu_product = (node.metadata.labels or {}).get("nvidia.com/gpu.product")
                except ApiException:
                    pass
        return state

    async def observe(
        self,
        owner: Owner,
        status: dict[str, Any],
        quantjob: str | None = None,
        baseline: Baseline | None = None,
    ) -> Observed:
        return await asyncio.to_thread(self._observe, owner, status, quantjob, baseline)

    # ---- apply ------------------------------------------------------------------------------------
    def _create(self, obj: Obj) -> bool:
        ns = obj["metadata"]["namespace"]
        kind = obj["kind"]
        fns: dict[str, Callable[[], Any]] = {
            "Deployment": lambda: self.apps.create_namespaced_deployment(ns, obj),
            "Service": lambda: self.core.create_namespaced_service(ns, obj),
            "Job": lambda: self.batch.create_namespaced_job(ns, obj),
            "ServiceAccount": lambda: self.core.create_namespaced_service_account(ns, obj),
            "Role": lambda: self.rbac.create_namespaced_role(ns, obj),
            "RoleBinding": lambda: self.rbac.create_namespaced_role_binding(ns, obj),
            "ConfigMap": lambda: self.core.create_namespaced_config_map(ns, obj),
            "ServeBenchmark": lambda: self.custom.create_namespaced_custom_object(
                GROUP, VERSION, ns, "servebenchmarks", obj
            ),
        }
        try:
            fns[kind]()
            return True
        except ApiException as err:
            if err.status == 409:  # already there: deterministic names make creation idempotent
                return False
            if err.status in (400, 403, 404, 422):  # invalid, forbidden (RBAC, quota), namespace gone
                raise ChildRefused(kind, obj["metadata"]["name"], err.status, _api_message(err)) from err
            raise

    def _delete(self, ns: str, kind: str, name: str) -> None:
        body = client.V1DeleteOptions(propagation_policy="Background")
        fns: dict[str, Callable[[], Any]] = {
            "Deployment": lambda: self.apps.delete_namespaced_deployment(name, ns, body=body),
            "Service": lambda: self.core.delete_namespaced_service(name, ns, body=body),
            "Job": lambda: self.batch.delete_namespaced_job(name, ns, body=body),
            "ConfigMap": lambda: self.core.delete_namespaced_config_map(name, ns, body=body),
            "ServeBenchmark": lambda: self.custom.delete_namespaced_custom_object(
                GROUP, VERSION, ns, "servebenchmarks", name, body=body
            ),
        }
        try:
            fns[kind]()
        except ApiException as err:
            if err.status != 404:
                raise

    def _apply(self, owner: Owner, spec: ServeBenchmarkSpec | QuantJobSpec, decision: Decision) -> None:
        create, delete = render.decision_objects(owner, spec, decision, self.settings)
        for obj in create:
            self._create(obj)
        for _, kind, name in delete:
            self._delete(owner.namespace, kind, name)

    async def apply(self, owner: Owner, spec: ServeBenchmarkSpec | QuantJobSpec, decision: Decision) -> None:
        await asyncio.to_thread(self._apply, owner, spec, decision)

    def _write_status(self, owner: Owner, status: dict[str, Any], resource_version: str | None) -> None:
        """The whole status as a merge patch guarded by the resourceVersion the decision was made from:
        a concurrent writer makes it fail with 409 instead of being overwritten (lost update)."""
        plural = "servebenchmarks" if owner.kind == "ServeBenchmark" else "quantjobs"
        body: dict[str, Any] = {"status": status}
        if resource_version:
            body["metadata"] = {"resourceVersion": resource_version}
        self.custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, owner.namespace, plural, owner.name, body
        )

    async def write_status(self, owner: Owner, status: dict[str, Any], resource_version: str | None) -> None:
        await asyncio.to_thread(self._write_status, owner, status, resource_version)


def _api_message(err: ApiException) -> str:
    try:
        return str(json.loads(err.body or "{}").get("message") or err.reason)
    except (ValueError, AttributeError):
        return str(err.reason)


__all__ = ["ChildRefused", "Kube", "cluster_site", "load_config", "render", "result_from_configmap"]
