"""The pods the model step adds, as a real apiserver takes them: the server's Deployment and the llama-bench
and quantize Jobs with the model step as an init container, a ModelScope emptyDir or the model's PVC
mounted, in a namespace enforcing Pod Security `restricted` (each pod template is also created as a Pod,
dry-run, so the enforcing admission judges it; Deployments and Jobs only warn)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from servelab import core
from servelab.api.quantjob import QuantJobSpec
from servelab.api.servebenchmark import ServeBenchmarkSpec
from servelab.controller import render
from servelab.controller.kube import cluster_site
from servelab.controller.settings import Settings
from servelab.core import Observed, Owner, ServerState
from servelab_dev.kubelet import wait_for

pytestmark = pytest.mark.integration
SETTINGS = Settings()
SITE = cluster_site(SETTINGS)
BENCH = {"engine": {"name": "llamacpp"}, "llamaBench": {"promptTokens": [64], "genTokens": [16]}}


def benchmark_objects(ns: str, name: str, model: dict[str, Any]) -> list[dict[str, Any]]:
    """The server's objects (first decision) and the llama-bench Job (once the server is ready)."""
    spec = ServeBenchmarkSpec.model_validate({**BENCH, "model": model})
    owner = Owner("ServeBenchmark", name, ns, f"uid-{name}", 1)
    now = datetime.now(UTC)
    first = core.decide_benchmark(owner, spec, Observed(generation=1, status={}, now=now), SITE)
    objs = render.decision_objects(owner, spec, first, SETTINGS)[0]
    ready = Observed(
        generation=1, status=first.status.to_wire(), now=now, server=ServerState(exists=True, ready=True)
    )
    second = core.decide_benchmark(owner, spec, ready, SITE)
    return objs + render.decision_objects(owner, spec, second, SETTINGS)[0]


def quantjob_objects(ns: str) -> list[dict[str, Any]]:
    spec = QuantJobSpec.model_validate({
        "model": {"modelScope": {"id": "Qwen/Qwen3-0.6B"}}, "method": "gguf",
        "gguf": {"imatrix": False, "variants": [{"type": "Q4_K_M"}]}, "output": {"path": "/out"}})  # fmt: skip
    owner = Owner("QuantJob", "qj", ns, "uid-qj", 1)
    d = core.decide_quantjob(owner, spec, Observed(generation=1, status={}, now=datetime.now(UTC)), SITE)
    return render.decision_objects(owner, spec, d, SETTINGS)[0]


def _dry_run_pod(core_v1: client.CoreV1Api, ns: str, pod: dict[str, Any]) -> Any:
    """The pod, dry-run created; None while the ServiceAccount admission does not find the
    ServiceAccount just created."""
    try:
        return core_v1.create_namespaced_pod(ns, pod, dry_run="All")
    except ApiException as err:
        if err.status == 403 and "serviceaccount" in str(err.body) and "not found" in str(err.body):
            return None
        raise


def admit(kube: client.ApiClient, ns: str, objs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Create the RBAC objects, the rest dry-run, and every pod template as a Pod (dry-run); the pod specs."""
    api = kube.sanitize_for_serialization
    core_v1, apps, batch = client.CoreV1Api(kube), client.AppsV1Api(kube), client.BatchV1Api(kube)
    rbac = client.RbacAuthorizationV1Api(kube)
    pods = []
    for obj in objs:
        kind = obj["kind"]
        # the owner (uid-...) does not exist: the garbage collector would delete the RBAC objects created
        # here before the pods are judged (seen on a busy CI machine), so they are created unowned
        obj = {**obj, "metadata": {k: v for k, v in obj["metadata"].items() if k != "ownerReferences"}}
        if kind == "ServiceAccount":
            core_v1.create_namespaced_service_account(ns, obj)
        elif kind == "Role":
            rbac.create_namespaced_role(ns, obj)
        elif kind == "RoleBinding":
            rbac.create_namespaced_role_binding(ns, obj)
        elif kind == "Service":
            core_v1.create_namespaced_service(ns, obj, dry_run="All")
        elif kind in ("Deployment", "Job"):
            (apps.create_namespaced_deployment if kind == "Deployment" else batch.create_namespaced_job)(
                ns, obj, dry_run="All"
            )
            template = obj["spec"]["template"]
            pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"{obj['metadata']['name']}-x",
                   "labels": template["metadata"]["labels"]}, "spec": template["spec"]}  # fmt: skip
            created = wait_for(lambda pod=pod: _dry_run_pod(core_v1, ns, pod), 30,
                               f"{pod['metadata']['name']} admitted once its ServiceAccount is seen")  # fmt: skip
            pods.append(api(created)["spec"])
    return pods


def test_model_step_pods_meet_restricted_pod_security(kube: client.ApiClient, namespace: str) -> None:
    client.CoreV1Api(kube).patch_namespace(
        namespace, {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "restricted"}}}
    )
    ms = {"modelScope": {"id": "Qwen/Qwen3-8B-GGUF", "file": "Qwen3-8B-Q4_K_M.gguf"}}
    server, bench = admit(kube, namespace, benchmark_objects(namespace, "ms", ms))
    for pod in (server, bench):  # the model step first, then the program, on the shared volume
        (init,) = pod["initContainers"]
        assert init["name"] == "model" and init["command"][:5] == ["servelab", "worker", "model", "--modelscope",
                                                                   "Qwen/Qwen3-8B-GGUF"]  # fmt: skip
        assert {"name": "modelscope", "emptyDir": {}} in pod["volumes"]
        assert init["terminationMessagePath"] == "/dev/termination-log"  # defaulted: where its report goes
    pvc = {"pvc": {"claimName": "models", "path": "q/m.gguf"}}
    server, bench = admit(kube, namespace, benchmark_objects(namespace, "pvc", pvc))
    claim = {"name": "model", "persistentVolumeClaim": {"claimName": "models", "readOnly": True}}
    assert claim in server["volumes"] and claim in bench["volumes"]
    (quantize,) = admit(kube, namespace, quantjob_objects(namespace))
    assert quantize["initContainers"][0]["command"][3:5] == ["--modelscope", "Qwen/Qwen3-0.6B"]
