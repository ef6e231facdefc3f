"""Pure rendering of the Kubernetes objects a plan needs. No API calls here.

Child names are deterministic and carry the spec generation, so a changed spec gets fresh children
while the old run's are deleted, and a restarted operator finds exactly what it created before.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from servelab import API_VERSION, GROUP, VERSION
from servelab.api.common import ModelSource, Placement, SecretKeyRef
from servelab.api.servebenchmark import ServeBenchmarkSpec
from servelab.controller.settings import Settings
from servelab.engines import ServerLaunch
from servelab.plan import ScoreRun, WorkerStep, dns_name

Obj = dict[str, Any]
MANAGED_BY = {"app.kubernetes.io/managed-by": "servelab", "app.kubernetes.io/part-of": "servelab"}
ARTIFACTS = "/artifacts"
RESULT_KEY = "result.json"


@dataclass(frozen=True)
class Owner:
    kind: str
    name: str
    namespace: str
    uid: str
    generation: int

    def ref(self) -> Obj:
        return {"apiVersion": API_VERSION, "kind": self.kind, "name": self.name, "uid": self.uid,
                "controller": True, "blockOwnerDeletion": True}  # fmt: skip

    def child(self, suffix: str) -> str:
        """`<name>-g<generation>-<suffix>`, shortened with a hash when over 63 characters."""
        full = f"{self.name}-g{self.generation}-{suffix}"
        if len(full) <= 63:
            return full
        digest = hashlib.sha256(full.encode()).hexdigest()[:8]
        return f"{dns_name(full, 54)}-{digest}"

    def labels(self, component: str, prefix: str, step: str | None = None) -> dict[str, str]:
        labels = {**MANAGED_BY, f"{prefix}/kind": self.kind.lower(), f"{prefix}/name": dns_name(self.name),
                  f"{prefix}/generation": str(self.generation), f"{prefix}/component": component}  # fmt: skip
        if step:
            labels[f"{prefix}/step"] = step
        return labels


def _meta(owner: Owner, name: str, labels: dict[str, str]) -> Obj:
    return {"name": name, "namespace": owner.namespace, "labels": labels, "ownerReferences": [owner.ref()]}


def _secret_env(name: str, ref: SecretKeyRef) -> Obj:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}}


def _placement(pod: Obj, placement: Placement | None) -> None:
    if not placement:
        return
    if placement.node_selector:
        pod["nodeSelector"] = dict(placement.node_selector)
    if placement.tolerations:
        pod["tolerations"] = [t.to_wire() for t in placement.tolerations]
    if placement.affinity:
        pod["affinity"] = json.loads(json.dumps(placement.affinity))
    if placement.runtime_class_name:
        pod["runtimeClassName"] = placement.runtime_class_name
    if placement.priority_class_name:
        pod["priorityClassName"] = placement.priority_class_name


def model_volume(source: ModelSource | None) -> tuple[list[Obj], list[Obj]]:
    """Volumes and mounts that make a model source visible where plan.model_location says it is."""
    if source and source.pvc:
        claim = source.pvc.claim_name
        vol = {"name": "model", "persistentVolumeClaim": {"claimName": claim, "readOnly": True}}
        return [vol], [{"name": "model", "mountPath": f"/models/{claim}", "readOnly": True}]
    return [], []


def server_objects(owner: Owner, spec: ServeBenchmarkSpec, launch: ServerLaunch, image: str,
                   settings: Settings, model_source: ModelSource | None) -> list[Obj]:  # fmt: skip
    """The engine server: a one-replica Deployment and its Service."""
    p = settings.prefix
    name = owner.child("server")
    labels = {**owner.labels("server", p), **settings.extra_pod_labels}
    selector = {f"{p}/name": labels[f"{p}/name"], f"{p}/generation": labels[f"{p}/generation"],
                f"{p}/component": "server"}  # fmt: skip
    gpus = (
        spec.resources.gpus
        if spec.resources and spec.resources.gpus is not None
        else spec.engine.tensor_parallel_size
    )
    limits: Obj = {"nvidia.com/gpu": str(gpus)} if gpus else {}
    requests: Obj = {}
    if spec.resources and spec.resources.cpu:
        limits["cpu"] = requests["cpu"] = spec.resources.cpu
    if spec.resources and spec.resources.memory:
        limits["memory"] = requests["memory"] = spec.resources.memory
    env: list[Obj] = [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}]
    env += [{"name": k, "value": v} for k, v in sorted(launch.env.items())]
    env += [
        _secret_env(k, SecretKeyRef(name=s, key=key)) for k, (s, key) in sorted(launch.secret_env.items())
    ]
    if spec.hf_token_secret_ref:
        env.append(_secret_env("HF_TOKEN", spec.hf_token_secret_ref))
    volumes, mounts = model_volume(model_source)
    volumes.append({"name": "cache", "emptyDir": {}})
    mounts.append({"name": "cache", "mountPath": "/root/.cache/huggingface"})  # model downloads
    if launch.needs_shm:
        volumes.append({"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": spec.shm_size}})
        mounts.append({"name": "dshm", "mountPath": "/dev/shm"})
    ready = spec.timeouts.server_ready_seconds if spec.timeouts else 1800
    probe = {"httpGet": {"path": launch.health_path, "port": "http"}}
    container: Obj = {
        "name": "engine", "image": image, "imagePullPolicy": settings.image_pull_policy,
        "command": list(launch.command), "env": env,
        "ports": [{"name": "http", "containerPort": launch.port, "protocol": "TCP"}],
        "startupProbe": {**probe, "periodSeconds": 5, "failureThreshold": max(1, ready // 5)},
        "readinessProbe": {**probe, "periodSeconds": 5, "failureThreshold": 3},
        "resources": {"limits": limits, "requests": requests or dict(limits)},
        "volumeMounts": mounts,
    }  # fmt: skip
    pod: Obj = {"containers": [container], "volumes": volumes, "automountServiceAccountToken": False,
                "terminationGracePeriodSeconds": 30}  # fmt: skip
    _placement(pod, spec.placement)
    if spec.isolation is None or spec.isolation.exclusive_node:
        anti = {"requiredDuringSchedulingIgnoredDuringExecution": [{
            "labelSelector": {"matchLabels": {f"{p}/component": "server", **{k: v for k, v in MANAGED_BY.items()}}},
            "topologyKey": "kubernetes.io/hostname"}]}  # fmt: skip
        pod.setdefault("affinity", {})["podAntiAffinity"] = anti
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": _meta(owner, name, labels),
        "spec": {"replicas": 1, "strategy": {"type": "Recreate"}, "selector": {"matchLabels": selector},
                 "template": {"metadata": {"labels": labels}, "spec": pod}},
    }  # fmt: skip
    service = {
        "apiVersion": "v1", "kind": "Service", "metadata": _meta(owner, name, owner.labels("server", p)),
        "spec": {"selector": selector, "ports": [{"name": "http", "port": launch.port, "targetPort": "http"}]},
    }  # fmt: skip
    return [deployment, service]


def server_url(owner: Owner, launch: ServerLaunch) -> str:
    return f"http://{owner.child('server')}.{owner.namespace}.svc:{launch.port}"


def worker_rbac(owner: Owner, settings: Settings) -> list[Obj]:
    """A service account whose only right is to publish results into ConfigMaps of its namespace."""
    name = owner.child("worker")
    labels = owner.labels("worker", settings.prefix)
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(owner, name, labels)},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": _meta(owner, name, labels),
         "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create", "get", "update", "patch"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": _meta(owner, name, labels),
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
         "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": owner.namespace}]},
    ]  # fmt: skip


def result_configmap(owner: Owner, step: WorkerStep) -> str:
    return owner.child(f"{step.id}-result")


def worker_job(owner: Owner, step: WorkerStep, settings: Settings, placement: Placement | None = None,
               extra_env: list[Obj] | None = None, volumes: tuple[list[Obj], list[Obj]] = ([], [])) -> Obj:  # fmt: skip
    """One plan step as a Job: runs `servelab worker ...` once, publishes into its result ConfigMap."""
    p = settings.prefix
    labels = {**owner.labels("worker", p, step.id), **settings.extra_pod_labels}
    owner_ref = {k: v for k, v in owner.ref().items() if k in ("apiVersion", "kind", "name", "uid")}
    env = [
        {"name": "SERVELAB_RESULT_SINK",
         "value": f"configmap:{owner.namespace}/{result_configmap(owner, step)}/{RESULT_KEY}"},
        {"name": "SERVELAB_OWNER_REF", "value": json.dumps(owner_ref, sort_keys=True)},
        *[{"name": k, "value": v} for k, v in sorted(step.env.items())],
        *(extra_env or []),
    ]  # fmt: skip
    limits: Obj = {"cpu": settings.worker_cpu, "memory": settings.worker_memory}
    if step.gpus:
        limits["nvidia.com/gpu"] = str(step.gpus)
    vols, mounts = volumes
    container = {
        "name": "worker", "image": settings.image(step.image), "imagePullPolicy": settings.image_pull_policy,
        "command": list(step.argv), "env": env, "resources": {"limits": limits, "requests": dict(limits)},
        "volumeMounts": [{"name": "artifacts", "mountPath": ARTIFACTS}, *mounts],
    }  # fmt: skip
    pod: Obj = {"restartPolicy": "Never", "serviceAccountName": owner.child("worker"), "containers": [container],
                "volumes": [{"name": "artifacts", "emptyDir": {}}, *vols]}  # fmt: skip
    _placement(pod, placement)
    return {
        "apiVersion": "batch/v1", "kind": "Job", "metadata": _meta(owner, owner.child(step.id), labels),
        "spec": {"backoffLimit": 0, "activeDeadlineSeconds": step.timeout_seconds,
                 "template": {"metadata": {"labels": labels}, "spec": pod}},
    }  # fmt: skip


def score_benchmark(owner: Owner, name: str, run: ScoreRun, settings: Settings) -> Obj:
    """A QuantJob's scoring run: a ServeBenchmark owned by the QuantJob (deleted with it), which the
    operator reconciles like any other; the QuantJob folds its scores from the child's status."""
    labels = {**owner.labels("score", settings.prefix), f"{settings.prefix}/variant": dns_name(run.variant)}
    return {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "ServeBenchmark", "metadata": _meta(owner, name, labels),
        "spec": run.spec.to_wire(),
    }  # fmt: skip
