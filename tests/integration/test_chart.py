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


def test_every_chart_value_reaches_the_operator_settings(
    helm: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The values the Deployment passes as SERVELAB_* variables are read by Settings.from_env, with the
    values given (no value the chart accepts and the operator ignores)."""
    import inspect

    from servelab.controller import settings as settings_module
    from servelab.controller.settings import Settings

    version = binaries(build=False).kube_version
    rendered = run([*helm, "template", "lab", CHART, "--kube-version", version, "--set", "workerCpu=4", "--set", "workerMemory=6Gi",
                    "--set", "resyncSeconds=120", "--set", "workerLimit=7"])  # fmt: skip
    dep = next(d for d in yaml.safe_load_all(rendered) if d and d["kind"] == "Deployment")
    env = {e["name"]: e["value"] for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}
    source = inspect.getsource(settings_module)
    for name in env:
        assert f'"{name}"' in source, f"the chart sets {name}, which the operator never reads"
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    s = Settings.from_env()
    assert (s.worker_cpu, s.worker_memory, s.resync, s.worker_limit) == ("4", "6Gi", 120.0, 7)
    defaults = yaml.safe_load((repo_path("charts", "servelab") / "values.yaml").read_text())
    assert defaults["resyncSeconds"] == Settings().resync and defaults["workerCpu"] == Settings().worker_cpu
