"""ConfigMapSink against the real local API server, authenticated as a pod would be.

A ServiceAccount with a Role that allows get/create/update on ConfigMaps gets a token through the
TokenRequest API; the sink (urllib + ssl, no Kubernetes client) writes the result owned by another
object, and a second key is added without losing the first. A ServiceAccount without the Role is
refused (403), and the sink says so.
"""

from __future__ import annotations

import json

import pytest
from kubernetes import client

from servelab.workers.publish import ConfigMapSink, PublishError

pytestmark = pytest.mark.integration


def _token(core: client.CoreV1Api, namespace: str, sa: str) -> str:
    core.create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=sa))
    )
    req = client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=600)
    )
    token: str = core.create_namespaced_service_account_token(sa, namespace, req).status.token
    return token


def test_configmap_sink_with_service_account_token(kube: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(kube)
    rbac = client.RbacAuthorizationV1Api(kube)
    rbac.create_namespaced_role(
        namespace,
        client.V1Role(
            metadata=client.V1ObjectMeta(name="result-writer"),
            rules=[
                client.V1PolicyRule(
                    api_groups=[""], resources=["configmaps"], verbs=["get", "create", "update"]
                )
            ],
        ),
    )
    rbac.create_namespaced_role_binding(
        namespace,
        client.V1RoleBinding(
            metadata=client.V1ObjectMeta(name="result-writer"),
            role_ref=client.V1RoleRef(
                api_group="rbac.authorization.k8s.io", kind="Role", name="result-writer"
            ),
            subjects=[client.RbacV1Subject(kind="ServiceAccount", name="worker", namespace=namespace)],
        ),
    )
    token = _token(core, namespace, "worker")
    owner = core.create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="the-owner"), data={"x": "y"})
    )
    owner_ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": "the-owner", "uid": owner.metadata.uid}
    cfg = kube.configuration
    sink = ConfigMapSink(
        namespace,
        "bench-result",
        "perf.json",
        owner_ref,
        api_server=cfg.host,
        token=token,
        ca_file=cfg.ssl_ca_cert,
    )
    sink.publish({"kind": "perf", "points": [{"concurrency": 1, "valid": True}]})
    ConfigMapSink(
        namespace,
        "bench-result",
        "eval.json",
        owner_ref,
        api_server=cfg.host,
        token=token,
        ca_file=cfg.ssl_ca_cert,
    ).publish({"kind": "eval", "scores": []})

    cm = core.read_namespaced_config_map("bench-result", namespace)
    assert json.loads(cm.data["perf.json"]) == {"kind": "perf", "points": [{"concurrency": 1, "valid": True}]}
    assert json.loads(cm.data["eval.json"]) == {"kind": "eval", "scores": []}
    [ref] = cm.metadata.owner_references
    assert (ref.kind, ref.name, ref.uid) == ("ConfigMap", "the-owner", owner.metadata.uid)
    assert cm.metadata.labels["app.kubernetes.io/managed-by"] == "servelab"


def test_configmap_sink_without_permission_is_refused(kube: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(kube)
    token = _token(core, namespace, "nobody")
    cfg = kube.configuration
    sink = ConfigMapSink(namespace, "r", "k", None, api_server=cfg.host, token=token, ca_file=cfg.ssl_ca_cert)
    with pytest.raises(PublishError, match="HTTP 403"):
        sink.publish({"kind": "perf"})
