"""Shared fixtures: one real local control plane per test session, an API client, a namespace per test.

The cluster comes from servelab_dev.controlplane (etcd, kube-apiserver, kube-controller-manager,
kube-scheduler and kwok as local processes). Set SERVELAB_TEST_KUBECONFIG to the kubeconfig of a running
cluster (`eval "$(servelab cluster env)"` after `servelab cluster up`) to reuse it instead of starting
one. Missing binaries fail the session with a pointer to hack/build-binaries.sh (SERVELAB_TEST_BUILD=1
builds them instead). The session's own cluster lives in pytest's base temp directory: stopped at the
end, its logs kept there (pytest keeps the last three runs).
When a test that uses the cluster fails, the tail of every component's log is attached to its report.
"""

from __future__ import annotations

import os
import re
import time
import uuid
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from servelab_dev.controlplane import LocalCluster

CLUSTER_KEY = pytest.StashKey[LocalCluster]()
LOG_TAIL_LINES = 60


@pytest.fixture(scope="session")
def cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalCluster]:
    """A running local cluster for the whole session (started here unless SERVELAB_TEST_KUBECONFIG is set)."""
    reuse = os.environ.get("SERVELAB_TEST_KUBECONFIG")
    if reuse:
        running = LocalCluster.attach(Path(reuse))
        request.config.stash[CLUSTER_KEY] = running
        yield running
        return
    name = f"pytest-{os.getpid()}"
    # die_with_parent: a killed test run leaves no control plane behind
    local = LocalCluster(name, tmp_path_factory.getbasetemp() / "cluster", die_with_parent=True)
    request.config.stash[CLUSTER_KEY] = local
    try:
        # building the binaries takes many minutes: that is hack/build-binaries.sh's job, not a test's
        local.up(reuse=False, build=os.environ.get("SERVELAB_TEST_BUILD") == "1")
        yield local
    finally:
        local.down()


@pytest.fixture(scope="session")
def kube(cluster: LocalCluster) -> Iterator[client.ApiClient]:
    """A Kubernetes API client with the cluster's admin credentials (group system:masters)."""
    api = config.new_client_from_config(config_file=str(cluster.kubeconfig))
    try:
        yield api
    finally:
        api.close()


def _namespace_name(node_name: str) -> str:
    base = re.sub(r"[^a-z0-9-]+", "-", node_name.lower()).strip("-")[:40].strip("-")
    return f"{base or 't'}-{uuid.uuid4().hex[:6]}"


@pytest.fixture
def namespace(kube: client.ApiClient, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace (with its default ServiceAccount in place), deleted after the test."""
    core = client.CoreV1Api(kube)
    name = _namespace_name(request.node.name)
    core.create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels={"servelab.dev/test": "true"}))
    )
    # pods are refused until the controller-manager has created the namespace's default ServiceAccount
    deadline = time.monotonic() + 60
    while True:
        try:
            core.read_namespaced_service_account("default", name)
            break
        except ApiException as err:
            if err.status != 404 or time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    try:
        yield name
    finally:
        try:
            core.delete_namespace(name, propagation_policy="Background")
        except ApiException as err:
            if err.status != 404:
                raise


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report: pytest.TestReport = yield
    if report.failed and "cluster" in getattr(item, "fixturenames", ()):
        running = item.config.stash.get(CLUSTER_KEY, None)
        if running is not None:
            for component, tail in running.log_tails(LOG_TAIL_LINES).items():
                report.sections.append((f"{component} log (last {LOG_TAIL_LINES} lines)", tail))
    return report
