"""The local control plane is a real Kubernetes: scheduling, Jobs, garbage collection, RBAC, kubectl.

Every wait is a poll with a deadline; a test fails when the cluster does not reach the expected state.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from servelab_dev.controlplane import (
    EXECUTOR_LABEL,
    FAKE_RESULT_LABEL,
    GPU_RESOURCE,
    FakeNode,
    LocalCluster,
    binaries,
)

pytestmark = pytest.mark.integration

T = TypeVar("T")


def wait_for(what: str, fn: Callable[[], T | None], timeout: float = 60.0, interval: float = 0.2) -> T:
    """Poll `fn` until it returns something truthy; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; last value: {value!r}")
        time.sleep(interval)


def job(name: str, *, gpus: int = 0, labels: dict[str, str] | None = None) -> client.V1Job:
    resources = client.V1ResourceRequirements(limits={GPU_RESOURCE: str(gpus)} if gpus else None)
    container = client.V1Container(name="main", image="busybox:1.37", command=["true"], resources=resources)
    return client.V1Job(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1JobSpec(
            backoff_limit=0,
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels or {}),
                spec=client.V1PodSpec(restart_policy="Never", containers=[container]),
            ),
        ),
    )


def pod(name: str, *, gpus: int, node_selector: dict[str, str] | None = None) -> client.V1Pod:
    resources = client.V1ResourceRequirements(limits={GPU_RESOURCE: str(gpus)})
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1PodSpec(
            containers=[client.V1Container(name="main", image="busybox:1.37", resources=resources)],
            node_selector=node_selector,
        ),
    )


def job_condition(batch: client.BatchV1Api, namespace: str, name: str, kind: str) -> client.V1Job | None:
    found = batch.read_namespaced_job_status(name, namespace)
    conds = found.status.conditions or []
    return found if any(c.type == kind and c.status == "True" for c in conds) else None


def job_pods(core: client.CoreV1Api, namespace: str, name: str) -> list[client.V1Pod]:
    items: list[client.V1Pod] = core.list_namespaced_pod(namespace, label_selector=f"job-name={name}").items
    return items


def gpu_nodes(core: client.CoreV1Api) -> dict[str, int]:
    """Name -> allocatable GPUs of every node that advertises nvidia.com/gpu."""
    nodes = core.list_node().items
    return {
        n.metadata.name: int(n.status.allocatable[GPU_RESOURCE])
        for n in nodes
        if int((n.status.allocatable or {}).get(GPU_RESOURCE, "0")) > 0
    }


def status_code(fn: Callable[[], Any]) -> int:
    try:
        fn()
    except ApiException as err:
        return int(err.status)
    return 200


# ---- (a) GPU Jobs are scheduled onto GPU nodes and complete


def test_gpu_job_scheduled_on_gpu_node_and_completes(kube: client.ApiClient, namespace: str) -> None:
    core, batch = client.CoreV1Api(kube), client.BatchV1Api(kube)
    nodes = gpu_nodes(core)
    assert len(nodes) >= 3, nodes
    products = {core.read_node(n).metadata.labels["nvidia.com/gpu.product"] for n in nodes}
    assert len(products) >= 2, products
    batch.create_namespaced_job(namespace, job("one-gpu", gpus=1))

    done = wait_for("Job one-gpu Complete", lambda: job_condition(batch, namespace, "one-gpu", "Complete"))
    assert done.status.succeeded == 1
    (p,) = job_pods(core, namespace, "one-gpu")
    assert p.status.phase == "Succeeded"
    assert p.spec.node_name in nodes, f"pod ran on {p.spec.node_name}, not on a GPU node {sorted(nodes)}"
    assert p.status.container_statuses[0].state.terminated.exit_code == 0


