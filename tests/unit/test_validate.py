"""Local validation refuses what the apiserver refuses (the CRD's schema and CEL rules, strictly), reads
YAML as kubectl does, and `servelab validate` / `servelab run` report every problem on one located line."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from catalogue import INVALID, RAW_INVALID, VALID, Case
from servelab.api.validate import SpecError, validate_object, validate_resource
from servelab.cli import main
from servelab.manifests import (
    Document,
    ManifestError,
    dump_yaml,
    load_manifests,
    read_documents,
    scan_manifests,
)
from servelab.paths import repo_path

pytestmark = pytest.mark.unit


def sb(**over: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "model": {"path": "/m"},
        "engine": {"name": "vllm"},
        "load": {"parallel": [1], "number": [2]},
    }
    spec.update(over)
    return spec


def names_field(problems: list[str], fields: list[str], expected: str) -> bool:
    """A refusal names `expected` when one problem is about it (or, below the root, about an entry of it)."""
    return any(
        f == expected
        or (expected != "spec" and (f.startswith(expected + ".") or f.startswith(expected + "[")))
        for f in fields
    )


# ---- the catalogue, through local validation alone ------------------------------------------------


def test_catalogue_size() -> None:
    assert len(INVALID) >= 80 and len(VALID) >= 15
    ids = [c.id for c in INVALID + VALID]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("case", INVALID, ids=[c.id for c in INVALID])
def test_catalogue_invalid_is_refused_naming_the_field(case: Case) -> None:
    with pytest.raises(SpecError) as err:
        validate_object(case.body)
    fields = [p.field for p in err.value.problems]
    assert case.field is not None
    assert names_field(err.value.errors, fields, case.field), (case.field, err.value.errors)


@pytest.mark.parametrize("case", VALID, ids=[c.id for c in VALID])
def test_catalogue_valid_is_accepted(case: Case) -> None:
    validate_object(case.body)


@pytest.mark.parametrize(("case", "text", "expected"), RAW_INVALID, ids=[c for c, _, _ in RAW_INVALID])
def test_catalogue_raw_documents_are_refused(tmp_path: Path, case: str, text: str, expected: str) -> None:
    path = tmp_path / f"{case}.yaml"
    path.write_text(text)
    started = time.monotonic()
    scan = scan_manifests(path)
    assert time.monotonic() - started < 2  # an alias bomb is refused at once, not expanded
    assert any(expected in str(p) and str(path) in str(p) for p in scan.problems), scan.problems
    assert not scan.resources


# ---- rules --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (sb(load={"parallel": [1, 2], "number": [2]}), "spec.load.number: spec.load.parallel and spec.load.number"),
        (sb(quantJobRef={"name": "q"}), "spec: set exactly one of spec.model, spec.quantJobRef or spec.endpoint"),
        (sb(model={"path": "/m", "pvc": {"claimName": "x"}}), "spec.model: set exactly one of huggingFace, modelScope, pvc or path"),
        (sb(engine={"name": "llamacpp", "tensorParallelSize": 2}), "spec.engine.tensorParallelSize: "),
        (sb(engine={"name": "vllm", "tensorParallelSize": 4}, resources={"gpus": 1}),
         "spec.engine.tensorParallelSize: spec.engine.tensorParallelSize must not exceed spec.resources.gpus"),
        (sb(engine={"name": "vllm", "gpuMemoryUtilization": 2}), "spec.engine.gpuMemoryUtilization: "),
    ],
)  # fmt: skip
def test_refused_with_field(spec: dict[str, Any], expected: str) -> None:
    with pytest.raises(SpecError) as err:
        validate_resource("ServeBenchmark", "x", spec)
    assert any(e.startswith(expected) for e in err.value.errors), err.value.errors


def test_quantjob_rules() -> None:
    base = {"model": {"path": "/m"}, "output": {"path": "/o"}}
    with pytest.raises(SpecError, match=r"spec\.calibration is required"):
        validate_resource("QuantJob", "q", {**base, "method": "gptq"})
    with pytest.raises(SpecError, match=r"spec\.method gguf requires spec\.gguf"):
        validate_resource("QuantJob", "q", {**base, "method": "gguf"})
    ok = validate_resource("QuantJob", "q", {**base, "method": "gguf",
                                             "gguf": {"imatrix": False, "variants": [{"type": "Q4_K_M"}]}})  # fmt: skip
    assert ok["gguf"]["outtype"] == "f16"  # defaults applied before the rules, as in the apiserver


def test_defaults_and_nulls_as_the_apiserver() -> None:
    body, spec = validate_object({"apiVersion": "servelab.dev/v1alpha1", "kind": "ServeBenchmark",
                                  "metadata": {"name": "x"}, "spec": sb(serverPolicy=None, shmSize=None)})  # fmt: skip
    assert body["spec"]["serverPolicy"] == "Delete" and body["spec"]["shmSize"] == "16Gi"
    assert "evaluations" not in body["spec"]  # no default for an empty list: has() is false in CEL too
    assert spec.to_wire()["engine"]["tensorParallelSize"] == 1


def test_type_errors_stop_cel_like_the_apiserver() -> None:
    with pytest.raises(SpecError) as err:
        validate_resource("ServeBenchmark", "x", sb(load={"parallel": ["1"], "number": [1, 2]}))
    assert err.value.errors[0].startswith("spec.load.parallel[0]: Invalid value")
    assert not any("same length" in e for e in err.value.errors)  # the CEL rule was not run
    assert "not checked" in err.value.errors[-1]


def test_unknown_fields_alone_are_reported() -> None:
    with pytest.raises(SpecError) as err:
        validate_resource(
            "ServeBenchmark", "x", sb(engine={"name": "vllm", "max_model_len": 4096}, shmSize="1GB")
        )
    assert err.value.errors == [
        "spec.engine.max_model_len: unknown field (not declared in the schema: misspelt, or snake_case instead of "
        "camelCase?)"
    ]


def test_every_example_passes_local_validation() -> None:
    for res in load_manifests(repo_path("examples")):
        res.spec()


# ---- YAML as kubectl reads it -------------------------------------------------------------------------


def _one(text: str) -> Any:
    docs = list(read_documents(text))
    assert len(docs) == 1
    return getattr(docs[0], "body", docs[0])


@pytest.mark.parametrize(
    ("text", "value"),
    [("yes", True), ("on", True), ("y", True), ("No", False), ("off", False), ("~", None), ("", None),
     ("10", 10), ("1_000", 1000), ("0x1F", 31), ("017", 15), ("0o17", 15), ("1e3", 1000.0), ("-.5", -0.5), ("2.0", 2.0),
     ("2024-01-01", "2024-01-01"), ("1:20", "1:20"), ("64Gi", "64Gi"), ("'true'", "true"), ('"10"', "10"),
     ("=", "=")],
)  # fmt: skip
def test_scalars_resolve_as_in_kubectl(text: str, value: Any) -> None:
    assert _one(f"v: {text}\n") == {"v": value}


def test_merge_keys_work_and_duplicate_keys_are_warned_about() -> None:
    assert _one("a: &a {p: 1, q: 2}\nb:\n  <<: *a\n  q: 3\n")["b"] == {"p": 1, "q": 3}
    assert _one("y: 1\n") == {"true": 1}  # go-yaml v2 reads a `y` key as true, and so does kubectl
    (doc,) = read_documents("a: 1\nb: 2\na: 3\n")
    assert isinstance(doc, Document) and doc.body == {"a": 3, "b": 2}  # kubectl keeps the last one too
    assert "key 'a' is set twice" in str(doc.warnings[0]) and doc.warnings[0].line == 3


@pytest.mark.parametrize(
    ("text", "expected"),
    [("a: &a [*a]\n", "recursive YAML alias"), ("a: .nan\n", "no NaN"), ("a: !!binary aGk=\n", "no JSON form"),
     ("a: !foo x\n", "could not determine a constructor"), ("a: [\n", "YAML syntax")],
)  # fmt: skip
def test_yaml_problems(text: str, expected: str) -> None:
    assert expected in str(_one(text))


def test_alias_bomb_is_refused_at_once() -> None:
    text = dict((c, t) for c, t, _ in [(c, t, e) for c, t, e in RAW_INVALID])["alias-bomb"]
    assert len(text) < 1024
    started = time.monotonic()
    problem = _one(text)
    assert time.monotonic() - started < 1
    assert "alias bomb" in str(problem)


def test_documents_of_other_apis_are_counted_not_judged(tmp_path: Path) -> None:
    path = tmp_path / "mixed.yaml"
    path.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: calib}\n---\n---\n"
                    "apiVersion: servelab.dev/v1alpha1\nkind: QuantJob\nmetadata: {name: q}\nspec: {}\n")  # fmt: skip
    scan = scan_manifests(path)
    assert [r.name for r in scan.resources] == ["q"] and scan.resources[0].document == 3
    assert scan.others == [f"{path}:1: v1/ConfigMap calib"]
    assert not scan.problems


def test_load_manifests_raises_with_located_problems(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "apiVersion: servelab.dev/v1alpha1\nkind: QuantJob\nmetadata: {name: q}\nspec: {}\n---\n- 1\n"
    )
    with pytest.raises(ManifestError) as err:
        load_manifests(path)
    assert str(err.value) == f"{path}:6: document 2: is a list, not an object: each document must be one resource " \
                             "(apiVersion, kind, metadata, spec)"  # fmt: skip


# ---- the commands -----------------------------------------------------------------------------------


BAD = """\
apiVersion: servelab.dev/v1alpha1
kind: ServeBenchmark
metadata:
  name: qwen3-4b
