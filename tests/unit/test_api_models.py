"""The models are the schema source: examples validate, bad specs fail with the field named."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from pydantic import ValidationError

from servelab.api import QuantJobSpec, ServeBenchmarkSpec, crdgen
from servelab.api.results import LoadPointResult
from servelab.manifests import load_manifests
from servelab.paths import repo_path

pytestmark = pytest.mark.unit

SPECS = {"QuantJob": QuantJobSpec, "ServeBenchmark": ServeBenchmarkSpec}


def example_docs() -> list[tuple[str, dict[str, Any]]]:
    return [(r.label, r.body) for r in load_manifests(repo_path("examples"))]


def test_examples_cover_every_seed_experiment() -> None:
    names = {doc["metadata"]["name"] for _, doc in example_docs()}
    kinds = {
        (doc["kind"], doc["spec"].get("method") or doc["spec"]["engine"]["name"]) for _, doc in example_docs()
    }
    assert {"qwen3-4b-w4a16-g128", "qwen3-4b-bf16-vllm", "qwen3-4b-w4a16-vllm", "qwen3-4b-gguf"} <= names
    assert {
        "qwen3-4b-iq4xs-vllm",
        "qwen3-4b-iq4xs-llamacpp",
        "qwen3-8b-fp8-vllm",
        "qwen3-8b-awq-vllm",
    } <= names
    assert {"glm-4.7-flash-sglang-eagle", "qwen3.5-4b-vllm-mtp"} <= names
    assert ("QuantJob", "gguf") in kinds and ("QuantJob", "gptq") in kinds and ("QuantJob", "awq") in kinds
    assert {("ServeBenchmark", e) for e in ("vllm", "sglang", "llamacpp")} <= kinds


@pytest.mark.parametrize(("label", "doc"), example_docs(), ids=[label for label, _ in example_docs()])
def test_example_validates(label: str, doc: dict[str, Any]) -> None:
    spec = SPECS[doc["kind"]].model_validate(doc["spec"])
    # round trip: what we write to the cluster reads back the same
    assert SPECS[doc["kind"]].model_validate(spec.to_wire()) == spec


def _sb(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "model": {"path": "/models/tiny"},
        "engine": {"name": "vllm"},
        "load": {"parallel": [1, 2], "number": [2, 4]},
    }
    base.update(overrides)
    return base


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        (_sb(engine={"name": "tgi"}), "engine.name"),
        (_sb(engine={"name": "vllm", "tensorParallelSize": 0}), "engine.tensorParallelSize"),
        (_sb(engine={"name": "vllm", "gpuMemoryUtilization": 1.5}), "engine.gpuMemoryUtilization"),
        (_sb(load={"parallel": [], "number": []}), "load.parallel"),
        (_sb(load={"parallel": [0], "number": [1]}), "load.parallel"),
        (_sb(engine={"name": "vllm", "typo": 1}), "engine.typo"),
    ],
)
def test_bad_servebenchmark_names_the_field(spec: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as err:
        ServeBenchmarkSpec.model_validate(spec)
    locs = {".".join(str(p) for p in e["loc"]) for e in err.value.errors()}
    assert any(loc.startswith(field) for loc in locs), locs


def test_gguf_spec_shape() -> None:
    doc = dict(example_docs())["000-gguf-iq4xs-vllm-vs-llamacpp.yaml:qwen3-4b-gguf"]
    spec = QuantJobSpec.model_validate(doc["spec"])
    assert spec.gguf is not None
    assert [v.type for v in spec.gguf.variants] == ["IQ4_XS", "Q4_K_M"]
    assert spec.gguf.leave_output_tensor and spec.gguf.variants[1].imatrix is False
    bad = copy.deepcopy(doc["spec"])
    bad["gguf"]["variants"] = [{"type": "Q4_K_X"}]
    with pytest.raises(ValidationError):
        QuantJobSpec.model_validate(bad)


def test_result_row_bounds() -> None:
    with pytest.raises(ValidationError):
        LoadPointResult(concurrency=1, requests=1, success_rate=1.5)
    row = LoadPointResult(concurrency=4, requests=8, succeeded=8, success_rate=1.0, avg_ttft_seconds=0.05)
    assert row.to_wire()["avgTtftSeconds"] == 0.05


def test_quantities_are_int_or_string_and_stay_strings_in_python() -> None:
    from servelab.api.common import Resources

    res = Resources.model_validate({"cpu": 8, "memory": "64Gi"})
    assert res.cpu == "8" and res.memory == "64Gi"
    crd = crdgen.crd(crdgen.KINDS[1])["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    cpu = crd["properties"]["spec"]["properties"]["resources"]["properties"]["cpu"]
    assert cpu["x-kubernetes-int-or-string"] is True and "type" not in cpu
    assert "must be a Kubernetes quantity" in cpu["x-kubernetes-validations"][0]["message"]


def test_affinity_is_typed_in_the_crd_and_a_dict_in_python() -> None:
    from servelab.api.common import Placement

    affinity = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "gpu", "operator": "In", "values": ["h100"]}]}]}}}  # fmt: skip
    placement = Placement.model_validate({"affinity": affinity})
    assert placement.affinity == affinity  # passed to the pods as it is
    with pytest.raises(ValidationError):
        Placement.model_validate({"affinity": {"nodeAfinity": {}}})
    with pytest.raises(ValidationError):  # camelCase only, as on the wire
        Placement.model_validate({"affinity": {"node_affinity": {}}})
    crd = crdgen.crd(crdgen.KINDS[1])["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    schema = crd["properties"]["spec"]["properties"]["placement"]["properties"]["affinity"]
    assert set(schema["properties"]) == {"nodeAffinity", "podAffinity", "podAntiAffinity"}
    assert "x-kubernetes-preserve-unknown-fields" not in schema


def test_field_rules_and_class_rules_both_reach_the_crd() -> None:
    crd = crdgen.crd(crdgen.KINDS[0])["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    spec = crd["properties"]["spec"]
    variants = spec["properties"]["gguf"]["properties"]["variants"]
    assert "each type may appear only once" in variants["x-kubernetes-validations"][0]["message"]
    claim = spec["properties"]["output"]["properties"]["pvc"]["properties"]["claimName"]
    assert "DNS-1123 subdomain" in claim["x-kubernetes-validations"][0]["message"]
    output_rules = [r["message"] for r in spec["properties"]["output"]["x-kubernetes-validations"]]
    assert output_rules == ["set exactly one of pvc or path"]
