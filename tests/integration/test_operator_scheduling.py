"""The operator against the real control plane, where nothing has to execute: GPU scheduling of the
server, unschedulable and never-ready servers, a missing QuantJob, deletion cleaning up every child."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException
from operator_fixtures import RunningOperator

from servelab import GROUP, VERSION
from servelab.names import child_name
from servelab_dev.kubelet import wait_for
from servelab_dev.results import publish_job_result

pytestmark = pytest.mark.integration
CLIENT_READY = {"kind": "perf", "partial": True, "clientReady": True, "points": []}


@pytest.fixture(autouse=True)
def clients_ready(kube: client.ApiClient, namespace: str) -> Iterator[None]:
    """What a sweep's worker publishes once its client process is up (the operator creates the server only
    then; kwok runs no worker here): the client-ready result, where its Job's environment says."""
    batch, core, done, stop = client.BatchV1Api(kube), client.CoreV1Api(kube), set(), threading.Event()

    def publish() -> None:
        while not stop.wait(0.3):
            try:
                jobs = batch.list_namespaced_job(namespace, label_selector=f"{GROUP}/step=load").items
            except ApiException:
                continue
            for job in jobs:
                if job.metadata.uid in done:
                    continue
                publish_job_result(
                    core, job, CLIENT_READY, replace=False
                )  # once: later results are the test's
                done.add(job.metadata.uid)

    thread = threading.Thread(target=publish, name="clients-ready", daemon=True)
    thread.start()
    yield
    stop.set()
    thread.join(5)


def create_sb(kube: client.ApiClient, ns: str, name: str, spec: dict[str, Any]) -> None:
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ServeBenchmark",
        "metadata": {"name": name},
        "spec": spec,
    }
    client.CustomObjectsApi(kube).create_namespaced_custom_object(GROUP, VERSION, ns, "servebenchmarks", body)


def get_sb(kube: client.ApiClient, ns: str, name: str) -> dict[str, Any]:
    obj: dict[str, Any] = client.CustomObjectsApi(kube).get_namespaced_custom_object(
        GROUP, VERSION, ns, "servebenchmarks", name
    )
    return obj


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any] | None:
    return next((c for c in (obj.get("status") or {}).get("conditions", []) if c["type"] == type_), None)


def vllm(tp: int, **over: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "model": {"huggingFace": {"id": "Qwen/Qwen3-4B-Instruct-2507"}},
        "engine": {"name": "vllm", "tensorParallelSize": tp},
        "load": {"parallel": [1], "number": [1]},
        "placement": {"nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}},
        "isolation": {"exclusiveNode": False},
        "timeouts": {"serverReadySeconds": 600},
    }
    spec.update(over)
    return spec


def server_pod(kube: client.ApiClient, ns: str, name: str) -> Any:
    pods = (
        client.CoreV1Api(kube)
        .list_namespaced_pod(ns, label_selector=f"servelab.dev/name={name},servelab.dev/component=server")
        .items
    )
    return pods[0] if pods else None  # fmt: skip


def test_tensor_parallel_server_lands_where_gpus_are_free_else_pending_with_reason(
    kube: client.ApiClient, namespace: str, operator: RunningOperator
) -> None:
    create_sb(kube, namespace, "big", vllm(8))
    pod = wait_for(
        lambda: (p := server_pod(kube, namespace, "big")) and p.spec.node_name and p, 60, "big scheduled"
    )
    assert pod.spec.node_name == "gpu-h100-0"  # the only H100 node with 8 GPUs
    limits = pod.spec.containers[0].resources.limits
    assert limits["nvidia.com/gpu"] == "8"
    create_sb(kube, namespace, "tp2", vllm(2))
    pod = wait_for(
        lambda: (p := server_pod(kube, namespace, "tp2")) and p.spec.node_name and p, 60, "tp2 scheduled"
    )
    assert pod.spec.node_name == "gpu-h100-1"  # the only H100 node with 2 free GPUs left
    create_sb(kube, namespace, "tp2-none-free", vllm(2))

    def pending_with_reason() -> dict[str, Any] | None:
        obj = get_sb(kube, namespace, "tp2-none-free")
        ready = condition(obj, "ServerReady")
        return obj if ready and ready["reason"] == "Unschedulable" else None

    obj = wait_for(pending_with_reason, 60, "Unschedulable in status")
    assert obj["status"]["phase"] == "Pending"
    assert "Insufficient nvidia.com/gpu" in condition(obj, "ServerReady")["message"]  # type: ignore[index]
    assert "Insufficient nvidia.com/gpu" in obj["status"]["progress"]["step"]
    wide = get_sb(kube, namespace, "tp2")["status"]
    assert (
        wide["provenance"]["node"] == "gpu-h100-1"
        and wide["provenance"]["gpuProduct"] == "NVIDIA-H100-80GB-HBM3"
    )


def test_isolation_keeps_benchmark_servers_apart(
    kube: client.ApiClient, namespace: str, operator: RunningOperator
) -> None:
    l40s = {"nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-L40S"}}
    create_sb(kube, namespace, "a", vllm(1, placement=l40s, isolation={"exclusiveNode": True}))
    wait_for(lambda: (p := server_pod(kube, namespace, "a")) and p.spec.node_name, 60, "a scheduled")
    create_sb(kube, namespace, "b", vllm(1, placement=l40s, isolation={"exclusiveNode": True}))

    def b_unschedulable() -> dict[str, Any] | None:
        ready = condition(get_sb(kube, namespace, "b"), "ServerReady")
        return ready if ready and ready["reason"] == "Unschedulable" else None

    ready = wait_for(b_unschedulable, 60, "b refused by anti-affinity")
    assert "anti-affinity" in ready["message"]  # the L40S node has GPUs left, but holds another benchmark


