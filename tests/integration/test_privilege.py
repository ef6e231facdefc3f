"""Least privilege, for real: the operator holds only the chart's RBAC (a token of its ServiceAccount, never
cluster-admin), in the chart's namespaced and cluster-wide modes; the pods it makes meet Pod Security
`restricted` (the test namespaces enforce it); a Secret's value reaches only the pods that read it as
env, never status, Events, logs, pod arguments or results; a result ConfigMap too large or not a JSON
object fails the run without reaching status."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from chaos_support import (
    FakeKubelet,
    OperatorProcess,
    benchmark,
    condition,
    create_benchmark,
    events,
    load_spec,
    points,
)
from kubernetes import client
from operator_fixtures import (
    RunningOperator,
    chart_rbac,
    enforce_restricted,
    operator_kubeconfig,
    run_operator,
)

from servelab.controller.kube import MAX_RESULT_BYTES
from servelab.names import child_name
from servelab_dev.controlplane import LocalCluster
from servelab_dev.kubelet import PodExecutor, wait_for

pytestmark = pytest.mark.integration


def allowed(kube: client.ApiClient, user: str, verb: str, resource: str, namespace: str | None = None,
            group: str = "", subresource: str = "") -> bool:  # fmt: skip
    attrs = client.V1ResourceAttributes(namespace=namespace, verb=verb, group=group, resource=resource,
                                        subresource=subresource or None)  # fmt: skip
    review = client.V1SubjectAccessReview(
        spec=client.V1SubjectAccessReviewSpec(user=user, resource_attributes=attrs)
    )
    return bool(client.AuthorizationV1Api(kube).create_subject_access_review(review).status.allowed)


def finished(kube: client.ApiClient, ns: str, name: str, timeout: float = 90) -> dict[str, Any]:
    obj: dict[str, Any] = wait_for(lambda: (o := benchmark(kube, ns, name)).get("status", {}).get("phase")
                                   in ("Succeeded", "Failed") and o, timeout, f"{name} finished")  # fmt: skip
    return obj


def test_the_charts_rbac_grants_what_the_operator_needs_and_nothing_else(
    kube: client.ApiClient, cluster: LocalCluster, namespace: str, tmp_path: Path
) -> None:
    _, ns_user = operator_kubeconfig(cluster, namespace, tmp_path / "ns")
    _, cw_user = operator_kubeconfig(cluster, None, tmp_path / "cw")
    other = "default"
    for user, scope in ((ns_user, namespace), (cw_user, other)):
        for verb, resource, group, sub in (("watch", "servebenchmarks", "servelab.dev", ""),
                                           ("patch", "servebenchmarks", "servelab.dev", "status"),
                                           ("create", "jobs", "batch", ""), ("watch", "pods", "", ""),
                                           ("watch", "configmaps", "", ""), ("create", "deployments", "apps", ""),
                                           ("watch", "events", "", "")):  # fmt: skip
            assert allowed(kube, user, verb, resource, scope, group, sub), (user, verb, resource, scope)
        # never: Secrets, pods of its own making, exec, other people's workloads' updates, cluster-admin
        for verb, resource, group, sub in (("get", "secrets", "", ""), ("list", "secrets", "", ""),
                                           ("create", "pods", "", ""), ("create", "pods", "", "exec"),
                                           ("update", "deployments", "apps", ""), ("patch", "jobs", "batch", ""),
                                           ("escalate", "roles", "rbac.authorization.k8s.io", ""),
                                           ("bind", "clusterroles", "rbac.authorization.k8s.io", "")):  # fmt: skip
            assert not allowed(kube, user, verb, resource, scope, group, sub), (user, verb, resource, scope)
        assert allowed(kube, user, "get", "nodes") and not allowed(kube, user, "list", "nodes")
        assert not allowed(kube, user, "delete", "nodes") and not allowed(kube, user, "create", "namespaces")
    # namespaced: nothing in a namespace it does not watch
    assert not allowed(kube, ns_user, "create", "jobs", other, "batch")
    assert not allowed(kube, ns_user, "watch", "servebenchmarks", other, "servelab.dev")
    _, docs = chart_rbac(namespace)
    assert {d["kind"] for d in docs} == {"ServiceAccount", "ClusterRole", "RoleBinding", "ClusterRoleBinding"}
    assert all(d["metadata"].get("namespace") == namespace for d in docs if d["kind"] == "RoleBinding")


def test_clusterwide_mode_runs_a_benchmark_in_a_restricted_namespace(
    kube: client.ApiClient, cluster: LocalCluster, namespace: str
) -> None:
    ns = namespace
    with run_operator(cluster, ns, clusterwide=True), FakeKubelet(kube, ns) as kubelet:
        kubelet.serve, kubelet.release_all = True, True
        create_benchmark(kube, ns, "cw", load_spec(1, 2))
        obj = finished(kube, ns, "cw")
    assert obj["status"]["phase"] == "Succeeded", obj["status"]
    assert points(obj) == [1, 2]
    labels = client.CoreV1Api(kube).read_namespace(ns).metadata.labels
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"  # and every pod was admitted


def test_pods_are_refused_by_pod_security_only_where_they_should_be(
    kube: client.ApiClient, namespace: str
) -> None:
    """The namespace really enforces `restricted`: a pod without the security context is refused."""
    client.CoreV1Api(kube).patch_namespace(
        namespace, {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "restricted"}}}
    )
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "rooty"},
           "spec": {"containers": [{"name": "c", "image": "busybox"}]}}  # fmt: skip
    with pytest.raises(client.ApiException, match="violates PodSecurity"):
        client.CoreV1Api(kube).create_namespaced_pod(namespace, pod)


def test_oversized_or_malformed_result_fails_the_run_without_reaching_status(
    kube: client.ApiClient, cluster: LocalCluster, namespace: str, operator: RunningOperator
) -> None:
    ns = namespace
    core = client.CoreV1Api(kube)
    with FakeKubelet(kube, ns) as kubelet:
        kubelet.serve = True
        create_benchmark(kube, ns, "big", load_spec(1))
        job = child_name("ServeBenchmark", "big", 1, "load")
        pod = wait_for(lambda: next(iter(client.CoreV1Api(kube).list_namespaced_pod(ns, label_selector=f"job-name={job}").items), None),
                       60, "load pod")  # fmt: skip
        env = {e.name: e.value for e in pod.spec.containers[0].env if e.value is not None}
        _, name, key = env["SERVELAB_RESULT_SINK"].split(":", 1)[1].split("/")
        labels = {**json.loads(env["SERVELAB_RESULT_LABELS"]), "app.kubernetes.io/managed-by": "servelab"}
        evil = json.dumps(
            {"points": [{"concurrency": 1, "requests": 1}], "pad": "x" * (MAX_RESULT_BYTES + 10)}
        )
        # its client said it was ready (the server is created then); its result replaced by the oversized one
        wait_for(lambda: client.AppsV1Api(kube).list_namespaced_deployment(ns).items, 60, "server created")
        assert labels.items() <= core.read_namespaced_config_map(name, ns).metadata.labels.items()
        core.patch_namespaced_config_map(name, ns, {"data": {key: evil}})
        obj = finished(kube, ns, "big", 60)
    failed = condition(obj, "Failed")
    assert failed and failed["reason"] == "InvalidResult" and "cap" in failed["message"], obj["status"]
    assert "xxxx" not in json.dumps(obj["status"]) and not obj["status"].get("results")
    assert events(kube, ns, "big")["InvalidResult"] == 1
    wait_for(lambda: not client.AppsV1Api(kube).list_namespaced_deployment(ns).items, 30, "server torn down")


@pytest.mark.e2e
def test_canary_secret_never_leaks(
    kube: client.ApiClient, cluster: LocalCluster, namespace: str, podexec: PodExecutor, tmp_path: Path
) -> None:
    """A real llama.cpp server and load client, the server's API key from a Secret: it reaches them as env,
    and nothing else: not status, Events, the operator's log, pod arguments or env values, result
    ConfigMaps, or any pod's log."""
    from servelab.toolchain import envs, llamacpp
    from servelab_dev.tinymodel import ensure_tiny_gguf, ensure_tiny_model

    llamacpp.ensure_llamacpp()
    envs.ensure_env("evalscope")
    gguf = ensure_tiny_gguf()
    ns, canary = namespace, "canary-" + base64.b32encode(bytes(range(10))).decode().lower()
    core = client.CoreV1Api(kube)
    core.create_namespaced_secret(ns, {"metadata": {"name": "engine-key"}, "stringData": {"key": canary}})
    spec = {
        "model": {"path": str(gguf), "tokenizer": str(ensure_tiny_model())},
        "engine": {"name": "llamacpp", "servedModelName": "tiny", "maxModelLen": 1024, "extraArgs": ["-t", "1"],
                   "apiKeySecretRef": {"name": "engine-key", "key": "key"}, "llamacpp": {"parallelSlots": 1}},
        "hfTokenSecretRef": {"name": "engine-key", "key": "key"},
        "load": {"parallel": [1], "number": [2], "minPromptLength": 16, "maxPromptLength": 16, "maxTokens": 8,
                 "minTokens": 8, "ignoreEos": True, "pointTimeoutSeconds": 300},
        "timeouts": {"serverReadySeconds": 120, "totalSeconds": 900},
    }  # fmt: skip
    enforce_restricted(cluster, ns)
    kubeconfig, _ = operator_kubeconfig(cluster, ns, tmp_path / "operator")
    op = OperatorProcess(kubeconfig, ns, tmp_path / "operator.log").start()  # its log is read below
    try:
        create_benchmark(kube, ns, "keyed", spec)
        server = wait_for(lambda: next(iter(core.list_namespaced_pod(ns, label_selector="servelab.dev/component=server").items), None),
                          300, "server pod")  # fmt: skip
        obj = finished(kube, ns, "keyed", 600)
        wait_for(
            lambda: not client.AppsV1Api(kube).list_namespaced_deployment(ns).items, 60, "server torn down"
        )
    finally:
        op.stop()
    assert obj["status"]["phase"] == "Succeeded", obj["status"]  # the client sent the key: the server took it
    haystacks: dict[str, str] = {
        "status": json.dumps(obj),
        "events": json.dumps([e.to_dict() for e in core.list_namespaced_event(ns).items], default=str),
        "result ConfigMaps": json.dumps([c.data for c in core.list_namespaced_config_map(ns).items]),
        "operator log": op.output(),
    }
    readers = set()
    for pod in [server, *core.list_namespaced_pod(ns).items]:
        for c in pod.spec.containers:
            haystacks[f"pod {pod.metadata.name} args"] = json.dumps([c.command, c.args])
            haystacks[f"pod {pod.metadata.name} env"] = json.dumps([e.value for e in c.env or []])
            for e in c.env or []:
                if e.value_from and e.value_from.secret_key_ref:
                    assert e.value_from.secret_key_ref.name == "engine-key"
                    readers.add(e.name)
    assert {"LLAMA_API_KEY", "SERVELAB_API_KEY"} <= readers  # the server and its client read it, as env
    for log in Path(podexec.workdir).rglob("*.log"):
        haystacks[f"log {log.relative_to(podexec.workdir)}"] = log.read_text(errors="replace")
    leaks = [where for where, text in haystacks.items() if canary in text]
    assert not leaks, leaks
