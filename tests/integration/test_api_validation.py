"""The real kube-apiserver enforces the generated CRDs: bad specs are refused naming the field,
every example is accepted, and the kinds show up where users look for them."""

from __future__ import annotations

import contextlib
import copy
import io
import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from catalogue import INVALID, RAW_INVALID, VALID, Case
from servelab import GROUP, VERSION
from servelab.cli import main
from servelab.manifests import dump_yaml, load_manifests
from servelab.paths import repo_path

pytestmark = pytest.mark.integration


def example_docs() -> list[tuple[str, dict[str, Any]]]:
    return [(r.label, r.body) for r in load_manifests(repo_path("examples"))]


PLURAL = {"QuantJob": "quantjobs", "ServeBenchmark": "servebenchmarks"}


def _obj(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": kind, "metadata": {"name": name}, "spec": spec}


def _sb(**over: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "model": {"huggingFace": {"id": "Qwen/Qwen3-4B-Instruct-2507"}},
        "engine": {"name": "vllm"},
        "load": {"parallel": [1, 10], "number": [10, 30]},
    }
    spec.update(over)
    return _obj("ServeBenchmark", "bad", spec)


def _qj(**over: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "model": {"huggingFace": {"id": "Qwen/Qwen3-4B-Instruct-2507"}},
        "method": "gptq",
        "calibration": {"source": {"path": "/data/calib.jsonl"}},
        "output": {"path": "/out"},
    }
    spec.update(over)
    return _obj("QuantJob", "bad", spec)


def _create(api: client.CustomObjectsApi, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = api.create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL[body["kind"]], body, field_validation="Strict"
    )
    return result


BAD = [
    ("parallel-number-length", _sb(load={"parallel": [1, 10, 20], "number": [10, 30]}),
     ["spec.load.number", "spec.load.parallel and spec.load.number must have the same length"]),
    ("model-and-ref", _sb(quantJobRef={"name": "q"}),
     ["set exactly one of spec.model, spec.quantJobRef or spec.endpoint"]),
    ("neither-model-nor-ref", _obj("ServeBenchmark", "bad", {"engine": {"name": "vllm"}, "load": {"parallel": [1], "number": [1]}}),
     ["set exactly one of spec.model, spec.quantJobRef or spec.endpoint"]),
    ("two-model-sources", _sb(model={"path": "/m", "pvc": {"claimName": "models"}}),
     ["spec.model", "set exactly one of huggingFace, modelScope, pvc or path"]),
    ("tp-over-gpus", _sb(engine={"name": "vllm", "tensorParallelSize": 4}, resources={"gpus": 2}),
     ["spec.engine.tensorParallelSize", "must not exceed spec.resources.gpus"]),
    ("llamacpp-tp", _sb(engine={"name": "llamacpp", "tensorParallelSize": 2}),
     ["spec.engine.tensorParallelSize", "must be 1 for llamacpp"]),
    ("llamacpp-options-on-vllm", _sb(engine={"name": "vllm", "llamacpp": {"gpuLayers": 99}}),
     ["spec.engine.llamacpp", "only valid with engine.name: llamacpp"]),
    ("operator-owned-flag", _sb(engine={"name": "vllm", "extraArgs": ["--port", "9"]}),
     ["spec.engine.extraArgs", "must not set --host, --port"]),
    ("unknown-engine", _sb(engine={"name": "tgi"}), ["spec.engine.name", "Unsupported value"]),
    ("memory-fraction", _sb(engine={"name": "vllm", "gpuMemoryUtilization": 1.5}),
     ["spec.engine.gpuMemoryUtilization"]),
    ("zero-parallel", _sb(load={"parallel": [0], "number": [1]}), ["spec.load.parallel[0]"]),
    ("prompt-range", _sb(load={"parallel": [1], "number": [1], "minPromptLength": 2048, "maxPromptLength": 1024}),
     ["spec.load.minPromptLength", "must not exceed spec.load.maxPromptLength"]),
    ("nothing-to-run", _obj("ServeBenchmark", "bad", {"model": {"path": "/m"}, "engine": {"name": "vllm"}}),
     ["set at least one of spec.load, spec.contextSweep, spec.llamaBench, spec.llamaBenchy, "
      "spec.offlineThroughput or spec.evaluations"]),
    ("unknown-field", _sb(engine={"name": "vllm", "tensorParalelSize": 2}),
     ['unknown field "spec.engine.tensorParalelSize"']),
    ("gguf-options-on-gptq", _qj(gguf={"variants": [{"type": "IQ4_XS"}]}),
     ["spec.gguf", "spec.gguf is only valid with spec.method: gguf"]),
    ("gguf-without-options", _qj(method="gguf"),
     ["spec.gguf", "spec.method gguf requires spec.gguf"]),
    ("gptq-without-calibration", _obj("QuantJob", "bad", {"model": {"path": "/m"}, "method": "gptq", "output": {"path": "/o"}}),
     ["spec.calibration", "spec.calibration is required"]),
    ("unknown-gguf-type", _qj(method="gguf", gguf={"variants": [{"type": "Q4_K_X"}]}),
     ["spec.gguf.variants[0].type", "Unsupported value"]),
    ("compressor-on-gguf", _qj(method="gguf", gguf={"variants": [{"type": "Q4_K_M"}]}, compressor={"scheme": "W4A16"}),
     ["spec.compressor", "only valid with the llm-compressor methods"]),
]  # fmt: skip


@pytest.mark.parametrize(("case", "body", "expected"), BAD, ids=[c for c, _, _ in BAD])
def test_bad_spec_is_refused_naming_the_field(
    kube: client.ApiClient, namespace: str, case: str, body: dict[str, Any], expected: list[str]
) -> None:
    api = client.CustomObjectsApi(kube)
    with pytest.raises(ApiException) as err:
        _create(api, namespace, copy.deepcopy(body))
    # schema and CEL violations are 422 Invalid; an unknown field under fieldValidation=Strict is 400
    assert err.value.status == (400 if case == "unknown-field" else 422), err.value.body
    message = json.loads(err.value.body)["message"]
    for text in expected:
        assert text in message, f"{case}: {text!r} not in {message!r}"


def test_every_example_is_accepted(kube: client.ApiClient, namespace: str) -> None:
    api = client.CustomObjectsApi(kube)
    created = []
    for _label, doc in example_docs():
        obj = _create(api, namespace, copy.deepcopy(doc))
        created.append((obj["kind"], obj["metadata"]["name"]))
        # the apiserver applied the schema defaults
        if obj["kind"] == "ServeBenchmark":
            assert obj["spec"]["engine"]["tensorParallelSize"] >= 1
            assert obj["spec"]["serverPolicy"] in ("Delete", "Keep", "KeepOnFailure")
    assert len(created) == len(example_docs())


def test_kubectl_get_servelab_lists_both_kinds(
    kube: client.ApiClient, namespace: str, kubectl: list[str]
) -> None:
    api = client.CustomObjectsApi(kube)
    labels = dict(example_docs())
    _create(api, namespace, copy.deepcopy(labels["000-gguf-iq4xs-vllm-vs-llamacpp.yaml:qwen3-4b-gguf"]))
    _create(api, namespace, copy.deepcopy(labels["000-vllm-bf16-vs-gptq.yaml:qwen3-4b-bf16-vllm"]))
    out = subprocess.run(
        [*kubectl, "get", "servelab", "-n", namespace], capture_output=True, text=True, check=True
    )
    assert "quantjob.servelab.dev/qwen3-4b-gguf" in out.stdout
    assert "servebenchmark.servelab.dev/qwen3-4b-bf16-vllm" in out.stdout
    wide = subprocess.run([*kubectl, "get", "sb", "-n", namespace, "-o", "wide"], capture_output=True, text=True,
                          check=True)  # fmt: skip
    header = wide.stdout.splitlines()[0].split()
    assert header[:6] == ["NAME", "PHASE", "ENGINE", "MODEL", "QUANT", "POINTS"], header
    assert "GPU" in header and "AGE" in header


# ---- the catalogue: the apiserver and `servelab validate` agree, case by case ------------------------


@pytest.fixture(scope="module")
def catalogue_namespace(kube: client.ApiClient) -> Iterator[str]:
    """One namespace for every catalogue case (server-side dry runs store nothing)."""
    core = client.CoreV1Api(kube)
    name = f"catalogue-{uuid.uuid4().hex[:6]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    try:
        yield name
    finally:
        core.delete_namespace(name, propagation_policy="Background")


def _apiserver_verdict(kube: client.ApiClient, namespace: str, body: dict[str, Any]) -> str | None:
    """None when the apiserver accepts `body` (server-side dry-run create, strict field validation, as
    `kubectl apply` sends it), else its message."""
    api = client.CustomObjectsApi(kube)
    # kubectl sends a YAML 2.0 as the JSON number 2 (Go encodes an integral float64 so); json.dumps would
    # send 2.0, which the apiserver's CEL then refuses to read as an integer
    body = json.loads(
        json.dumps(body), parse_float=lambda s: int(float(s)) if float(s).is_integer() else float(s)
    )
    try:
        api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL[body["kind"]], copy.deepcopy(body),
                                            dry_run="All", field_validation="Strict")  # fmt: skip
    except ApiException as err:
        assert err.status in (400, 422), err.body
        message: str = json.loads(err.body)["message"]
        return message
    return None


