"""The GitOps gate adapters on the committed testdata (objects captured from real runs by
tests/integration/test_gitops_gates.py): the Argo CD health checks run like Argo CD's own health_test.go runs
every health_test.yaml, the Flux healthCheckExprs evaluated as Flux evaluates them, and the snippets in the
docs are the tested files."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from gitops_adapters import (
    ARGOCD_DIR,
    FLUX_EXAMPLE,
    GROUP,
    KINDS,
    PHASES,
    argocd_health,
    captured_path,
    flux_exprs,
    flux_status,
    health_script,
    health_tests,
    load,
)
from servelab.paths import repo_path

pytestmark = pytest.mark.unit
CASES = health_tests()
DOCS = Path(repo_path("docs", "gitops.md"))


@pytest.mark.parametrize(
    ("script", "case"), CASES, ids=[f"{s.parent.name}/{c['inputPath']}" for s, c in CASES]
)
def test_argocd_health_test_yaml(script: Path, case: dict[str, Any]) -> None:
    obj = load(script.parent / case["inputPath"])
    assert argocd_health(obj, script) == case["healthStatus"]


def test_every_phase_of_both_kinds_is_captured_and_covered() -> None:
    assert {s.parent.name for s, _ in CASES} == set(KINDS)
    for kind in KINDS:
        covered = {c["inputPath"] for s, c in CASES if s.parent.name == kind}
        assert covered == {f"testdata/{p}.yaml" for p in PHASES}
        for phase in PHASES:
            obj = load(captured_path(kind, phase))
            assert obj["kind"] == kind and obj["apiVersion"] == f"{GROUP}/v1alpha1"
            assert captured_path(kind, phase).read_text().startswith("# Captured from a real run")
            expected = PHASES[phase]["argocd"]
            assert (
                next(
                    c for s, c in CASES if s.parent.name == kind and c["inputPath"].endswith(f"/{phase}.yaml")
                )["healthStatus"]["status"]
                == expected
            )


def test_one_script_for_both_kinds_in_lua_51_without_the_string_library() -> None:
    scripts = {k: health_script(k).read_text() for k in KINDS}
    assert scripts["ServeBenchmark"] == scripts["QuantJob"]
    text = re.sub(r"--[^\n]*", "", scripts["QuantJob"])  # code, not comments
    # Argo CD opens base and table only for a resource.customizations.health script: no string methods
    assert not re.search(
        r"\bstring\.|\bmath\.|\w\s*:\s*(sub|find|format|match|gsub|len|lower|upper)\s*\(", text
    )


def passed(kind: str) -> dict[str, Any]:
    return load(captured_path(kind, "passed"))


@pytest.mark.parametrize("kind", KINDS)
def test_a_ready_condition_of_an_older_generation_is_not_healthy(kind: str) -> None:
    """The status says generation 2, the Ready condition is still generation 1's: not Healthy yet."""
    obj = copy.deepcopy(passed(kind))
    obj["metadata"]["generation"] = obj["status"]["observedGeneration"] = 2
    health = argocd_health(obj, health_script(kind))
    assert health == {"status": "Progressing", "message": "Waiting for the Ready condition of generation 2"}
    assert flux_status(obj) == "InProgress"


@pytest.mark.parametrize("kind", KINDS)
def test_a_stalled_condition_of_an_older_generation_does_not_degrade(kind: str) -> None:
    obj = copy.deepcopy(load(captured_path(kind, "gate-failed")))
    obj["metadata"]["generation"] = obj["status"]["observedGeneration"] = 2
    for cond in obj["status"]["conditions"]:
        if cond["type"] == "Ready":
            cond.update(observedGeneration=2, status="False", reason="Running")
    assert argocd_health(obj, health_script(kind))["status"] == "Progressing"
    assert flux_status(obj) == "InProgress"


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("phase", PHASES)
def test_flux_health_check_exprs(kind: str, phase: str) -> None:
    assert flux_status(load(captured_path(kind, phase))) == PHASES[phase]["flux"]


def test_every_adapter_agrees_with_the_verdict() -> None:
    """Healthy/Current only for a passed run, Degraded/Failed for a failed run or gate; the one exception is
    kstatus on a new object (no status yet: kstatus calls any such object Current)."""
    good = {"argocd": "Healthy", "kstatus": "Current", "flux": "Current"}
    bad = {"argocd": "Degraded", "kstatus": "Failed", "flux": "Failed"}
    exceptions = []
    for phase, says in PHASES.items():
        for tool in ("argocd", "kstatus", "flux"):
            verdict = says["verdict"]
            if verdict == "passed":
                assert says[tool] == good[tool], (phase, tool)
            elif verdict == "failed":
                assert says[tool] == bad[tool], (phase, tool)
            elif says[tool] in (good[tool], bad[tool]):
                exceptions.append((phase, tool, says[tool]))
    assert exceptions == [("new", "kstatus", "Current")]


def fenced(text: str, after: str) -> str:
    """The first fenced block after a line containing `after`."""
    start = text.index(after)
    m = re.search(r"```[a-z]*\n(.*?)```", text[start:], re.S)
    assert m, f"no code block after {after!r}"
    return m.group(1)


def test_docs_show_the_tested_flux_expressions_and_lua() -> None:
    docs = DOCS.read_text()
    block = yaml.safe_load(fenced(docs, "<!-- flux-health-check-exprs -->"))
    assert {e["kind"]: e for e in block["healthCheckExprs"]} == flux_exprs()
    cm = yaml.safe_load(fenced(docs, "<!-- argocd-cm -->"))
    for kind in KINDS:
        assert cm["data"][f"resource.customizations.health.{GROUP}_{kind}"] == health_script(kind).read_text()


def test_examples_use_the_operator_image_of_the_chart() -> None:
    chart = yaml.safe_load(Path(repo_path("charts", "servelab", "Chart.yaml")).read_text())
    values = yaml.safe_load(Path(repo_path("charts", "servelab", "values.yaml")).read_text())
    tmpl = yaml.safe_load(Path(repo_path("examples", "gitops", "analysistemplate-gate-job.yaml")).read_text())
    container = tmpl["spec"]["metrics"][0]["provider"]["job"]["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == f"{values['image']['repository']}:{chart['appVersion']}"
    assert container["command"][:3] == ["servelab", "gate", "{{args.benchmark}}"]
    assert FLUX_EXAMPLE.exists() and (ARGOCD_DIR / GROUP).is_dir()
