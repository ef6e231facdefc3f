"""Fixtures for running servelab's operator in-process against the local cluster (imported by the
operator tests; kept apart from the cluster fixtures in tests/conftest.py)."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from kubernetes import client

from servelab_dev.controlplane import LocalCluster
from servelab_dev.kubelet import PodExecutor, executor_for


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
os.environ.setdefault("SERVELAB_RESYNC", "3")


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
def run_operator(cluster: LocalCluster, namespace: str) -> Iterator[RunningOperator]:
    """servelab's operator, standalone, watching one namespace (kopf's KopfRunner, in a thread)."""
    from kopf.testing import KopfRunner

    os.environ["KUBECONFIG"] = str(cluster.kubeconfig)
    args = ["run", "--standalone", "--namespace", namespace, "-m", "servelab.controller.handlers"]
    with KopfRunner(args, timeout=60) as runner:
        yield RunningOperator(runner, f"http://127.0.0.1:{os.environ['SERVELAB_METRICS_PORT']}/metrics")
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