def _local_verdict(tmp_path: Path, name: str, text: str) -> tuple[int, str]:
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        rc = main(["validate", "-f", str(path)])
    return rc, out.getvalue()


@pytest.mark.parametrize("case", INVALID + VALID, ids=[c.id for c in INVALID + VALID])
def test_catalogue_apiserver_and_servelab_validate_agree(
    kube: client.ApiClient, catalogue_namespace: str, tmp_path: Path, case: Case
) -> None:
    server = _apiserver_verdict(kube, catalogue_namespace, case.body)
    rc, local = _local_verdict(tmp_path, case.id, dump_yaml(case.body))
    assert (server is None) == case.valid, f"apiserver: {server}"
    assert (rc == 0) == case.valid, f"servelab validate: {local}"
    if case.field is not None:
        assert server is not None and case.field in server, f"apiserver does not name {case.field}: {server}"
        assert f": {case.field}" in local, f"servelab validate does not name {case.field}: {local}"


@pytest.mark.parametrize(("case", "text", "expected"), RAW_INVALID, ids=[c for c, _, _ in RAW_INVALID])
def test_catalogue_raw_documents_kubectl_and_servelab_validate_refuse(
    kubectl: list[str], catalogue_namespace: str, tmp_path: Path, case: str, text: str, expected: str
) -> None:
    rc, local = _local_verdict(tmp_path, case, text)
    assert rc == 1 and expected in local, local
    ran = subprocess.run([*kubectl, "create", "--dry-run=server", "-n", catalogue_namespace, "-f",
                          str(tmp_path / f"{case}.yaml")], capture_output=True, text=True, timeout=60)  # fmt: skip
    assert ran.returncode != 0, ran.stdout


