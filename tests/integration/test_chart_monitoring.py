"""The chart ships the Grafana dashboards as ConfigMaps for the dashboard sidecar (label configurable) and,
optionally, the alert rules as a PrometheusRule; what it renders is the committed files, unchanged."""

from __future__ import annotations

import json
import subprocess

import pytest
import yaml

from servelab.paths import repo_path
from servelab_dev.controlplane import binaries

pytestmark = pytest.mark.integration
CHART = str(repo_path("charts", "servelab"))
DASHBOARDS = {
    p.name: json.loads(p.read_text()) for p in repo_path("charts", "servelab", "dashboards").glob("*.json")
}


def render(helm: list[str], *values: str) -> list[dict[str, object]]:
    version = binaries(build=False).kube_version
    proc = subprocess.run([*helm, "template", "lab", CHART, "-n", "obs", "--kube-version", version, *values],
                          capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


def dashboards(docs: list[dict[str, object]]) -> list[dict[str, object]]:
    return [d for d in docs if d["kind"] == "ConfigMap" and "-dashboard-" in str(d["metadata"]["name"])]  # type: ignore[index]


def test_dashboards_as_sidecar_configmaps(helm: list[str]) -> None:
    maps = dashboards(render(helm))
    assert len(maps) == len(DASHBOARDS) == 5
    for cm in maps:
        meta = cm["metadata"]
        assert meta["namespace"] == "obs" and meta["labels"]["grafana_dashboard"] == "1"  # type: ignore[index]
        ((key, text),) = cm["data"].items()  # type: ignore[attr-defined]
        assert json.loads(text) == DASHBOARDS[key]
    assert not [d for d in render(helm) if d["kind"] == "PrometheusRule"]  # off by default


def test_dashboard_label_namespace_and_folder_are_configurable(helm: list[str]) -> None:
    maps = dashboards(render(helm, "--set", "grafana.dashboards.label=dashboards.example.com/grafana",
                            "--set", "grafana.dashboards.labelValue=servelab", "--set", "grafana.dashboards.namespace=monitoring",
                            "--set", "grafana.dashboards.annotations.grafana_folder=LLM serving"))  # fmt: skip
    for cm in maps:
        meta = cm["metadata"]
        assert (
            meta["labels"]["dashboards.example.com/grafana"] == "servelab"
            and "grafana_dashboard" not in meta["labels"]
        )  # type: ignore[index,operator]
        assert meta["namespace"] == "monitoring" and meta["annotations"] == {"grafana_folder": "LLM serving"}  # type: ignore[index]
    assert not dashboards(render(helm, "--set", "grafana.dashboards.enabled=false"))


def test_prometheus_rule(helm: list[str]) -> None:
    docs = render(helm, "--set", "prometheusRule.enabled=true", "--set", "prometheusRule.labels.release=kps")
    (rule,) = [d for d in docs if d["kind"] == "PrometheusRule"]
    assert rule["apiVersion"] == "monitoring.coreos.com/v1" and rule["metadata"]["labels"]["release"] == "kps"  # type: ignore[index]
    committed = yaml.safe_load(repo_path("charts", "servelab", "rules", "servelab.rules.yaml").read_text())
    assert rule["spec"] == committed
    alerts = [r["alert"] for r in committed["groups"][0]["rules"]]
    assert alerts == ["ServelabRunFailed", "ServelabGateFailed", "ServelabReconcileErrors"]
