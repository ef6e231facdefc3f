"""Integration fixtures: the built kubectl and helm, the operator in-process and the test-side pod
executor (see operator_fixtures.py)."""

from __future__ import annotations

import pytest
from operator_fixtures import operator, podexec  # noqa: F401  (fixtures)

from servelab_dev.controlplane import LocalCluster, binaries


@pytest.fixture(scope="session")
def kubectl(cluster: LocalCluster) -> list[str]:
    """The pinned kubectl built with the control plane, pointed at the test cluster."""
    return [str(binaries(build=False).path("kubectl")), "--kubeconfig", str(cluster.kubeconfig)]


@pytest.fixture(scope="session")
def helm(cluster: LocalCluster) -> list[str]:
    return [str(binaries(build=False).path("helm")), "--kubeconfig", str(cluster.kubeconfig)]