@pytest.mark.parametrize(
    ("yaml_text", "valid"),
    [("ignoreEos: true", True), ("ignoreEos: yes", True), ('ignoreEos: "true"', False), ("ignoreEos: 'yes'", False),
     ("maxTokens: 1e3", True), ("maxTokens: 0x400", True), ('maxTokens: "1024"', False), ("ignore_eos: true", False),
     ("maxTokens: 1024\n    maxTokens: 2048", True)],
)  # fmt: skip
def test_kubectl_apply_reads_yaml_as_servelab_validate(
    kubectl: list[str], catalogue_namespace: str, tmp_path: Path, yaml_text: str, valid: bool
) -> None:
    """YAML scalars, quoting, snake_case and duplicate keys: `kubectl apply` (default --validate=strict)
    and `servelab validate` give the same verdict on the same file."""
    text = (f"apiVersion: {GROUP}/{VERSION}\nkind: ServeBenchmark\nmetadata:\n  name: yaml-{uuid.uuid4().hex[:6]}\n"
            "spec:\n  model: {path: /m}\n  engine: {name: vllm}\n  load:\n    parallel: [1]\n    number: [2]\n"
            f"    {yaml_text}\n")  # fmt: skip
    rc, local = _local_verdict(tmp_path, "doc", text)
    ran = subprocess.run([*kubectl, "apply", "--dry-run=server", "-n", catalogue_namespace, "-f",
                          str(tmp_path / "doc.yaml")], capture_output=True, text=True, timeout=60)  # fmt: skip
    assert (ran.returncode == 0) == valid, ran.stderr
    assert (rc == 0) == valid, local
