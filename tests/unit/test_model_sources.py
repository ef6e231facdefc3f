"""model.modelScope and the model step, as the operator renders them; llama-bench's Job sees the model where
the server does; status.footprint (load time, size on disk, GPU memory) from pods, reports and engine logs.

vLLM and SGLang fetch a ModelScope repository themselves (their environment switch); every other engine,
llama-bench and a QuantJob get `servelab worker model` first, in the same pod (an init container on a
shared emptyDir), which links the snapshot where the engine's command expects it. (End to end, offline,
with llama.cpp: tests/e2e/test_local_modelscope.py.)"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from servelab import core
from servelab.api.quantjob import QuantJobSpec
from servelab.api.servebenchmark import ServeBenchmarkSpec, ServerFootprint
from servelab.api.validate import SpecError, validate_resource
from servelab.controller import kube, render
from servelab.controller.kube import cluster_site
from servelab.controller.settings import Settings
from servelab.core import Observed, Owner, ServerState
from servelab.engines import get
from servelab.workers import model as model_worker

pytestmark = pytest.mark.unit
SETTINGS = Settings()
SITE = cluster_site(SETTINGS)
OWNER = Owner("ServeBenchmark", "ms", "ns", "uid-1", 1)
SWEEP = {
    "depths": [0],
    "promptTokens": 16,
    "genTokens": 8,
}  # a step that needs no client first: the server comes first
MS_GGUF = {"modelScope": {"id": "Qwen/Qwen3-8B-GGUF", "file": "Qwen3-8B-Q4_K_M.gguf"}}
LINK = "/models/.modelscope/repos/Qwen/Qwen3-8B-GGUF"


def sb(model: dict[str, Any], engine: str | dict[str, Any], **over: Any) -> ServeBenchmarkSpec:
    spec = {
        "model": model,
        "engine": engine if isinstance(engine, dict) else {"name": engine},
        "contextSweep": SWEEP,
        **over,
    }
    spec = {k: v for k, v in spec.items() if v is not None}
    validate_resource("ServeBenchmark", "ms", spec)  # what the apiserver admits
    return ServeBenchmarkSpec.model_validate(spec)


def decide(spec: ServeBenchmarkSpec, **obs: Any) -> tuple[core.Decision, list[dict[str, Any]]]:
    d = core.decide_benchmark(OWNER, spec, Observed(generation=1, status=obs.pop("status", {}), now=core.datetime.now(core.UTC), **obs), SITE)  # fmt: skip
    return d, render.decision_objects(OWNER, spec, d, SETTINGS)[0]


def deployment(objs: list[dict[str, Any]]) -> dict[str, Any]:
    (dep,) = [o for o in objs if o["kind"] == "Deployment"]
    pod: dict[str, Any] = dep["spec"]["template"]["spec"]
    return pod


def env_of(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in container["env"]}


def mounts(container: dict[str, Any]) -> dict[str, str]:
    return {m["name"]: m["mountPath"] for m in container["volumeMounts"]}


def parsed(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    model_worker.add_arguments(parser)
    return parser.parse_args(argv[3:])


# ---- vLLM and SGLang: the environment switch and the model id ---------------------------------------------
@pytest.mark.parametrize(
    ("engine", "switch", "head"),
    [("vllm", ("VLLM_USE_MODELSCOPE", "True"), ["vllm", "serve", "Qwen/Qwen3-8B", "--revision", "v1.0"]),
     ("sglang", ("SGLANG_USE_MODELSCOPE", "true"), ["python3", "-m", "sglang.launch_server", "--model-path",
                                                     "Qwen/Qwen3-8B", "--revision", "v1.0"])],
)  # fmt: skip
def test_vllm_and_sglang_fetch_a_modelscope_model_themselves(
    engine: str, switch: tuple[str, str], head: list[str]
) -> None:
    spec = sb({"modelScope": {"id": "Qwen/Qwen3-8B", "revision": "v1.0"}}, engine)
    _, objs = decide(spec)
    pod = deployment(objs)
    (engine_c,) = pod["containers"]
    assert engine_c["command"][: len(head)] == head
    assert env_of(engine_c)[switch[0]] == switch[1]
    assert (
        "initContainers" not in pod
    )  # nothing fetched before it: the engine does it, so no size is measured
    assert not any(v["name"] == "modelscope" for v in pod["volumes"])
    # a Hugging Face source of the same id gets no switch (the switch is ModelScope's only)
    hf = deployment(decide(sb({"huggingFace": {"id": "Qwen/Qwen3-8B"}}, engine))[1])
    assert switch[0] not in env_of(hf["containers"][0])


def test_the_switch_yields_to_the_specs_own_engine_env() -> None:
    spec = sb(
        {"modelScope": {"id": "Qwen/Qwen3-8B"}},
        {"name": "vllm", "env": [{"name": "VLLM_USE_MODELSCOPE", "value": "1"}]},
    )
    pod = deployment(decide(spec)[1])
    assert env_of(pod["containers"][0])["VLLM_USE_MODELSCOPE"] == "1"


def test_modelscope_file_and_owner_are_checked_at_admission() -> None:
    with pytest.raises(SpecError) as err:
        sb({"modelScope": {"id": "Qwen/Qwen3-8B-GGUF", "file": "a.gguf"}}, "vllm")
    assert any(
        e.startswith("spec.model.modelScope.file: only engines that serve one file") for e in err.value.errors
    )
    with pytest.raises(SpecError) as err:
        sb({"modelScope": {"id": "Qwen3-8B"}}, "llamacpp")
    assert any("ModelScope repository id" in e for e in err.value.errors)
    with pytest.raises(SpecError) as err:
        sb({"modelScope": {"id": "Qwen/Qwen3-8B"}, "path": "/m"}, "llamacpp")
    assert any("exactly one of huggingFace, modelScope, pvc or path" in e for e in err.value.errors)


# ---- every other engine: the model step first, in the server pod --------------------------------------------
def test_llamacpp_serves_a_modelscope_file_fetched_by_an_init_container() -> None:
    d, objs = decide(sb(MS_GGUF, "llamacpp"))
    pod = deployment(objs)
    (init,) = pod["initContainers"]
    (engine_c,) = pod["containers"]
    assert init["name"] == "model" and init["image"] == SETTINGS.image("evalscope")
    assert init["command"] == ["servelab", "worker", "model", "--modelscope", "Qwen/Qwen3-8B-GGUF", "--link", LINK,
                               "--file", "Qwen3-8B-Q4_K_M.gguf"]  # fmt: skip
    args = parsed(init["command"])  # the worker's own parser takes it
    assert (args.modelscope, str(args.link), args.file) == (
        "Qwen/Qwen3-8B-GGUF",
        LINK,
        "Qwen3-8B-Q4_K_M.gguf",
    )
    assert (
        env_of(init)["MODELSCOPE_CACHE"] == "/models/.modelscope/cache"
    )  # on the shared volume: the link holds
    assert (
        init["terminationMessagePolicy"] == "File"
    )  # its report reaches the operator through the pod status
    assert {"name": "modelscope", "emptyDir": {}} in pod["volumes"]
    assert mounts(init)["modelscope"] == mounts(engine_c)["modelscope"] == "/models/.modelscope"
    assert engine_c["command"][:3] == ["llama-server", "-m", f"{LINK}/Qwen3-8B-Q4_K_M.gguf"]
    assert d.status.model == f"{LINK}/Qwen3-8B-Q4_K_M.gguf"


@pytest.mark.parametrize(("engine", "model"), [("ollama", MS_GGUF), ("transformers", {"modelScope": {"id": "Qwen/Qwen3-0.6B"}}),
                                               ("mlx", {"modelScope": {"id": "Qwen/Qwen3-0.6B", "revision": "master"}})])  # fmt: skip
def test_other_engines_read_the_linked_snapshot(engine: str, model: dict[str, Any]) -> None:
    pod = deployment(decide(sb(model, engine))[1])
    (init,) = pod["initContainers"]
    ms = model["modelScope"]
    link = f"/models/.modelscope/repos/{ms['id']}"
    served = f"{link}/{ms['file']}" if "file" in ms else link
    assert init["command"][3:7] == ["--modelscope", ms["id"], "--link", link]
    assert parsed(init["command"]).revision == ms.get("revision")
    assert served in pod["containers"][0]["command"]
    assert not any(k.endswith("_USE_MODELSCOPE") for k in env_of(pod["containers"][0]))


def test_a_pvc_model_is_measured_in_place_before_the_server() -> None:
    pod = deployment(decide(sb({"pvc": {"claimName": "models", "path": "q/m.gguf"}}, "llamacpp"))[1])
    (init,) = pod["initContainers"]
    assert init["command"] == ["servelab", "worker", "model", "--path", "/models/models/q/m.gguf"]
    assert mounts(init)["model"] == mounts(pod["containers"][0])["model"] == "/models/models"
    assert env_of(init) == {}  # nothing fetched
    # a path inside the engine's image is not visible to the step's image: nothing to run in a cluster
    assert "initContainers" not in deployment(decide(sb({"path": "/m.gguf"}, "llamacpp"))[1])
    # a Hub model the engine downloads itself has no model step: its size is not known to servelab
    assert "initContainers" not in deployment(decide(sb({"huggingFace": {"id": "org/m"}}, "vllm"))[1])


def test_a_quantjob_quantizes_a_modelscope_model_fetched_first() -> None:
    spec = QuantJobSpec.model_validate({
        "model": {"modelScope": {"id": "Qwen/Qwen3-0.6B"}}, "method": "gguf",
        "gguf": {"imatrix": False, "variants": [{"type": "Q4_K_M"}]},
        "output": {"pvc": {"claimName": "models", "path": "out"}}})  # fmt: skip
    owner = Owner("QuantJob", "qj", "ns", "uid-2", 1)
    d = core.decide_quantjob(
        owner, spec, Observed(generation=1, status={}, now=core.datetime.now(core.UTC)), SITE
    )
    (job,) = [o for o in render.decision_objects(owner, spec, d, SETTINGS)[0] if o["kind"] == "Job"]
    pod = job["spec"]["template"]["spec"]
    (init,) = pod["initContainers"]
    link = "/models/.modelscope/repos/Qwen/Qwen3-0.6B"
    assert init["command"] == [
        "servelab",
        "worker",
        "model",
        "--modelscope",
        "Qwen/Qwen3-0.6B",
        "--link",
        link,
    ]
    worker = pod["containers"][0]
    assert worker["command"][3:5] == ["--hf-dir", link]
    assert mounts(init)["modelscope"] == mounts(worker)["modelscope"] == "/models/.modelscope"


# ---- llama-bench reads the model file where the server does ------------------------------------------------
def bench_job(model: dict[str, Any], **over: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """The server's pod and the llama-bench Job of a spec with spec.llamaBench only."""
    spec = sb(
        model, "llamacpp", contextSweep=None, llamaBench={"promptTokens": [64], "genTokens": [16]}, **over
    )
    first, objs = decide(spec)
    server = deployment(objs)
    _, objs = decide(spec, status=first.status.to_wire(), server=ServerState(exists=True, ready=True))
    (job,) = [o for o in objs if o["kind"] == "Job"]
    assert job["metadata"]["name"].endswith("llama-bench")
    return server, job["spec"]["template"]["spec"]