def test_scheduler_places_pods_by_free_gpus_and_labels(kube: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(kube)
    nodes = gpu_nodes(core)
    biggest = max(nodes, key=lambda n: nodes[n])
    assert sorted(nodes.values())[-1] > sorted(nodes.values())[-2], "needs one node with the most GPUs"
    core.create_namespaced_pod(namespace, pod("all-gpus", gpus=nodes[biggest]))
    core.create_namespaced_pod(
        namespace, pod("l40s", gpus=1, node_selector={"nvidia.com/gpu.product": "NVIDIA-L40S"})
    )

    def node_of(name: str) -> str | None:
        bound: str | None = core.read_namespaced_pod(name, namespace).spec.node_name
        return bound

    assert wait_for("pod all-gpus bound", lambda: node_of("all-gpus")) == biggest
    l40s_node = wait_for("pod l40s bound", lambda: node_of("l40s"))
    assert core.read_node(l40s_node).metadata.labels["nvidia.com/gpu.product"] == "NVIDIA-L40S"
    wait_for(
        "pod all-gpus Running",
        lambda: core.read_namespaced_pod("all-gpus", namespace).status.phase == "Running",
    )


# ---- kwok leaves pods labelled servelab.dev/executor=local alone: a test-side executor runs them


def test_local_executor_pods_are_left_to_the_executor(kube: client.ApiClient, namespace: str) -> None:
    core, batch = client.CoreV1Api(kube), client.BatchV1Api(kube)
    nodes = gpu_nodes(core)
    batch.create_namespaced_job(namespace, job("faked", gpus=1))
    batch.create_namespaced_job(namespace, job("executed", gpus=1, labels={EXECUTOR_LABEL: "local"}))

    def bound() -> client.V1Pod | None:
        pods = job_pods(core, namespace, "executed")
        return pods[0] if len(pods) == 1 and pods[0].spec.node_name else None

    local_pod = wait_for("executor pod bound to a node", bound)
    assert local_pod.spec.node_name in nodes
    name = local_pod.metadata.name
    # kwok's stages run the unlabelled twin to completion; once it is done, the labelled pod must still be
    # untouched: Pending, no container status, no Job completion
    wait_for("Job faked Complete", lambda: job_condition(batch, namespace, "faked", "Complete"))
    untouched = core.read_namespaced_pod(name, namespace)
    assert untouched.status.phase == "Pending"
    assert not untouched.status.container_statuses
    assert job_condition(batch, namespace, "executed", "Complete") is None

    # what the test-side executor does: report Running while the command runs, then its result
    def report(phase: str, state: dict[str, Any], ready: bool) -> None:
        now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        container = {
            "name": "main",
            "image": "busybox:1.37",
            "imageID": "",
            "ready": ready,
            "restartCount": 0,
        }
        conditions = [
            {"type": t, "status": str(ready), "lastTransitionTime": now} for t in ("Ready", "ContainersReady")
        ]
        body = {
            "status": {
                "phase": phase,
                "startTime": now,
                "conditions": conditions,
                "containerStatuses": [container | {"state": state}],
            }
        }
        core.patch_namespaced_pod_status(name, namespace, body)

    now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    report("Running", {"running": {"startedAt": now}}, ready=True)
    assert core.read_namespaced_pod(name, namespace).status.phase == "Running"
    report(
        "Succeeded",
        {"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": now, "finishedAt": now}},
        ready=False,
    )
    done = wait_for("Job executed Complete", lambda: job_condition(batch, namespace, "executed", "Complete"))
    assert done.status.succeeded == 1
    assert (
        core.read_namespaced_pod(name, namespace).status.container_statuses[0].state.terminated.exit_code == 0
    )


def test_fake_result_label_fails_job(kube: client.ApiClient, namespace: str) -> None:
    core, batch = client.CoreV1Api(kube), client.BatchV1Api(kube)
    batch.create_namespaced_job(namespace, job("doomed", labels={FAKE_RESULT_LABEL: "Failed"}))
    failed = wait_for("Job doomed Failed", lambda: job_condition(batch, namespace, "doomed", "Failed"))
    assert failed.status.failed == 1
    (p,) = job_pods(core, namespace, "doomed")
    assert p.status.phase == "Failed"
    assert p.status.container_statuses[0].state.terminated.exit_code == 1


# ---- (b) too many GPUs: Pending, FailedScheduling, Insufficient nvidia.com/gpu


