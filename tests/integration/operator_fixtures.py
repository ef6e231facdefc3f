"""Fixtures for running servelab's operator in-process against the local cluster (imported by the
operator tests; kept apart from the cluster fixtures in tests/conftest.py).

The operator runs with the chart's ServiceAccount and RBAC, never as cluster-admin: the chart is rendered
with helm, its ServiceAccount, ClusterRoles and bindings are applied, and the operator gets a token of
that ServiceAccount (TokenRequest) in a kubeconfig of its own. By default it is namespaced, as
`watchNamespaces: [<the test namespace>]` renders it (a RoleBinding there only); `clusterwide=True`
renders the chart's cluster-wide mode (a ClusterRoleBinding) and watches every namespace.
"""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config

from servelab.paths import repo_path
from servelab_dev.controlplane import LocalCluster, binaries
from servelab_dev.kubelet import PodExecutor, executor_for

OPERATOR_NS = "servelab-system"  # where the chart's ServiceAccount lives
RBAC_KINDS = ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# The operator reads its settings once, at import: fix them for the whole test session here.
METRICS_PORT = free_port()
os.environ.setdefault("SERVELAB_EXTRA_POD_LABELS", '{"servelab.dev/executor": "local"}')
os.environ.setdefault("SERVELAB_METRICS_PORT", str(METRICS_PORT))
os.environ.setdefault("SERVELAB_INTERVAL", "0.1")
# no resync within a test: the operator must act on watches and on each resource's own deadlines alone
os.environ.setdefault("SERVELAB_RESYNC", "900")


def chart_rbac(namespace: str | None) -> tuple[str, list[dict[str, Any]]]:
    """The chart's ServiceAccount and RBAC objects as helm renders them: namespaced for `namespace`
    (watchNamespaces), or cluster-wide (None). Returns the ServiceAccount's name and the objects."""
    release = "lab-ns" if namespace else "lab-cw"
    bins = binaries(build=False)
    cmd = [str(bins.path("helm")), "template", release, str(repo_path("charts", "servelab")), "--namespace",
           OPERATOR_NS, "--kube-version", bins.kube_version]  # fmt: skip
    if namespace:
        cmd += ["--set", f"watchNamespaces={{{namespace}}}"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    docs = [d for d in yaml.safe_load_all(out) if d and d.get("kind") in RBAC_KINDS]
    sa = next(d["metadata"]["name"] for d in docs if d["kind"] == "ServiceAccount")
    return sa, docs


def operator_kubeconfig(cluster: LocalCluster, namespace: str | None, where: Path) -> tuple[Path, str]:
    """A kubeconfig holding a token of the chart's ServiceAccount, its RBAC applied (see chart_rbac).
    Returns the path and the ServiceAccount's user name."""
    sa, docs = chart_rbac(namespace)
    admin = config.new_client_from_config(config_file=str(cluster.kubeconfig))
    try:
        core = client.CoreV1Api(admin)
        try:
            core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=OPERATOR_NS)))
        except client.ApiException as err:
            if err.status != 409:
                raise
        kubectl = [str(binaries(build=False).path("kubectl")), "--kubeconfig", str(cluster.kubeconfig)]
        subprocess.run([*kubectl, "apply", "-f", "-"], input=yaml.safe_dump_all(docs), capture_output=True,
                       text=True, check=True)  # fmt: skip
        user = f"system:serviceaccount:{OPERATOR_NS}:{sa}"
        # the authorizer works from caches: wait until it grants what the operator needs first
        review = client.V1SubjectAccessReview(spec=client.V1SubjectAccessReviewSpec(user=user, resource_attributes=
            client.V1ResourceAttributes(namespace=namespace or "default", verb="watch", group="batch", resource="jobs")))  # fmt: skip
        deadline = time.monotonic() + 30
        while not client.AuthorizationV1Api(admin).create_subject_access_review(review).status.allowed:
            assert time.monotonic() < deadline, f"{user} never allowed to watch jobs"
            time.sleep(0.2)
        req = client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=7200)
        )
        token = core.create_namespaced_service_account_token(sa, OPERATOR_NS, req).status.token
    finally:
        admin.close()
    kc = yaml.safe_load(cluster.kubeconfig.read_text())
    cfg = {
        "apiVersion": "v1", "kind": "Config", "clusters": kc["clusters"],
        "users": [{"name": sa, "user": {"token": token}}],
        "contexts": [{"name": sa, "context": {"cluster": kc["clusters"][0]["name"], "user": sa, "namespace": namespace or "default"}}],
        "current-context": sa,
    }  # fmt: skip
    where.mkdir(parents=True, exist_ok=True)
    path = where / f"{sa}.kubeconfig"
    path.write_text(yaml.safe_dump(cfg))
    path.chmod(0o600)
    return path, user


def enforce_restricted(cluster: LocalCluster, namespace: str) -> None:
    """The namespace enforces Pod Security `restricted`: every pod the operator makes must meet it."""
    admin = config.new_client_from_config(config_file=str(cluster.kubeconfig))
    try:
        labels = {
            "pod-security.kubernetes.io/enforce": "restricted",
            "pod-security.kubernetes.io/enforce-version": "latest",
        }
        client.CoreV1Api(admin).patch_namespace(namespace, {"metadata": {"labels": labels}})
    finally:
        admin.close()


@dataclass
class RunningOperator:
    runner: object
    metrics_url: str

    def scrape(self) -> str:
        import urllib.request

        with urllib.request.urlopen(self.metrics_url, timeout=10) as resp:
            text: str = resp.read().decode()
            return text


@contextmanager
def run_operator(
    cluster: LocalCluster, namespace: str, clusterwide: bool = False
) -> Iterator[RunningOperator]:
    """servelab's operator, standalone (kopf's KopfRunner, in a thread), with the chart's ServiceAccount:
    watching one namespace with the namespaced RBAC, or (clusterwide) every namespace with the
    cluster-wide RBAC."""
    from kopf.testing import KopfRunner

    where = Path(tempfile.mkdtemp(prefix="servelab-operator-"))
    enforce_restricted(cluster, namespace)
    kubeconfig, _ = operator_kubeconfig(cluster, None if clusterwide else namespace, where)
    before = os.environ.get("KUBECONFIG")
    os.environ["KUBECONFIG"] = str(kubeconfig)
    scope = ["--all-namespaces"] if clusterwide else ["--namespace", namespace]
    if clusterwide:
        os.environ["SERVELAB_WATCH_NAMESPACES"] = "*"
    args = ["run", "--standalone", *scope, "-m", "servelab.controller.handlers"]
    try:
        with KopfRunner(args, timeout=60) as runner:
            yield RunningOperator(runner, f"http://127.0.0.1:{os.environ['SERVELAB_METRICS_PORT']}/metrics")
    finally:
        os.environ.pop("SERVELAB_WATCH_NAMESPACES", None)
        os.environ["KUBECONFIG"] = before or str(cluster.kubeconfig)
    assert runner.exception is None, runner.exception


@pytest.fixture
def operator(cluster: LocalCluster, namespace: str) -> Iterator[RunningOperator]:
    with run_operator(cluster, namespace) as op:
        yield op


@pytest.fixture
def podexec(
    kube: client.ApiClient, namespace: str, cluster: LocalCluster, tmp_path: Path
) -> Iterator[PodExecutor]:
    """Runs pods labelled servelab.dev/executor=local for real (see podexec.py)."""
    ex = executor_for(kube, namespace, cluster.pki_dir / "ca.crt", tmp_path / "pods").start()
    yield ex
    ex.stop()
    assert not ex.errors, ex.errors
