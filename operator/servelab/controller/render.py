"""Pure rendering of the Kubernetes objects a plan needs. No API calls here.

Child names are deterministic and carry the spec generation, so a changed spec gets fresh children
while the old run's are deleted, and a restarted operator finds exactly what it created before.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from servelab import API_VERSION, GROUP, VERSION
from servelab.api.common import ModelSource, Placement, Resources, SecretKeyRef
from servelab.api.quantjob import Images, QuantJobSpec
from servelab.api.servebenchmark import ServeBenchmarkSpec
from servelab.controller.settings import Settings
from servelab.core import CreateScoreRun, CreateServer, Decision, DeleteServer, Owner, RunStep
from servelab.engines import ServerLaunch
from servelab.engines import get as get_engine
from servelab.names import dns_name, label_value
from servelab.plan import MODELSCOPE_DIR, ScoreRun, WorkerStep

Obj = dict[str, Any]
MANAGED_BY = {"app.kubernetes.io/managed-by": "servelab", "app.kubernetes.io/part-of": "servelab"}
ARTIFACTS = "/artifacts"
RESULT_KEY = "result.json"
WORKER_HF_HOME = "/cache/huggingface"  # the quantize Job's Hugging Face cache volume (HF_HOME)
MODELSCOPE_ROOT = f"/models/{MODELSCOPE_DIR}"  # the model step's ModelScope cache and links (an emptyDir)
# Pod Security "restricted" (a namespace may enforce it): no privilege escalation, no capabilities, the
# runtime's seccomp profile, never root. Worker images run as their non-root USER (10001). Engine images
# (vLLM's, SGLang's, llama.cpp's) run as root by default: their servers run as SERVER_UID instead, with
# HOME and the Hugging Face cache on an emptyDir that uid can write (/root is not readable by it).
CONTAINER_SECURITY = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
POD_SECURITY = {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
SERVER_UID = 1000
SERVER_HOME = "/home/servelab"


def owner_ref(owner: Owner) -> Obj:
    return {"apiVersion": API_VERSION, "kind": owner.kind, "name": owner.name, "uid": owner.uid,
            "controller": True, "blockOwnerDeletion": True}  # fmt: skip


def owner_labels(owner: Owner, component: str, prefix: str, step: str | None = None) -> dict[str, str]:
    """Every child carries its owner's uid (what the operator selects by: unique, unlike names) and a
    readable, valid form of the owner's name."""
    labels = {**MANAGED_BY, f"{prefix}/kind": owner.kind.lower(), f"{prefix}/name": label_value(owner.name),
              f"{prefix}/owner-uid": owner.uid, f"{prefix}/generation": str(owner.generation),
              f"{prefix}/component": component}  # fmt: skip
    if step:
        labels[f"{prefix}/step"] = step
    return labels


def owner_selector(owner: Owner, prefix: str) -> str:
    return f"{prefix}/owner-uid={owner.uid}"


def _meta(owner: Owner, name: str, labels: dict[str, str]) -> Obj:
    return {
        "name": name,
        "namespace": owner.namespace,
        "labels": labels,
        "ownerReferences": [owner_ref(owner)],
    }


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


def model_volume(source: ModelSource | None, fetched: bool = False) -> tuple[list[Obj], list[Obj]]:
    """Volumes and mounts that make a model source visible where plan.model_location says it is: a PVC
    mounted under /models; a ModelScope repository the model step fetches (`fetched`), on an emptyDir at
    /models/.modelscope that the step and the program reading the model share."""
    if source and source.pvc:
        claim = source.pvc.claim_name
        vol = {"name": "model", "persistentVolumeClaim": {"claimName": claim, "readOnly": True}}
        return [vol], [{"name": "model", "mountPath": f"/models/{claim}", "readOnly": True}]
    if source and source.model_scope and fetched:
        return [{"name": "modelscope", "emptyDir": {}}], [
            {"name": "modelscope", "mountPath": MODELSCOPE_ROOT}
        ]
    return [], []