def test_server_never_ready_fails_with_reason_and_is_torn_down(
    kube: client.ApiClient, namespace: str, operator: RunningOperator
) -> None:
    # no executor runs this pod: the health endpoint never answers
    create_sb(kube, namespace, "slow", vllm(1, timeouts={"serverReadySeconds": 10}))
    obj = wait_for(lambda: (o := get_sb(kube, namespace, "slow")).get("status", {}).get("phase") == "Failed" and o,
                   90, "Failed")  # fmt: skip
    failed = condition(obj, "Failed")
    assert failed and failed["status"] == "True" and failed["reason"] == "ServerNotReady"
    apps = client.AppsV1Api(kube)
    wait_for(lambda: not apps.list_namespaced_deployment(namespace).items, 30, "server Deployment deleted")
    events = client.CoreV1Api(kube).list_namespaced_event(namespace).items
    assert any(e.reason == "ServerNotReady" and e.involved_object.name == "slow" for e in events)


def test_missing_quantjob_fails_with_reason(
    kube: client.ApiClient, namespace: str, operator: RunningOperator
) -> None:
    import dataclasses

    import servelab.controller.handlers as handlers

    old = handlers.SETTINGS
    handlers.SETTINGS = dataclasses.replace(old, quantjob_grace_seconds=3)
    try:
        spec = vllm(1)
        del spec["model"]
        spec["quantJobRef"] = {"name": "does-not-exist"}
        create_sb(kube, namespace, "orphan", spec)
        obj = wait_for(lambda: (o := get_sb(kube, namespace, "orphan")).get("status", {}).get("phase") == "Failed" and o,
                       60, "Failed")  # fmt: skip
    finally:
        handlers.SETTINGS = old
    assert condition(obj, "Failed")["reason"] == "QuantJobNotFound"  # type: ignore[index]
    assert "does-not-exist" in obj["status"]["message"]


def test_deleting_a_benchmark_removes_every_child(
    kube: client.ApiClient, namespace: str, operator: RunningOperator
) -> None:
    create_sb(kube, namespace, "gone", vllm(1))
    core, apps, rbac = client.CoreV1Api(kube), client.AppsV1Api(kube), client.RbacAuthorizationV1Api(kube)
    sel = "servelab.dev/name=gone"
    wait_for(
        lambda: apps.list_namespaced_deployment(namespace, label_selector=sel).items, 60, "server created"
    )
    assert core.list_namespaced_service(namespace, label_selector=sel).items
    assert core.list_namespaced_service_account(namespace, label_selector=sel).items
    client.CustomObjectsApi(kube).delete_namespaced_custom_object(
        GROUP, VERSION, namespace, "servebenchmarks", "gone"
    )

    def all_gone() -> bool:
        return not any([
            apps.list_namespaced_deployment(namespace, label_selector=sel).items,
            core.list_namespaced_service(namespace, label_selector=sel).items,
            core.list_namespaced_service_account(namespace, label_selector=sel).items,
            rbac.list_namespaced_role(namespace, label_selector=sel).items,
            core.list_namespaced_pod(namespace, label_selector=sel).items,
        ])  # fmt: skip

    wait_for(all_gone, 90, "garbage collection of every child")


