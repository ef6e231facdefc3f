"""The operator's only contact with the API server: observe children, apply decisions."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from kubernetes import client, config
from kubernetes.client.rest import ApiException

from servelab import GROUP, VERSION
from servelab.controller import render
from servelab.controller.reconcile import Decision, JobState, Observed, ServerState, result_from_configmap
from servelab.controller.render import Obj, Owner
from servelab.controller.settings import Settings
from servelab.plan import dns_name


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
        self, owner: Owner, step_ids: list[str], status: dict[str, Any], quantjob: str | None
    ) -> Observed:
        p = self.settings.prefix
        ns = owner.namespace
        obs = Observed(generation=owner.generation, status=status, now=datetime.now(UTC))
        selector = f"{p}/name={dns_name(owner.name)},{p}/kind={owner.kind.lower()}"

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
        wanted = {owner.child(f"{sid}-result"): sid for sid in step_ids}
        for cm in self.core.list_namespaced_config_map(ns, label_selector=f"{p}/result=true").items:
            if not owned(cm):
                continue
            if cm.metadata.name in wanted:
                parsed = result_from_configmap({"data": cm.data})
                if parsed is not None:
                    obs.results[wanted[cm.metadata.name]] = parsed
            else:
                obs.stale.append(("v1", "ConfigMap", cm.metadata.name))
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
        return obs

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
        self, owner: Owner, step_ids: list[str], status: dict[str, Any], quantjob: str | None = None
    ) -> Observed:
        return await asyncio.to_thread(self._observe, owner, step_ids, status, quantjob)

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

    def _apply(self, ns: str, decision: Decision) -> None:
        for obj in decision.create:
            self._create(obj)
        for _, kind, name in decision.delete:
            self._delete(ns, kind, name)

    async def apply(self, ns: str, decision: Decision) -> None:
        await asyncio.to_thread(self._apply, ns, decision)

    def _wake_waiting(self, ns: str, quantjob: str) -> list[str]:
        """Benchmarks waiting on this QuantJob get phase Pending, which restarts their reconciliation."""
        woken = []
        for sb in self.custom.list_namespaced_custom_object(GROUP, VERSION, ns, "servebenchmarks")["items"]:
            ref = (sb.get("spec", {}).get("quantJobRef") or {}).get("name")
            if ref == quantjob and (sb.get("status") or {}).get("phase") == "Waiting":
                self.custom.patch_namespaced_custom_object_status(
                    GROUP,
                    VERSION,
                    ns,
                    "servebenchmarks",
                    sb["metadata"]["name"],
                    {"status": {"phase": "Pending"}},
                )
                woken.append(sb["metadata"]["name"])
        return woken

    async def wake_waiting(self, ns: str, quantjob: str) -> list[str]:
        return await asyncio.to_thread(self._wake_waiting, ns, quantjob)


__all__ = ["Kube", "load_config", "render"]
