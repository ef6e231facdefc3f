"""The generated CRDs are structural, in sync with the models, and carry the CEL rules and columns."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from servelab.api import crdgen
from servelab.cli import main
from servelab.paths import repo_path

pytestmark = pytest.mark.unit


def _walk(schema: dict[str, Any], path: str = "") -> list[str]:
    problems = []
    for bad in ("$ref", "anyOf", "oneOf", "allOf", "const", "$defs", "title"):
        if bad in schema:
            problems.append(f"{path}: has {bad}")
    untyped = ("x-kubernetes-preserve-unknown-fields", "x-kubernetes-int-or-string")
    if "type" not in schema and not any(schema.get(u) for u in untyped):
        problems.append(f"{path}: no type")
    for name, sub in schema.get("properties", {}).items():
        problems += _walk(sub, f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        problems += _walk(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        problems += _walk(schema["additionalProperties"], f"{path}{{}}")
    return problems


def test_generated_files_are_in_sync() -> None:
    assert main(["crds", "--check"]) == 0, "run `servelab crds` and commit the result"


def test_chart_crds_equal_crds() -> None:
    for name in crdgen.render_crds():
        assert (repo_path("crds", name)).read_text() == (
            repo_path("charts", "servelab", "crds", name)
        ).read_text()


@pytest.mark.parametrize("kind", crdgen.KINDS, ids=[k.kind for k in crdgen.KINDS])
def test_crd_is_structural(kind: crdgen.Kind) -> None:
    crd = yaml.safe_load(crdgen.render_crds()[f"servelab.dev_{kind.plural}.yaml"])
    version = crd["spec"]["versions"][0]
    assert version["subresources"] == {"status": {}}
    assert "servelab" in crd["spec"]["names"]["categories"]
    assert crd["spec"]["names"]["shortNames"]
    assert version["additionalPrinterColumns"][0]["name"] == "Phase"
    assert _walk(version["schema"]["openAPIV3Schema"]) == []


def test_cel_rules_are_on_the_right_objects() -> None:
    crd = yaml.safe_load(crdgen.render_crds()["servelab.dev_servebenchmarks.yaml"])
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    rules = {r["rule"] for r in spec["x-kubernetes-validations"]}
    assert (
        "(has(self.model) ? 1 : 0) + (has(self.quantJobRef) ? 1 : 0) + (has(self.endpoint) ? 1 : 0) == 1"
        in rules
    )
    load_rules = {r["rule"] for r in spec["properties"]["load"]["x-kubernetes-validations"]}
    assert "size(self.parallel) == size(self.number)" in load_rules
    messages = [r["message"] for r in spec["properties"]["load"]["x-kubernetes-validations"]]
    assert all("spec.load." in m for m in messages)


def test_optional_exclusive_minimum_is_openapi_v3() -> None:
    crd = yaml.safe_load(crdgen.render_crds()["servelab.dev_servebenchmarks.yaml"])
    engine = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"][
        "engine"
    ]
    gmu = engine["properties"]["gpuMemoryUtilization"]
    assert gmu["minimum"] == 0 and gmu["exclusiveMinimum"] is True and gmu["maximum"] == 1


def test_api_doc_lists_every_spec_field() -> None:
    doc = repo_path("docs", "api.md").read_text()
    for field in (
        "spec.engine.speculative.numSpeculativeTokens",
        "spec.gguf.leaveOutputTensor",
        "spec.load.parallel",
        "status.results[].p99TtftSeconds",
        "spec.calibration.numSamples",
    ):
        assert f"`{field}`" in doc, field


def _undeclared(schema: dict[str, Any], path: str) -> list[str]:
    """Fields that a rule reads from `self` but the schema does not declare (the apiserver refuses such a
    CRD at install: `undefined field`; cel-python would quietly evaluate has() to false)."""
    import re

    problems = []
    for rule in schema.get("x-kubernetes-validations", []):
        for chain, after in re.findall(r"\bself((?:\.[A-Za-z_][A-Za-z0-9_]*)+)(\(?)", rule["rule"]):
            node = schema
            names = chain.strip(".").split(".")
            for i, name in enumerate(names):
                props = node.get("properties")
                if props is None:
                    break  # a map, a list or a scalar: what follows is a method or a key
                if name not in props:
                    if not (i == len(names) - 1 and after):  # not a method call on the object
                        problems.append(f"{path}: rule {rule['rule']!r} reads undeclared field {name!r}")
                    break
                node = props[name]
    for name, sub in schema.get("properties", {}).items():
        problems += _undeclared(sub, f"{path}.{name}")
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            problems += _undeclared(schema[key], f"{path}[]")
    return problems


@pytest.mark.parametrize("kind", crdgen.KINDS, ids=[k.kind for k in crdgen.KINDS])
def test_cel_rules_read_declared_fields(kind: crdgen.Kind) -> None:
    crd = crdgen.crd(kind)
    assert _undeclared(crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"], "") == []