def test_llama_bench_mounts_the_model_pvc_like_the_server() -> None:
    server, pod = bench_job({"pvc": {"claimName": "models", "path": "q/m.gguf"}})
    (worker,) = pod["containers"]
    assert worker["command"][3:5] == ["--model", "/models/models/q/m.gguf"]
    claim = {"name": "model", "persistentVolumeClaim": {"claimName": "models", "readOnly": True}}
    assert claim in pod["volumes"] and claim in server["volumes"]
    assert mounts(worker)["model"] == mounts(server["containers"][0])["model"] == "/models/models"


def test_llama_bench_fetches_a_modelscope_file_like_the_server() -> None:
    server, pod = bench_job(MS_GGUF)
    (init,) = pod["initContainers"]
    assert init["command"] == server["initContainers"][0]["command"]
    assert pod["containers"][0]["command"][3:5] == ["--model", f"{LINK}/Qwen3-8B-Q4_K_M.gguf"]
    assert mounts(pod["containers"][0])["modelscope"] == "/models/.modelscope"


def test_llama_bench_downloads_a_hub_file_with_the_servers_token() -> None:
    _, pod = bench_job(
        {"huggingFace": {"id": "org/m-GGUF", "file": "m.gguf"}}, hfTokenSecretRef={"name": "hf"}
    )
    (worker,) = pod["containers"]
    assert worker["command"][3:7] == ["--hf-repo", "org/m-GGUF", "--hf-file", "m.gguf"]
    env = {e["name"]: e for e in worker["env"]}
    assert env["HF_HUB_OFFLINE"]["value"] == "0" and env["HF_HOME"]["value"] == mounts(worker)["hf-cache"]
    assert env["HF_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "hf", "key": "token"}
    from servelab.workers import llamabench

    parser = argparse.ArgumentParser()
    llamabench.add_arguments(parser)
    args = parser.parse_args(worker["command"][3:])
    assert (args.hf_repo, args.hf_file, args.model) == ("org/m-GGUF", "m.gguf", None)


def test_llama_bench_of_a_path_mounts_nothing() -> None:
    _, pod = bench_job({"path": "/m.gguf"})
    assert [v["name"] for v in pod["volumes"]] == ["artifacts"] and "initContainers" not in pod


# ---- status.footprint ---------------------------------------------------------------------------------------
def pod_status(ready: bool, report: dict[str, Any] | None) -> dict[str, Any]:
    status: dict[str, Any] = {
        "phase": "Running",
        "conditions": [{"type": "Ready", "status": "True" if ready else "False",
                        "lastTransitionTime": "2026-11-22T12:01:40Z"}],
        "containerStatuses": [{"name": "engine", "restartCount": 0,
                               "state": {"running": {"startedAt": "2026-11-22T12:00:05Z"}}}],
    }  # fmt: skip
    if report is not None:
        status["initContainerStatuses"] = [{"name": "model", "state": {"terminated": {
            "exitCode": 0, "message": json.dumps(report)}}}]  # fmt: skip
    return {"spec": {"nodeName": "n1"}, "status": status}


def test_the_pod_status_gives_load_time_and_the_model_steps_size() -> None:
    report = {"path": "/models/models/m.gguf", "bytes": 4683073856, "source": "measured in place; du of /m"}
    s = kube._pod_summary(pod_status(True, report))
    assert s.ready and s.load_seconds == 95.0 and s.model_report == report
    fp = kube._footprint(s)
    assert (fp.load_seconds, fp.model_bytes, fp.model_bytes_source) == (95.0, 4683073856, report["source"])
    assert fp.gpu_memory_bytes is None  # the operator reads no engine log: null, not a guess
    not_ready = kube._pod_summary(pod_status(False, None))
    assert not_ready.load_seconds is None and not_ready.model_report is None


def test_a_failing_model_step_fails_the_server() -> None:
    obj = pod_status(False, None)
    obj["status"]["initContainerStatuses"] = [{"name": "model", "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                                               "lastState": {"terminated": {"exitCode": 1, "message": "cannot download"}}}]  # fmt: skip
    assert kube._pod_summary(obj).failed == "init container model: CrashLoopBackOff: cannot download"


def test_the_footprint_reaches_status_once_ready_and_stays() -> None:
    spec = sb(MS_GGUF, "llamacpp")
    first, _ = decide(spec)
    seen = ServerFootprint(load_seconds=12.5, load_source="pod", model_bytes=100, model_bytes_source="du")
    d, _ = decide(
        spec, status=first.status.to_wire(), server=ServerState(exists=True, ready=True, footprint=seen)
    )
    assert d.status.footprint == seen
    later = ServerFootprint(load_seconds=99.0, gpu_memory_bytes=2048, gpu_memory_source="log")
    again, _ = decide(
        spec, status=d.status.to_wire(), server=ServerState(exists=True, ready=True, footprint=later)
    )
    fp = again.status.footprint
    assert fp is not None and (fp.load_seconds, fp.model_bytes, fp.gpu_memory_bytes) == (12.5, 100, 2048)


# the lines as the pinned releases write them (vllm v1 gpu_model_runner / gpu_worker; sglang model_runner and
# memory_pool); v0.11.0's "Model loading took X GiB and Y seconds" (no "memory") is read the same way
VLLM_LOG = """INFO 11-22 12:00:31 [gpu_model_runner.py:5150] Model loading took 15.27 GiB memory and 10.430000 seconds
INFO 11-22 12:00:52 [gpu_worker.py:298] Available KV cache memory: 103.49 GiB
"""
SGLANG_LOG = """[2026-11-22 12:00:31 TP0] Load weight end. type=Qwen3ForCausalLM, dtype=torch.bfloat16, avail mem=122.84 GB, mem usage=15.46 GB.
[2026-11-22 12:00:33 TP0] KV Cache is allocated. dtype: torch.bfloat16, #tokens: 846351, K size: 48.43 GB, V size: 48.43 GB
"""  # fmt: skip
# the pinned llama-server's lines at -lv 4 (its CPU build here prints the CPU ones exactly so; a CUDA
# build names its device buffers CUDA0 and its pinned host buffers CUDA_Host)
LLAMA_LOG = """0.00.073.968 I load_tensors:        CUDA0 model buffer size =  4403.49 MiB
0.00.073.970 I load_tensors:   CPU_Mapped model buffer size =   333.84 MiB
0.00.074.686 I llama_context:  CUDA_Host  output buffer size =     0.58 MiB
0.00.074.737 I llama_kv_cache:      CUDA0 KV buffer size =  2304.00 MiB
0.00.081.626 I sched_reserve:      CUDA0 compute buffer size =   304.75 MiB
0.00.081.630 I sched_reserve:  CUDA_Host compute buffer size =    24.01 MiB
"""


def test_gpu_memory_as_each_engine_logs_it() -> None:
    mem, said = get("vllm").gpu_memory(VLLM_LOG) or (None, "")
    assert mem == int((15.27 + 103.49) * (1 << 30)) and "15.27 GiB" in said and "103.49 GiB" in said
    old = get("vllm").gpu_memory("Model loading took 15.2683 GiB and 10.43 seconds\n")
    assert old is not None and old[0] == int(15.2683 * (1 << 30))
    mem, said = get("sglang").gpu_memory(SGLANG_LOG) or (None, "")
    assert mem == int((15.46 + 48.43 + 48.43) * (1 << 30)) and "mem usage 15.46 GB" in said
    mla = (
        SGLANG_LOG.splitlines()[0]
        + "\n[TP0] KV Cache is allocated. dtype: torch.bfloat16, #tokens: 9, KV size: 30.10 GB\n"
    )
    assert (get("sglang").gpu_memory(mla) or (None,))[0] == int((15.46 + 30.10) * (1 << 30))
    for engine in ("llamacpp", "ollama"):  # Ollama's runner is llama.cpp: the same lines in its log
        mem, said = get(engine).gpu_memory(LLAMA_LOG) or (None, "")
        assert mem == int((4403.49 + 2304.00 + 304.75) * (1 << 20))
        assert "CUDA0 model buffer 4403.49 MiB" in said and "CPU" not in said and "Host" not in said
    cpu_only = (  # the CPU build's own log (servelab's tiny GGUF, -lv 4)
        "0.00.073.968 I load_tensors:   CPU_Mapped model buffer size =     6.26 MiB\n"
        "0.00.074.686 I llama_context:        CPU  output buffer size =     0.06 MiB\n"
        "0.00.074.737 I llama_kv_cache:        CPU KV buffer size =     0.25 MiB\n"
        "0.00.081.626 I sched_reserve:        CPU compute buffer size =     2.13 MiB\n"
    )
    assert get("llamacpp").gpu_memory(cpu_only) is None
    assert get("transformers").gpu_memory(VLLM_LOG) is None and get("mlx").gpu_memory(LLAMA_LOG) is None
    assert get("vllm").gpu_memory("INFO starting\n") is None


# ---- the model step's measurement --------------------------------------------------------------------------
def test_the_model_step_measures_a_path_and_reports_to_the_sink(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = tmp_path / "m"
    (model / "sub").mkdir(parents=True)
    (model / "a.safetensors").write_bytes(b"x" * 1000)
    (model / "sub" / "b.json").write_bytes(b"y" * 24)
    (model / "again.safetensors").symlink_to(model / "a.safetensors")  # counted once
    report = tmp_path / "model.report.json"
    monkeypatch.setenv("SERVELAB_RESULT_SINK", f"file:{report}")
    assert model_worker.run(parsed(["servelab", "worker", "model", "--path", str(model)])) == 0
    got = json.loads(report.read_text())
    assert (got["bytes"], got["files"], got["path"]) == (1024, 2, str(model))
    missing = tmp_path / "in-the-image"
    assert model_worker.run(parsed(["servelab", "worker", "model", "--path", str(missing)])) == 0
    got = json.loads(report.read_text())
    assert got["bytes"] is None and "not visible" in got["source"]


def test_servelab_run_and_report_show_the_footprint_with_its_sources() -> None:
    from servelab import report
    from servelab.api.servebenchmark import ServeBenchmarkStatus
    from servelab.reporting import compare
    from servelab.reporting import render as report_render
    from servelab.reporting.sources import Run

    fp = ServerFootprint(load_seconds=41.5, load_source="engine container start to the pod's Ready condition",
                         model_bytes=16 << 30, model_bytes_source="measured in place; du of /models/m",
                         gpu_memory_bytes=3 << 29, gpu_memory_source="server log: model loading took 1.5 GiB")  # fmt: skip
    status = ServeBenchmarkStatus(phase="Succeeded", engine="vllm", footprint=fp)
    text = report.footprint_table(status)
    assert "41.50" in text and "16.00 GiB" in text and "1.50 GiB" in text and "du of /models/m" in text
    unknown = report.footprint_table(ServeBenchmarkStatus(footprint=ServerFootprint(load_seconds=2.0)))
    assert "not measured (the engine fetches it)" in unknown and "not reported by the engine" in unknown
    runs = [Run("ServeBenchmark", "a", "ns", {}, status, "test"),
            Run("ServeBenchmark", "b", "ns", {}, ServeBenchmarkStatus(phase="Succeeded", engine="transformers",
                                                                    footprint=ServerFootprint(model_bytes=5 << 20)), "test")]  # fmt: skip
    doc = compare.build(runs)
    (section,) = [s for s in doc.sections if s.title == "Model load, size and memory"]
    (table,) = section.tables
    out = report_render.text(doc)
    assert "Model load, size and memory" in out and "16.00 GiB" in out and "5.00 MiB" in out
    assert [row[0].text for row in table.rows] == ["a", "b"]


# ---- servelab run: the model step before the server, the footprint when it answers ---------------------------
class _Toolchain:
    """Scripts for the model step and the server (everything else is the real local executor)."""

    def __init__(self, model_rc: int, tmp: Path) -> None:
        self.model_rc, self.tmp, self.servers = model_rc, tmp, 0

    def worker_argv(self, step: Any) -> tuple[list[str], dict[str, str]]:
        assert step.id == "model"
        script = f"import os, sys; open(os.environ['SERVELAB_RESULT_SINK'][5:], 'w').write('{{\"bytes\": 7, \"source\": \"du of x\"}}'); print('cannot download'); sys.exit({self.model_rc})"
        return [sys.executable, "-c", script], dict(os.environ)

    def server_argv(self, engine: str, command: list[str]) -> tuple[list[str], dict[str, str]]:
        self.servers += 1
        port = command[command.index("--port") + 1]
        serve = ("import http.server, sys\nclass H(http.server.BaseHTTPRequestHandler):\n"
                 "    def do_GET(self):\n        self.send_response(200); self.end_headers()\n"
                 "    def log_message(self, *a): pass\n"
                 "print('load_tensors:        CUDA0 model buffer size =  1024.00 MiB', flush=True)\n"
                 f"http.server.HTTPServer(('127.0.0.1', {port}), H).serve_forever()\n")  # fmt: skip
        return [sys.executable, "-c", serve], dict(os.environ)


def _local_run(tmp: Path, model_rc: int, steps: bool) -> tuple[Any, _Toolchain]:
    from servelab.local.executor import LocalExecutor
    from servelab.manifests import Resource

    tool = _Toolchain(model_rc, tmp)
    body = {"apiVersion": "servelab.dev/v1alpha1", "kind": "ServeBenchmark", "metadata": {"name": "fp"},
            "spec": {"model": {"path": str(tmp / "m.gguf")}, "engine": {"name": "llamacpp"},
                     "contextSweep": SWEEP, "timeouts": {"serverReadySeconds": 30}}}  # fmt: skip
    ex = LocalExecutor(runs_dir=tmp / "runs", log=lambda _: None, toolchain=tool, tick_seconds=0.05)  # type: ignore[arg-type]
    if steps:  # stop once the footprint is written: it is what is checked (no step runs)
        write = ex._write

        def written(owner: Any, body: Any, status: dict[str, Any]) -> None:
            write(owner, body, status)
            if "footprint" in status:
                raise KeyboardInterrupt

        def idle(step: Any, d: Path) -> Any:  # the sweep's step: a process that waits (stopped at the end)
            from servelab.local.executor import _Step

            proc = ex.procs.spawn(
                [sys.executable, "-c", "import time; time.sleep(60)"], dict(os.environ), d / "idle.log"
            )
            return _Step(step, proc, 0.0, d / "idle.log")

        ex._write = written  # type: ignore[method-assign]
        ex._start_step = idle  # type: ignore[method-assign]
    try:
        status = ex.run(Resource("ServeBenchmark", "fp", None, body, "test"))
    except KeyboardInterrupt:
        status = None
    finally:
        ex.stop_all()
    return status, tool


def test_servelab_run_fails_the_server_when_its_model_step_fails(tmp_path: Path) -> None:
    status, tool = _local_run(tmp_path, model_rc=3, steps=False)
    assert status.phase == "Failed" and tool.servers == 0  # the server never started
    assert "measure the model exited with code 3" in status.message and "cannot download" in status.message


def test_servelab_run_records_the_footprint_when_the_server_answers(tmp_path: Path) -> None:
    _local_run(tmp_path, model_rc=0, steps=True)
    stored = json.loads((tmp_path / "runs" / "servebenchmark-fp" / "status.json").read_text())["status"]
    fp = stored["footprint"]
    assert fp["modelBytes"] == 7 and fp["modelBytesSource"] == "du of x" and fp["loadSeconds"] >= 0
    assert fp["gpuMemoryBytes"] == 1 << 30 and "CUDA0 model buffer 1024.00 MiB" in fp["gpuMemorySource"]