def test_every_example_is_reconciled(
    kube: client.ApiClient, namespace: str, operator: RunningOperator
) -> None:
    from servelab.manifests import load_manifests
    from servelab.paths import repo_path

    api = client.CustomObjectsApi(kube)
    resources = [r for r in load_manifests(repo_path("examples")) if r.source != "tiny-gguf-comparison.yaml"]
    for res in resources:
        plural = {"QuantJob": "quantjobs", "ServeBenchmark": "servebenchmarks"}[res.kind]
        api.create_namespaced_custom_object(GROUP, VERSION, namespace, plural, res.body)

    def all_reconciled() -> list[str] | None:
        phases = []
        for res in resources:
            plural = {"QuantJob": "quantjobs", "ServeBenchmark": "servebenchmarks"}[res.kind]
            obj = api.get_namespaced_custom_object(GROUP, VERSION, namespace, plural, res.name)
            phase = (obj.get("status") or {}).get("phase")
            if phase is None:
                return None
            phases.append(f"{res.name}={phase}")
        return phases

    phases = wait_for(all_reconciled, 120, "a status on every example")
    by_name = dict(p.split("=") for p in phases)
    # QuantJobs started their Job; benchmarks on a QuantJob wait for it; the others created their server
    jobs = {j.metadata.name for j in client.BatchV1Api(kube).list_namespaced_job(namespace).items}
    assert {
        "qwen3-4b-w4a16-g128-q1-quantize",
        "qwen3-4b-gguf-q1-quantize",
        "qwen3-8b-awq-q1-quantize",
    } <= jobs
    assert by_name["qwen3-4b-iq4xs-llamacpp"] == "Waiting" and by_name["qwen3-8b-awq-vllm"] == "Waiting"
    deployments = {
        d.metadata.name for d in client.AppsV1Api(kube).list_namespaced_deployment(namespace).items
    }
    # a name with a dot: its children get a valid DNS-1035 name (hashed), so its Service can exist
    dotted = child_name("ServeBenchmark", "glm-4.7-flash-sglang-eagle", 1, "server")
    assert dotted.startswith("glm-4-7-flash-sglang-eagle-g1-server-")
    assert {"qwen3-4b-bf16-vllm-g1-server", dotted} <= deployments
    services = {s.metadata.name for s in client.CoreV1Api(kube).list_namespaced_service(namespace).items}
    assert dotted in services


def test_changed_spec_of_a_finished_benchmark_starts_a_new_run(
    kube: client.ApiClient, namespace: str, operator: RunningOperator
) -> None:
    create_sb(kube, namespace, "again", vllm(1, timeouts={"serverReadySeconds": 10}))
    wait_for(
        lambda: get_sb(kube, namespace, "again").get("status", {}).get("phase") == "Failed",
        90,
        "first run Failed",
    )
    first = get_sb(kube, namespace, "again")
    assert first["status"]["observedGeneration"] == first["metadata"]["generation"] == 1
    client.CustomObjectsApi(kube).patch_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        "servebenchmarks",
        "again",
        {"spec": {"timeouts": {"serverReadySeconds": 600}}},
    )

    def second_run() -> dict[str, Any] | None:
        obj = get_sb(kube, namespace, "again")
        return obj if obj.get("status", {}).get("observedGeneration") == 2 else None

    obj = wait_for(second_run, 60, "observedGeneration 2")
    assert obj["status"]["phase"] in ("Running", "Pending") and obj["metadata"]["generation"] == 2
    assert condition(obj, "Failed")["status"] == "False"  # type: ignore[index]
    apps = client.AppsV1Api(kube)
    wait_for(lambda: {d.metadata.name for d in apps.list_namespaced_deployment(namespace).items} == {"again-g2-server"},
             60, "only the new run's server")  # fmt: skip
