"""The Helm chart renders, lints, and the real apiserver accepts every object it renders
(server-side dry-run with strict field validation), cluster-wide and namespaced."""

from __future__ import annotations

import subprocess

import pytest
import yaml

from servelab.paths import repo_path
from servelab_dev.controlplane import binaries

pytestmark = pytest.mark.integration
CHART = str(repo_path("charts", "servelab"))


def run(cmd: list[str], stdin: str | None = None) -> str:
    proc = subprocess.run(cmd, input=stdin, capture_output=True, text=True)
    assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def test_helm_lint(helm: list[str]) -> None:
    run([*helm, "lint", "--strict", CHART])


@pytest.mark.parametrize("values", [[], ["--set", "watchNamespaces={team-a,team-b}", "--set",
                                         "metrics.serviceMonitor.enabled=false"]])  # fmt: skip
def test_rendered_objects_pass_server_side_dry_run(helm: list[str], kubectl: list[str], namespace: str,
                                                   values: list[str]) -> None:  # fmt: skip
    version = binaries(build=False).kube_version  # the cluster's, not helm's built-in default
    rendered = run([*helm, "template", "lab", CHART, "--namespace", namespace, "--include-crds",
                    "--kube-version", version, *values])  # fmt: skip
    docs = [d for d in yaml.safe_load_all(rendered) if d]
    kinds = {d["kind"] for d in docs}
    assert {"CustomResourceDefinition", "Deployment", "ServiceAccount", "Service", "ClusterRole"} <= kinds
    dep = next(d for d in docs if d["kind"] == "Deployment")
    container = dep["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["servelab", "operator"]
    assert dep["spec"]["replicas"] == 1 and dep["spec"]["strategy"]["type"] == "Recreate"
    for team in ("team-a", "team-b"):
        if values:
            assert f"--namespace={team}" in container["args"]
            run([*kubectl, "create", "namespace", team, "--dry-run=server"])
    # namespaced objects of other namespaces can only be dry-run where those namespaces exist
    local = [d for d in docs if d.get("metadata", {}).get("namespace") in (None, namespace)]
    out = run([*kubectl, "apply", "--dry-run=server", "--validate=strict", "-n", namespace, "-f", "-"],
              yaml.safe_dump_all(local))  # fmt: skip
    assert "deployment.apps/lab-servelab created (server dry run)" in out