def test_pod_asking_too_many_gpus_stays_pending(kube: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(kube)
    too_many = max(gpu_nodes(core).values()) + 1
    core.create_namespaced_pod(namespace, pod("greedy", gpus=too_many))

    def unschedulable() -> client.V1PodCondition | None:
        conds = core.read_namespaced_pod("greedy", namespace).status.conditions or []
        return next((c for c in conds if c.type == "PodScheduled" and c.status == "False"), None)

    cond = wait_for("PodScheduled=False on pod greedy", unschedulable)
    assert cond.reason == "Unschedulable"
    assert f"Insufficient {GPU_RESOURCE}" in cond.message

    def failed_scheduling() -> list[client.CoreV1Event]:
        events = core.list_namespaced_event(namespace, field_selector="involvedObject.name=greedy").items
        return [e for e in events if e.reason == "FailedScheduling"]

    (event, *_) = wait_for("FailedScheduling event", failed_scheduling)
    assert f"Insufficient {GPU_RESOURCE}" in event.message
    current = core.read_namespaced_pod("greedy", namespace)
    assert current.status.phase == "Pending"
    assert current.spec.node_name is None


# ---- (c) garbage collection of dependents


def test_deleting_owner_garbage_collects_children(kube: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(kube)
    owner = core.create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="owner"), data={"k": "v"})
    )
    ref = client.V1OwnerReference(api_version="v1", kind="ConfigMap", name="owner", uid=owner.metadata.uid)
    core.create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="child", owner_references=[ref]))
    )
    core.create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="bystander"))
    )

    core.delete_namespaced_config_map("owner", namespace, propagation_policy="Background")
    wait_for(
        "child ConfigMap to be collected",
        lambda: status_code(lambda: core.read_namespaced_config_map("child", namespace)) == 404,
    )
    assert status_code(lambda: core.read_namespaced_config_map("bystander", namespace)) == 200


def test_deleting_job_garbage_collects_its_pods(kube: client.ApiClient, namespace: str) -> None:
    core, batch = client.CoreV1Api(kube), client.BatchV1Api(kube)
    batch.create_namespaced_job(namespace, job("short"))
    wait_for("Job short Complete", lambda: job_condition(batch, namespace, "short", "Complete"))
    assert len(job_pods(core, namespace, "short")) == 1
    batch.delete_namespaced_job("short", namespace, propagation_policy="Background")
    wait_for("pods of Job short to be collected", lambda: not job_pods(core, namespace, "short"))
    assert status_code(lambda: batch.read_namespaced_job("short", namespace)) == 404


# ---- (d) RBAC with a real service-account token


def test_rbac_allows_granted_and_refuses_the_rest(kube: client.ApiClient, namespace: str) -> None:
    core, rbac = client.CoreV1Api(kube), client.RbacAuthorizationV1Api(kube)
    core.create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="reader"))
    )
    rbac.create_namespaced_role(
        namespace,
        client.V1Role(
            metadata=client.V1ObjectMeta(name="configmap-reader"),
            rules=[client.V1PolicyRule(api_groups=[""], resources=["configmaps"], verbs=["get", "list"])],
        ),
    )
    rbac.create_namespaced_role_binding(
        namespace,
        client.V1RoleBinding(
            metadata=client.V1ObjectMeta(name="reader"),
            role_ref=client.V1RoleRef(
                api_group="rbac.authorization.k8s.io", kind="Role", name="configmap-reader"
            ),
            subjects=[client.RbacV1Subject(kind="ServiceAccount", name="reader", namespace=namespace)],
        ),
    )
    request = client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=600)
    )
    token = core.create_namespaced_service_account_token("reader", namespace, request).status.token

    def as_bearer(bearer: str) -> client.ApiClient:
        cfg = client.Configuration()
        cfg.host = kube.configuration.host
        cfg.ssl_ca_cert = kube.configuration.ssl_ca_cert
        cfg.api_key = {"authorization": f"Bearer {bearer}"}
        return client.ApiClient(cfg)

    with as_bearer(token) as sa_api:
        review = client.AuthenticationV1Api(sa_api).create_self_subject_review(client.V1SelfSubjectReview())
        assert review.status.user_info.username == f"system:serviceaccount:{namespace}:reader"
        sa_core = client.CoreV1Api(sa_api)
        # the RBAC authorizer works from an informer cache: poll until the fresh binding is visible
        wait_for(
            "granted list of configmaps",
            lambda: status_code(lambda: sa_core.list_namespaced_config_map(namespace)) == 200,
        )
        cm = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="nope"))
        assert status_code(lambda: sa_core.create_namespaced_config_map(namespace, cm)) == 403
        assert status_code(lambda: sa_core.list_namespaced_secret(namespace)) == 403
        assert status_code(lambda: sa_core.list_namespaced_config_map("default")) == 403
        assert status_code(lambda: sa_core.list_node()) == 403
        try:
            sa_core.list_namespaced_secret(namespace)
        except ApiException as err:
            body = json.loads(err.body)
            assert body["reason"] == "Forbidden"
            assert f"system:serviceaccount:{namespace}:reader" in body["message"]
    with as_bearer(token[:-4] + "AAAA") as forged:
        assert status_code(lambda: client.CoreV1Api(forged).list_namespaced_config_map(namespace)) == 401


