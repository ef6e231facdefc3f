"""Chaos on the real control plane: the operator SIGKILLed at each step boundary of a run, the apiserver and
etcd restarted mid-run, a worker pod deleted mid-point, the fake node under a server deleted, a quota that
forbids a Job or its pods, two operator replicas. The operator runs as its own process with the chart's
ServiceAccount (namespaced RBAC); pods are stepped by a stand-in kubelet (chaos_support.FakeKubelet), so
each boundary is reached exactly, and nothing heavier than the control plane runs."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

import pytest
from chaos_support import (
    Creations,
    FakeKubelet,
    OperatorProcess,
    benchmark,
    condition,
    create_benchmark,
    events,
    job_names,
    load_spec,
    pods_of_job,
    points,
    restart_components,
)
from kubernetes import client
from operator_fixtures import enforce_restricted, operator_kubeconfig

from servelab.names import child_name
from servelab_dev.controlplane import FakeNode, LocalCluster
from servelab_dev.kubelet import wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def op(cluster: LocalCluster, namespace: str, tmp_path: Path) -> Any:
    enforce_restricted(cluster, namespace)
    kubeconfig, _ = operator_kubeconfig(cluster, namespace, tmp_path)
    proc = OperatorProcess(kubeconfig, namespace, tmp_path / "operator.log")
    yield proc
    proc.stop()
    print(proc.output()[-4000:])


def phase(kube: client.ApiClient, ns: str, name: str) -> str | None:
    return (benchmark(kube, ns, name).get("status") or {}).get("phase")


def finished(kube: client.ApiClient, ns: str, name: str, timeout: float = 90) -> dict[str, Any]:
    obj: dict[str, Any] = wait_for(lambda: (o := benchmark(kube, ns, name)).get("status", {}).get("phase")
                                   in ("Succeeded", "Failed") and o, timeout, f"{name} finished")  # fmt: skip
    return obj


def test_operator_killed_at_each_step_boundary_repeats_and_loses_nothing(
    kube: client.ApiClient, namespace: str, op: OperatorProcess
) -> None:
    ns, name = namespace, "killed"
    job = lambda step: child_name("ServeBenchmark", name, 1, step)  # noqa: E731
    apps, batch = client.AppsV1Api(kube), client.BatchV1Api(kube)
    created = Creations(kube, ns)
    with FakeKubelet(kube, ns) as kubelet:
        op.start()
        create_benchmark(kube, ns, name, load_spec(1, 1, 2))
        # 1. the sweep's Job created, its client ready, then the server created
        wait_for(lambda: apps.list_namespaced_deployment(ns).items, 60, "server Deployment")
        op.kill()
        op.start()
        # 2. the server ready
        kubelet.serve = True
        wait_for(lambda: (c := condition(benchmark(kube, ns, name), "ServerReady")) and c["status"] == "True",
                 60, "ServerReady in status")  # fmt: skip
        op.kill()
        op.start()
        # 3. the sweep's first point published and folded into status while its Job runs
        kubelet.release("load-0")
        wait_for(lambda: points(benchmark(kube, ns, name)) == [1], 60, "first point in status")
        op.kill()
        # 4. the second point published while no operator runs (folded after the restart)
        kubelet.release("load-1")
        op.start()
        wait_for(lambda: points(benchmark(kube, ns, name)) == [1, 1], 60, "second point in status")
        assert not _job_done(batch, ns, job("load"))  # still the same Job, one client, one point to go
        op.kill()
        op.start()
        # 5. teardown: the last point done, killed as soon as the sweep's Job is
        kubelet.release("load-2")
        wait_for(lambda: _job_done(batch, ns, job("load")), 60, "the sweep done")
        op.kill()
        op.start()
        obj = finished(kube, ns, name)
    created.stop()
    assert obj["status"]["phase"] == "Succeeded", obj["status"]
    assert points(obj) == [1, 1, 2]  # no point lost, none twice
    assert job_names(kube, ns) == [job("load")]  # one Job for the sweep
    assert len(pods_of_job(kube, ns, job("load"))) == 1  # it ran once: one client process for every point
    assert created.repeated() == {}, created.repeated()  # no child created twice (by uid)
    wait_for(lambda: not apps.list_namespaced_deployment(ns).items, 30, "server torn down")
    seen = events(kube, ns, name)
    assert all(seen[r] <= 1 for r in ("Started", "ServerCreated", "ServerReady", "Succeeded")), seen
    assert not kubelet.errors, kubelet.errors


def _job_done(batch: client.BatchV1Api, ns: str, name: str) -> bool:
    try:
        return bool(batch.read_namespaced_job(name, ns).status.succeeded)
    except client.ApiException as err:
        if err.status == 404:
            return False
        raise


def test_apiserver_and_etcd_restarted_mid_run(
    kube: client.ApiClient, namespace: str, cluster: LocalCluster, op: OperatorProcess
) -> None:
    if not cluster.state().get("processes", {}).get("etcd"):
        pytest.skip("the cluster's processes are not recorded here")
    ns, name = namespace, "restarted-cp"
    created = Creations(kube, ns)
    with FakeKubelet(kube, ns) as kubelet:
        op.start()
        kubelet.serve = True
        create_benchmark(kube, ns, name, load_spec(1, 2))
        kubelet.release("load-0")
        wait_for(lambda: points(benchmark(kube, ns, name)) == [1], 90, "first point in status")
        restart_components(cluster, "etcd", "kube-apiserver")
        kubelet.errors.clear()
        kubelet.release("load-1")
        obj = finished(kube, ns, name, 120)
    created.stop()
    assert obj["status"]["phase"] == "Succeeded", obj["status"]
    assert points(obj) == [1, 2]
    assert op.alive(), "the operator rode out the restart"
    assert created.repeated() == {}, created.repeated()
    seen = events(kube, ns, name)
    assert all(seen[r] <= 1 for r in ("Started", "ServerCreated", "ServerReady", "Succeeded")), seen


def test_worker_pod_deleted_mid_point_fails_the_point_with_its_reason(
    kube: client.ApiClient, namespace: str, op: OperatorProcess
) -> None:
    ns, name = namespace, "pod-deleted"
    job = child_name("ServeBenchmark", name, 1, "load")
    with FakeKubelet(kube, ns) as kubelet:
        op.start()
        kubelet.serve = True
        create_benchmark(kube, ns, name, load_spec(1, 2))
        kubelet.release("load-0")
        wait_for(lambda: points(benchmark(kube, ns, name)) == [1], 90, "first point in status")
        pod = wait_for(lambda: next((p for p in pods_of_job(kube, ns, job) if p.status.phase == "Running"), None),
                       90, "the sweep running its second point")  # fmt: skip
        client.CoreV1Api(kube).delete_namespaced_pod(pod.metadata.name, ns)
        obj = finished(kube, ns, name)
    failed = condition(obj, "Failed")
    assert obj["status"]["phase"] == "Failed" and failed and failed["reason"] == "LoadFailed", obj["status"]
    assert "load 2/2" in obj["status"]["message"]
    assert points(obj) == [1]  # the point measured before stays
    wait_for(lambda: not client.AppsV1Api(kube).list_namespaced_deployment(ns).items, 30, "server torn down")


def test_node_under_the_server_deleted_and_back(
    kube: client.ApiClient, namespace: str, op: OperatorProcess
) -> None:
    ns, name, node = namespace, "node-lost", f"chaos-{namespace}"[:60]
    core = client.CoreV1Api(kube)
    manifest = FakeNode(node, cpu="32", memory="256Gi", gpus=2, gpu_product="NVIDIA-CHAOS").manifest()
    manifest["metadata"]["labels"]["servelab.dev/test-node"] = node
    core.create_node(manifest)
    try:
        with FakeKubelet(kube, ns) as kubelet:
            op.start()
            kubelet.serve = True
            spec = load_spec(1, placement={"nodeSelector": {"servelab.dev/test-node": node}})
            create_benchmark(kube, ns, name, spec)
            wait_for(lambda: (c := condition(benchmark(kube, ns, name), "ServerReady")) and c["status"] == "True",
                     90, "server ready on the node")  # fmt: skip
            assert benchmark(kube, ns, name)["status"]["provenance"]["node"] == node
            core.delete_node(node)
            # its pods are garbage-collected; the new one cannot be scheduled: the run says so and waits
            ready = wait_for(lambda: (c := condition(benchmark(kube, ns, name), "ServerReady")) and c["status"] != "True" and c,
                             150, "server no longer ready")  # fmt: skip
            assert ready["reason"] in ("Unschedulable", "ServerStarting"), ready
            core.create_node(manifest)
            kubelet.release("load-0")
            obj = finished(kube, ns, name, 150)
    finally:
        with contextlib.suppress(client.ApiException):
            core.delete_node(node)
    assert obj["status"]["phase"] == "Succeeded", obj["status"]
    assert points(obj) == [1]


def test_quota_forbidding_the_job_is_a_clear_condition_not_a_retry_loop(
    kube: client.ApiClient, namespace: str, op: OperatorProcess
) -> None:
    ns = namespace
    core = client.CoreV1Api(kube)
    quota = client.V1ResourceQuota(metadata=client.V1ObjectMeta(name="no-jobs"),
                                   spec=client.V1ResourceQuotaSpec(hard={"count/jobs.batch": "0"}))  # fmt: skip
    core.create_namespaced_resource_quota(ns, quota)
    wait_for(lambda: core.read_namespaced_resource_quota("no-jobs", ns).status.hard, 30, "quota active")
    op.start()
    create_benchmark(kube, ns, "no-jobs", load_spec(1))
    obj = finished(kube, ns, "no-jobs", 60)
    failed = condition(obj, "Failed")
    assert failed and failed["reason"] == "ChildRefused" and "exceeded quota" in failed["message"], obj[
        "status"
    ]
    time.sleep(5)  # nothing retries: the status stays as it was, one Event says why
    assert benchmark(kube, ns, "no-jobs")["status"] == obj["status"]
    assert events(kube, ns, "no-jobs")["ChildRefused"] == 1
    wait_for(lambda: not client.AppsV1Api(kube).list_namespaced_deployment(ns).items, 30, "server torn down")


def test_quota_forbidding_a_jobs_pods_fails_the_step_with_the_quota(
    kube: client.ApiClient, namespace: str, op: OperatorProcess
) -> None:
    ns = namespace
    core = client.CoreV1Api(kube)
    # the server (512Mi) fits, a worker pod (2Gi) does not: the Job exists but its pods are refused
    quota = client.V1ResourceQuota(metadata=client.V1ObjectMeta(name="small"),
                                   spec=client.V1ResourceQuotaSpec(hard={"requests.memory": "1Gi"}))  # fmt: skip
    core.create_namespaced_resource_quota(ns, quota)
    wait_for(lambda: core.read_namespaced_resource_quota("small", ns).status.hard, 30, "quota active")
    with FakeKubelet(kube, ns) as kubelet:
        kubelet.serve = True
        op.start()
        create_benchmark(kube, ns, "small", load_spec(1, resources={"cpu": "1", "memory": "512Mi"}))
        obj = finished(kube, ns, "small", 90)
    failed = condition(obj, "Failed")
    assert failed and failed["reason"] == "LoadFailed", obj["status"]
    assert "exceeded quota" in failed["message"], failed


KOPF_PEERING_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "kopfpeerings.kopf.dev"},
    "spec": {"scope": "Namespaced", "group": "kopf.dev",
             "names": {"kind": "KopfPeering", "plural": "kopfpeerings", "singular": "kopfpeering"},
             "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
                 "type": "object", "properties": {"status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
                 "x-kubernetes-preserve-unknown-fields": True}}}]},
}  # fmt: skip


def test_two_replicas_one_acts(
    kube: client.ApiClient, namespace: str, cluster: LocalCluster, tmp_path: Path
) -> None:
    ns, name = namespace, "two-replicas"
    ext = client.ApiextensionsV1Api(kube)
    try:
        ext.create_custom_resource_definition(KOPF_PEERING_CRD)
    except client.ApiException as err:
        if err.status != 409:
            raise
    custom = client.CustomObjectsApi(kube)
    wait_for(lambda: _established(ext), 30, "KopfPeering CRD")
    custom.create_namespaced_custom_object("kopf.dev", "v1", ns, "kopfpeerings",
                                           {"apiVersion": "kopf.dev/v1", "kind": "KopfPeering", "metadata": {"name": "chaos"}})  # fmt: skip
    # peering needs its own rights (kopf.dev): these replicas run as the cluster's admin
    a = OperatorProcess(cluster.kubeconfig, ns, tmp_path / "a.log", "--peering", "chaos", "--priority", "200")
    b = OperatorProcess(cluster.kubeconfig, ns, tmp_path / "b.log", "--peering", "chaos", "--priority", "100")
    created = Creations(kube, ns)
    try:
        with FakeKubelet(kube, ns) as kubelet:
            a.start()
            wait_for(lambda: "Resuming operations" in a.output(), 90, "replica a announced")
            b.start()
            wait_for(lambda: "Initial authentication has finished" in b.output(), 90, "replica b started")
            time.sleep(2)
            assert "Resuming operations" not in b.output(), "replica b must wait while a runs"
            kubelet.serve, kubelet.release_all = True, True
            create_benchmark(kube, ns, name, load_spec(1, 2))
            obj = finished(kube, ns, name, 120)
            wait_for(
                lambda: not client.AppsV1Api(kube).list_namespaced_deployment(ns).items,
                30,
                "server torn down",
            )
            wait_for(lambda: events(kube, ns, name)["Succeeded"], 30, "Succeeded event")
            assert a.alive() and b.alive()
    finally:
        a.stop()
        b.stop()
        created.stop()
    assert obj["status"]["phase"] == "Succeeded", obj["status"]
    assert points(obj) == [1, 2]
    assert created.repeated() == {}, created.repeated()
    assert "created Deployment" in a.output() and "created " not in b.output().split("Resuming operations")[0]
    seen = events(kube, ns, name)
    assert all(seen[r] == 1 for r in ("Started", "ServerCreated", "ServerReady", "Succeeded")), seen
    assert seen["StepStarted"] == 1, seen  # one step: the sweep


def _established(ext: client.ApiextensionsV1Api) -> bool:
    crd = ext.read_custom_resource_definition("kopfpeerings.kopf.dev")
    return any(c.type == "Established" and c.status == "True" for c in crd.status.conditions or [])