def model_step_container(
    step: WorkerStep, mounts: list[Obj], images: Images | None, settings: Settings
) -> Obj:
    """The model step (`servelab worker model`) as an init container: fetches a ModelScope repository into
    the shared volume (its cache there too), measures the model; its report is the termination message,
    which the operator reads from the pod's status (no API access from the pod)."""
    env = [
        {"name": "MODELSCOPE_CACHE", "value": f"{MODELSCOPE_ROOT}/cache"},
        {"name": "HOME", "value": MODELSCOPE_ROOT},
    ]
    if not any(m["mountPath"] == MODELSCOPE_ROOT for m in mounts):
        env = []  # nothing to fetch: only measured
    return {
        "name": "model", "image": step_image(step, images, settings),
        "imagePullPolicy": (images.pull_policy if images and images.pull_policy else None) or settings.image_pull_policy,
        "command": list(step.argv), "env": env, "volumeMounts": [dict(m) for m in mounts],
        "terminationMessagePolicy": "File", "securityContext": dict(CONTAINER_SECURITY),
        "resources": {"limits": {"cpu": settings.worker_cpu, "memory": settings.worker_memory},
                      "requests": {"cpu": settings.worker_cpu, "memory": settings.worker_memory}},
    }  # fmt: skip


def server_objects(owner: Owner, spec: ServeBenchmarkSpec, launch: ServerLaunch, image: str,
                   settings: Settings, model_source: ModelSource | None,
                   prepare: WorkerStep | None = None) -> list[Obj]:  # fmt: skip
    """The engine server: a one-replica Deployment and its Service; the model step (`prepare`) first, as
    an init container beside it."""
    p = settings.prefix
    name = owner.child("server")
    labels = {**owner_labels(owner, "server", p), **settings.extra_pod_labels}
    selector = {f"{p}/owner-uid": owner.uid, f"{p}/generation": labels[f"{p}/generation"],
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
    env += [
        {"name": "HOME", "value": SERVER_HOME},
        {"name": "HF_HOME", "value": f"{SERVER_HOME}/.cache/huggingface"},
    ]
    if model_source is not None and model_source.path:
        prepare = None  # a path inside the engine's image: the step's (worker) image cannot see it to measure
    volumes, mounts = model_volume(model_source, fetched=prepare is not None)
    init = [model_step_container(prepare, mounts, spec.images, settings)] if prepare else []
    volumes.append({"name": "cache", "emptyDir": {}})
    mounts.append({"name": "cache", "mountPath": SERVER_HOME})  # model downloads, engine caches
    if launch.needs_shm:
        volumes.append({"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": spec.shm_size}})
        mounts.append({"name": "dshm", "mountPath": "/dev/shm"})
    ready = spec.timeouts.server_ready_seconds if spec.timeouts else 1800
    probe = {"httpGet": {"path": launch.health_path, "port": "http"}}
    container: Obj = {
        "name": "engine", "image": image,
        "imagePullPolicy": (spec.images.pull_policy if spec.images and spec.images.pull_policy else None)
        or settings.image_pull_policy,
        "command": list(launch.command), "env": env,
        "ports": [{"name": "http", "containerPort": launch.port, "protocol": "TCP"}],
        "startupProbe": {**probe, "periodSeconds": 5, "failureThreshold": max(1, ready // 5)},
        "readinessProbe": {**probe, "periodSeconds": 5, "failureThreshold": 3},
        "resources": {"limits": limits, "requests": requests or dict(limits)},
        "volumeMounts": mounts, "securityContext": dict(CONTAINER_SECURITY),
    }  # fmt: skip
    pod: Obj = {**({"initContainers": init} if init else {}),
                "containers": [container], "volumes": volumes, "automountServiceAccountToken": False,
                "terminationGracePeriodSeconds": 30,
                "securityContext": {**POD_SECURITY, "runAsUser": SERVER_UID, "runAsGroup": SERVER_UID}}  # fmt: skip
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
        "apiVersion": "v1", "kind": "Service", "metadata": _meta(owner, name, owner_labels(owner, "server", p)),
        "spec": {"selector": selector, "ports": [{"name": "http", "port": launch.port, "targetPort": "http"}]},
    }  # fmt: skip
    return [deployment, service]


def server_url(owner: Owner, port: int) -> str:
    """The server's Service, as the load and eval Jobs reach it."""
    return f"http://{owner.child('server')}.{owner.namespace}.svc:{port}"


def worker_rbac(owner: Owner, settings: Settings) -> list[Obj]:
    """A service account whose only right is to publish results into ConfigMaps of its namespace."""
    name = owner.child("worker")
    labels = owner_labels(owner, "worker", settings.prefix)
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


def step_image(step: WorkerStep, images: Images | None, settings: Settings) -> str:
    """The step's worker image: the spec's override for that image (spec.images), else the operator's."""
    override = {"llmcompressor": images.quantize, "llamacpp": images.llamacpp,
                "evalscope": images.evalscope}.get(step.image) if images else None  # fmt: skip
    return override or settings.image(step.image)


def worker_job(owner: Owner, step: WorkerStep, settings: Settings, placement: Placement | None = None,
               extra_env: list[Obj] | None = None, volumes: tuple[list[Obj], list[Obj]] = ([], []),
               images: Images | None = None, resources: Resources | None = None, backoff_limit: int = 0,
               init: list[Obj] | None = None) -> Obj:  # fmt: skip
    """One plan step as a Job: runs `servelab worker ...` once, publishes into its result ConfigMap (after
    its `init` containers: the model step)."""
    p = settings.prefix
    labels = {**owner_labels(owner, "worker", p, step.id), **settings.extra_pod_labels}
    ref = {k: v for k, v in owner_ref(owner).items() if k in ("apiVersion", "kind", "name", "uid")}
    env = [
        {"name": "SERVELAB_RESULT_SINK",
         "value": f"configmap:{owner.namespace}/{result_configmap(owner, step)}/{RESULT_KEY}"},
        {"name": "SERVELAB_OWNER_REF", "value": json.dumps(ref, sort_keys=True)},
        {"name": "SERVELAB_RESULT_LABELS",
         "value": json.dumps({**owner_labels(owner, "result", p, step.id), f"{p}/result": "true"}, sort_keys=True)},
        *[{"name": k, "value": v} for k, v in sorted(step.env.items())],
        *[_secret_env(k, SecretKeyRef(name=n, key=key)) for k, (n, key) in sorted(step.secret_env.items())],
        *(extra_env or []),
    ]  # fmt: skip
    cpu = str(step.cpus) if step.cpus > 1 else settings.worker_cpu  # a load step's client shards
    limits: Obj = {"cpu": (resources.cpu if resources and resources.cpu else None) or cpu,
                   "memory": (resources.memory if resources and resources.memory else None) or settings.worker_memory}  # fmt: skip
    if step.gpus:
        limits["nvidia.com/gpu"] = str(step.gpus)
    vols, mounts = volumes
    container = {
        "name": "worker", "image": step_image(step, images, settings),
        "imagePullPolicy": (images.pull_policy if images and images.pull_policy else None) or settings.image_pull_policy,
        "command": list(step.argv), "env": env, "resources": {"limits": limits, "requests": dict(limits)},
        "volumeMounts": [{"name": "artifacts", "mountPath": ARTIFACTS}, *mounts],
        "securityContext": dict(CONTAINER_SECURITY),
    }  # fmt: skip
    pod: Obj = {"restartPolicy": "Never", "serviceAccountName": owner.child("worker"),
                **({"initContainers": init} if init else {}), "containers": [container],
                "volumes": [{"name": "artifacts", "emptyDir": {}}, *vols], "securityContext": dict(POD_SECURITY)}  # fmt: skip
    _placement(pod, placement)
    return {
        "apiVersion": "batch/v1", "kind": "Job", "metadata": _meta(owner, owner.child(step.id), labels),
        "spec": {"backoffLimit": backoff_limit, "activeDeadlineSeconds": step.timeout_seconds,
                 "template": {"metadata": {"labels": labels}, "spec": pod}},
    }  # fmt: skip


def score_benchmark(owner: Owner, name: str, run: ScoreRun, settings: Settings) -> Obj:
    """A QuantJob's scoring run: a ServeBenchmark owned by the QuantJob (deleted with it), which the
    operator reconciles like any other; the QuantJob folds its scores from the child's status."""
    labels = {
        **owner_labels(owner, "score", settings.prefix),
        f"{settings.prefix}/variant": dns_name(run.variant),
    }
    return {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "ServeBenchmark", "metadata": _meta(owner, name, labels),
        "spec": run.spec.to_wire(),
    }  # fmt: skip


def quantize_job(owner: Owner, spec: QuantJobSpec, step: WorkerStep, settings: Settings) -> Obj:
    """A QuantJob's quantize step: the output PVC mounted where plan.quant_output says, the model's
    volume, an HF cache the model is downloaded into, the Hub token from its Secret."""
    volumes: list[Obj] = []
    mounts: list[Obj] = []
    env: list[Obj] = []
    out = spec.output
    if out.pvc:
        volumes.append({"name": "output", "persistentVolumeClaim": {"claimName": out.pvc.claim_name}})
        mounts.append({"name": "output", "mountPath": f"/models/{out.pvc.claim_name}"})
    mv, mm = model_volume(spec.model, fetched=step.prepare is not None)
    init = [model_step_container(step.prepare, mm, spec.images, settings)] if step.prepare else []
    volumes += [*mv, {"name": "hf-cache", "emptyDir": {}}]  # a remote model is downloaded here
    mounts += [*mm, {"name": "hf-cache", "mountPath": WORKER_HF_HOME}]
    # the worker images are offline by default: the quantize worker downloads a Hub model or data set
    # (servelab.workers.hub) into the cache volume, readable by the image's non-root user
    env += [{"name": "HF_HOME", "value": WORKER_HF_HOME}, {"name": "HF_HUB_OFFLINE", "value": "0"}]
    if spec.hf_token_secret_ref:
        env.append(_secret_env("HF_TOKEN", spec.hf_token_secret_ref))
    env += [e.to_wire() for e in spec.env]
    return worker_job(owner, step, settings, spec.placement, env, (volumes, mounts), images=spec.images,
                      resources=spec.resources, backoff_limit=spec.backoff_limit, init=init)  # fmt: skip


def benchmark_step_job(owner: Owner, spec: ServeBenchmarkSpec, step: WorkerStep, settings: Settings) -> Obj:
    """A ServeBenchmark's step as a Job. A step that reads the model file (llama-bench) sees it where the
    server does: the same PVC mount, the ModelScope file fetched first by the model step (an init
    container on the same emptyDir layout), a Hub file downloaded into an HF cache volume with the
    server's token."""
    source = step.model_source
    if source is None:
        return worker_job(owner, step, settings, images=spec.images)
    volumes, mounts = model_volume(source, fetched=step.prepare is not None)
    init = [model_step_container(step.prepare, mounts, spec.images, settings)] if step.prepare else []
    env: list[Obj] = []
    if source.hugging_face:  # the worker images are offline by default: this step downloads the file
        volumes.append({"name": "hf-cache", "emptyDir": {}})
        mounts.append({"name": "hf-cache", "mountPath": WORKER_HF_HOME})
        env += [{"name": "HF_HOME", "value": WORKER_HF_HOME}, {"name": "HF_HUB_OFFLINE", "value": "0"}]
        if spec.hf_token_secret_ref:
            env.append(_secret_env("HF_TOKEN", spec.hf_token_secret_ref))
    return worker_job(owner, step, settings, extra_env=env,
                      volumes=(volumes, mounts), images=spec.images, init=init)  # fmt: skip


SERVELAB_CODE = (
    "/opt/servelab"  # where an engine step finds servelab's worker code (copied from a worker image)
)


def engine_step_job(owner: Owner, spec: ServeBenchmarkSpec, step: WorkerStep, settings: Settings) -> Obj:
    """A step that runs the engine itself (`servelab worker offline`: vLLM's offline benchmark) as a Job in the
    engine's image (the server's: step.engine_image). It sees the model where the server does (the same
    mounts as benchmark_step_job), runs as the server's uid with HOME and the Hugging Face cache on an
    emptyDir, the Hub token from its Secret, the server's /dev/shm, GPUs, CPU, memory and placement. Engine
    images have Python and pydantic but not servelab: an init container copies servelab's worker code from
    the evalscope worker image into an emptyDir on PYTHONPATH."""
    assert step.engine_image
    job = benchmark_step_job(owner, spec, step, settings)
    pod = job["spec"]["template"]["spec"]
    container = pod["containers"][0]
    code = {"name": "servelab-code", "mountPath": SERVELAB_CODE}
    copy = {
        "name": "servelab-code", "image": step_image(replace(step, image_name="evalscope"), spec.images, settings),
        "imagePullPolicy": container["imagePullPolicy"],
        "command": ["cp", "-R", "/opt/servelab/operator", f"{SERVELAB_CODE}/"], "volumeMounts": [code],
        "securityContext": dict(CONTAINER_SECURITY),
        "resources": {"limits": {"cpu": settings.worker_cpu, "memory": settings.worker_memory},
                      "requests": {"cpu": settings.worker_cpu, "memory": settings.worker_memory}},
    }  # fmt: skip
    pod["initContainers"] = [copy, *pod.get("initContainers", [])]
    env = [{"name": "PYTHONPATH", "value": f"{SERVELAB_CODE}/operator"}, {"name": "HOME", "value": SERVER_HOME},
           {"name": "HF_HOME", "value": f"{SERVER_HOME}/.cache/huggingface"}]  # fmt: skip
    if spec.hf_token_secret_ref:
        env.append(_secret_env("HF_TOKEN", spec.hf_token_secret_ref))
    container["env"] += env
    container["image"] = step.engine_image
    container["command"] = ["python3", "-m", "servelab", *step.argv[1:]]
    mounts = [code, {"name": "cache", "mountPath": SERVER_HOME}]
    volumes: list[Obj] = [{"name": "servelab-code", "emptyDir": {}}, {"name": "cache", "emptyDir": {}}]
    if get_engine(spec.engine.name).needs_shm:
        volumes.append({"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": spec.shm_size}})
        mounts.append({"name": "dshm", "mountPath": "/dev/shm"})
    container["volumeMounts"] += mounts
    pod["volumes"] += volumes
    limits: Obj = {"nvidia.com/gpu": str(step.gpus)} if step.gpus else {}
    if spec.resources and spec.resources.cpu:
        limits["cpu"] = spec.resources.cpu
    if spec.resources and spec.resources.memory:
        limits["memory"] = spec.resources.memory
    container["resources"] = {"limits": limits, "requests": dict(limits)}
    pod["securityContext"] = {**POD_SECURITY, "runAsUser": SERVER_UID, "runAsGroup": SERVER_UID}
    _placement(pod, spec.placement)
    return job