# ---- (e) the built kubectl sees the GPU nodes Ready


def test_built_kubectl_shows_gpu_nodes_ready(cluster: LocalCluster, kube: client.ApiClient) -> None:
    kubectl = binaries(build=False).path("kubectl")
    env = os.environ | {"KUBECONFIG": str(cluster.kubeconfig)}
    out = subprocess.run(
        [str(kubectl), "get", "nodes", "-l", "nvidia.com/gpu.present=true", "--no-headers"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    rows = {line.split()[0]: line.split()[1] for line in out.splitlines() if line.strip()}
    assert set(rows) == set(gpu_nodes(client.CoreV1Api(kube))), out
    assert set(rows.values()) == {"Ready"}, out

    version = subprocess.run(
        [str(kubectl), "version", "-o", "json"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    assert json.loads(version)["serverVersion"]["gitVersion"] == binaries(build=False).kube_version


# ---- the lifecycle itself: a second, small cluster, started and stopped with nothing left behind


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def test_up_reuse_down_leaves_no_process(tmp_path: Path) -> None:
    nodes = (
        FakeNode(
            "gpu-a10-0", cpu="16", memory="64Gi", gpus=1, gpu_product="NVIDIA-A10", gpu_memory_mib=23028
        ),
    )
    state_dir = tmp_path / "small"
    small = LocalCluster(
        "small", state_dir, nodes=nodes, crd_dir=tmp_path / "no-crds", die_with_parent=True
    ).up(reuse=False, build=False)
    try:
        pids = small.processes()
        assert set(pids) == {"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"}
        assert all(pid and _alive(pid) for pid in pids.values()), pids
        assert all(os.getpgid(pid) == pid for pid in pids.values() if pid), "each component leads its group"
        assert set(small.logs()) == set(pids)

        again = LocalCluster("small", state_dir, nodes=nodes).up()
        assert again.reused and again.kubeconfig == small.kubeconfig and again.processes() == pids

        cli = [sys.executable, "-m", "servelab", "cluster", "--state-dir", str(state_dir)]
        status = subprocess.run([*cli, "status"], capture_output=True, text=True, timeout=60)
        assert status.returncode == 0, status.stdout + status.stderr
        assert "gpu-a10-0" in status.stdout and "Ready=True" in status.stdout
        env_out = subprocess.run([*cli, "env"], capture_output=True, text=True, timeout=60, check=True).stdout
        assert f"export KUBECONFIG={small.kubeconfig}" in env_out

        down = subprocess.run([*cli, "down"], capture_output=True, text=True, timeout=120, check=True)
        assert all(component in down.stdout for component in pids), down.stdout
    finally:
        small.down()
    assert not [pid for pid in pids.values() if pid and _alive(pid)]
    assert small.processes() == {} or not any(small.processes().values())
    assert small.down() == [], "down is idempotent"
    assert not small.is_running()