spec:
  model:
    huggingFace: {id: Qwen/Qwen3-4B}
  engine:
    name: vllm
  load:
    parallel: [1]
    number: [4]
  resources:
    memory: 64GB
---
apiVersion: servelab.dev/v1alpha1
kind: Quantjob
metadata: {name: q}
"""


def test_servelab_validate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "bad.yaml").write_text(BAD)
    assert main(["validate", "-f", str(tmp_path)]) == 1
    out, err = capsys.readouterr()
    assert out.splitlines() == [
        f"{tmp_path}/bad.yaml:17: document 2: unknown kind 'Quantjob' for apiVersion 'servelab.dev/v1alpha1' "
        "(did you mean QuantJob?)",
        f"{tmp_path}/bad.yaml:14: ServeBenchmark/qwen3-4b: spec.resources.memory: must be a Kubernetes quantity such "
        "as 64Gi, 512Mi, 500m or 8 (binary units Ki Mi Gi Ti, decimal k M G T; not GB or MB)",
    ]
    assert "Traceback" not in err and "2 problem(s)" in err
    assert main(["validate", "-f", str(tmp_path / "missing.yaml")]) == 1
    assert "no such file or directory" in capsys.readouterr().out


def test_servelab_validate_examples(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "-f", str(repo_path("examples"))]) == 0
    assert capsys.readouterr().out == ""


def test_servelab_run_prints_the_same_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "bad.yaml").write_text(BAD)
    assert main(["validate", "-f", str(tmp_path)]) == 1
    validate_lines = capsys.readouterr().out.splitlines()
    assert main(["run", "-f", str(tmp_path), "--runs-dir", str(tmp_path / "runs")]) == 1
    out, err = capsys.readouterr()
    assert err.splitlines()[: len(validate_lines)] == validate_lines
    assert "nothing was run" in err and "Traceback" not in err + out
    assert not (tmp_path / "runs").exists()


def test_yaml_dump_of_the_catalogue_reads_back_the_same() -> None:
    # the integration test writes each case as YAML for `servelab validate`: no value may change on the way
    for case in INVALID + VALID:
        assert _one(dump_yaml(case.body)) == case.body, case.id
    assert _one(yaml.safe_dump({"v": "1e9"})) == {"v": 1e9}  # why dump_yaml quotes more than PyYAML