Ref = tuple[str, str, str]  # (apiVersion, kind, name) of a child


def server_refs(owner: Owner) -> list[Ref]:
    name = owner.child("server")
    return [("apps/v1", "Deployment", name), ("v1", "Service", name)]


def decision_objects(
    owner: Owner, spec: ServeBenchmarkSpec | QuantJobSpec, decision: Decision, settings: Settings
) -> tuple[list[Obj], list[Ref]]:
    """The decided actions as Kubernetes objects to create and children to delete."""
    create: list[Obj] = []
    delete: list[Ref] = list(decision.stale)
    for action in decision.actions:
        if isinstance(action, CreateServer):
            assert isinstance(spec, ServeBenchmarkSpec)
            create += worker_rbac(owner, settings)
            create += server_objects(owner, spec, action.launch, action.image, settings, action.source,
                                     action.prepare)  # fmt: skip
        elif isinstance(action, RunStep):
            if isinstance(spec, QuantJobSpec):
                create += worker_rbac(owner, settings)
                create.append(quantize_job(owner, spec, action.step, settings))
            elif action.step.engine_image:  # before the server: its service account is created here too
                create += worker_rbac(owner, settings)
                create.append(engine_step_job(owner, spec, action.step, settings))
            else:
                if "--wait-ready" in action.step.argv:  # the sweep's client may start before the server
                    create += worker_rbac(owner, settings)
                create.append(benchmark_step_job(owner, spec, action.step, settings))
        elif isinstance(action, CreateScoreRun):
            create.append(score_benchmark(owner, action.name, action.run, settings))
        elif isinstance(action, DeleteServer):
            delete += server_refs(owner)
    unique = {(o["kind"], o["metadata"]["name"]): o for o in reversed(create)}  # RBAC once per decision
    return [o for o in create if unique.get((o["kind"], o["metadata"]["name"])) is o], delete
