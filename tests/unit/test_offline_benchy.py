"""spec.offlineThroughput (`vllm bench throughput`, no server) and spec.llamaBenchy (llama-benchy against the
served API): the plan's steps, the decision core's order (offline first, before the server), the Job in
the engine's image, the workers' reading of the tools' real outputs, status, and the tables."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from servelab import report
from servelab import status as st
from servelab.api.servebenchmark import ServeBenchmarkSpec, ServeBenchmarkStatus
from servelab.api.validate import SpecError, validate_resource
from servelab.controller import render
from servelab.controller.kube import cluster_site
from servelab.controller.settings import Settings
from servelab.core import CreateServer, DeleteServer, JobState, Observed, Owner, RunStep, decide_benchmark
from servelab.engines import ServedModel
from servelab.plan import compile_benchmark
from servelab.reporting import compare
from servelab.reporting.sources import Run
from servelab.workers import benchy, offline

pytestmark = pytest.mark.unit

DATA = Path(__file__).resolve().parents[1] / "data"
NOW = datetime(2026, 1, 1, tzinfo=UTC)
OWNER = Owner("ServeBenchmark", "b", "ns", "uid-1", 1)
PVC = {"pvc": {"claimName": "models", "path": "qwen3-8b"}}
OFFLINE = {"model": PVC, "engine": {"name": "vllm", "servedModelName": "qwen3", "maxModelLen": 32768,
           "gpuMemoryUtilization": 0.8, "trustRemoteCode": True, "reasoningParser": "qwen3",
           "extraArgs": ["--swap-space", "4"]},
           "offlineThroughput": {"inputTokens": 1024, "outputTokens": 512, "numPrompts": 8},
           "load": {"parallel": [1], "number": [8]}, "resources": {"gpus": 1}}  # fmt: skip
BENCHY = {"model": {"path": "/m.gguf", "tokenizer": "/tok"}, "engine": {"name": "llamacpp"},
          "llamaBenchy": {"depths": [0, 8192, 16384, 32768], "runs": 5}}  # fmt: skip


def plan_of(spec: dict[str, object], model: ServedModel):  # type: ignore[no-untyped-def]
    s = ServeBenchmarkSpec.model_validate(spec)
    return s, compile_benchmark(
        s, model, artifacts="/a", server_url=lambda p: f"http://h:{p}", source=s.model
    )


def test_offline_step_takes_the_engine_args_that_apply_offline() -> None:
    _, plan = plan_of(OFFLINE, ServedModel("/models/models/qwen3-8b"))
    (step,) = plan.offline
    assert step.result == "offline" and step.image == "vllm-cpu" and step.gpus == 1
    assert step.model_source is not None and step.model_source.pvc is not None
    bench = step.argv[step.argv.index("--") + 1 :]
    # the served command's engine arguments; server-only ones (name, parser, host, port, extraArgs) left out
    assert bench == ["--model", "/models/models/qwen3-8b", "--max-model-len", "32768", "--gpu-memory-utilization",
                     "0.8", "--trust-remote-code", "--dataset-name", "random", "--random-input-len", "1024",
                     "--random-output-len", "512", "--num-prompts", "8", "--num-warmups", "0"]  # fmt: skip
    assert plan.server is not None and "--reasoning-parser" in plan.server.command
    assert all(s.id != "offline" for s in plan.steps)


def test_offline_runs_first_then_the_server_in_the_engines_image() -> None:
    spec = ServeBenchmarkSpec.model_validate(OFFLINE)
    site = cluster_site(Settings())
    d = decide_benchmark(OWNER, spec, Observed(generation=1, status={}, now=NOW), site)
    (action,) = d.actions
    assert isinstance(action, RunStep) and action.step.id == "offline"
    assert action.step.engine_image == "vllm/vllm-openai:v0.11.0"  # the server's image
    objs, _ = render.decision_objects(OWNER, spec, d, Settings())
    job = next(o for o in objs if o["kind"] == "Job")
    assert {o["kind"] for o in objs} == {
        "Job",
        "ServiceAccount",
        "Role",
        "RoleBinding",
    }  # its service account
    pod = job["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert c["image"] == "vllm/vllm-openai:v0.11.0"
    assert c["command"][:5] == ["python3", "-m", "servelab", "worker", "offline"]
    assert c["resources"]["limits"] == {"nvidia.com/gpu": "1"}
    assert {"name": "model", "mountPath": "/models/models", "readOnly": True} in c["volumeMounts"]
    assert {"name": "PYTHONPATH", "value": "/opt/servelab/operator"} in c["env"]
    assert pod["initContainers"][0]["command"] == ["cp", "-R", "/opt/servelab/operator", "/opt/servelab/"]
    assert pod["securityContext"]["runAsUser"] == render.SERVER_UID
    # its result published: the served part starts next (the server, or first its load client), and the
    # offline figures are in status
    status = d.status.to_wire()
    result = {"kind": "offline", "offline": {"requests": 8, "elapsedSeconds": 2.0, "requestsPerSecond": 4.0,
                                             "tokensPerSecond": 6144.0, "outputTokensPerSecond": 2048.0}}  # fmt: skip
    done = JobState(name="offline", succeeded=True, completed_at=NOW)
    obs = Observed(generation=1, status=status, now=NOW, jobs={"offline": done}, results={"offline": result})
    d2 = decide_benchmark(OWNER, spec, obs, site)
    started = [a.step.id if isinstance(a, RunStep) else type(a).__name__ for a in d2.actions]
    assert started and "offline" not in started and set(started) <= {"CreateServer", "load"}, started
    assert (
        d2.status.offline_throughput is not None
        and d2.status.offline_throughput.output_tokens_per_second == 2048
    )


def test_offline_alone_runs_no_server() -> None:
    spec = ServeBenchmarkSpec.model_validate({**OFFLINE, "load": None})
    site = cluster_site(Settings())
    result = {"kind": "offline", "offline": {"requests": 8, "elapsedSeconds": 2.0, "requestsPerSecond": 4.0,
                                             "tokensPerSecond": 6144.0}}  # fmt: skip
    done = JobState(name="offline", succeeded=True, completed_at=NOW)
    obs = Observed(generation=1, status={}, now=NOW, jobs={"offline": done}, results={"offline": result})
    d = decide_benchmark(OWNER, spec, obs, site)
    assert d.status.phase == "Succeeded" and d.status.message == "1 offline throughput"
    assert not [a for a in d.actions if isinstance(a, CreateServer | DeleteServer)]


def test_offline_only_with_vllm_and_within_the_context() -> None:
    validate_resource("ServeBenchmark", "x", OFFLINE)
    for bad, where in (({**OFFLINE, "engine": {"name": "sglang"}}, "spec.offlineThroughput: "),
                       ({**OFFLINE, "engine": {"name": "vllm", "maxModelLen": 1024}}, "spec.offlineThroughput.inputTokens: ")):  # fmt: skip
        with pytest.raises(SpecError) as err:
            validate_resource("ServeBenchmark", "x", bad)
        assert any(e.startswith(where) for e in err.value.errors), err.value.errors


def test_offline_result_from_vllms_own_output() -> None:
    d = DATA / "vllm-bench-throughput-0.32.0"
    args = ["--model", "/tiny", "--random-input-len", "16", "--random-output-len", "8", "--num-prompts", "4"]
    r = offline.parse(json.loads((d / "throughput.json").read_text()), (d / "stdout.txt").read_text(), args)
    assert (r.requests, r.prompt_tokens, r.output_tokens, r.input_len, r.output_len) == (4, 64, 32, 16, 8)
    assert r.tokens_per_second == 66.57 and r.requests_per_second == 2.7737
    assert r.output_tokens_per_second == round(32 / 1.4421229750005296, 2)  # what vLLM printed: 22.19
    status = ServeBenchmarkStatus(offline_throughput=r)
    table = report.offline_table(status)
    assert "output tok/s" in table and "22.19" in table and "16 / 8" in table


def test_worker_arguments_round_trip() -> None:
    _, plan = plan_of(OFFLINE, ServedModel("/models/models/qwen3-8b"))
    p = argparse.ArgumentParser()
    offline.add_arguments(p)
    args = p.parse_args(plan.offline[0].argv[3:])
    assert args.out == Path("/a/offline") and args.bench[args.bench.index("--") + 1 :][:2] == ["--model", "/models/models/qwen3-8b"]  # fmt: skip


def test_write_up_003_llama_benchy_command() -> None:
    _, plan = plan_of(BENCHY, ServedModel("/m.gguf", "/tok"))
    (step,) = plan.steps
    assert step.result == "benchy" and step.image == "evalscope"
    cut = step.argv.index("--")
    # llama-server closes streamed connections: llama-benchy gets a connection per request
    assert step.argv[:cut] == ["servelab", "worker", "benchy", "--timeout", "21600", "--out", "/a/llama-benchy",
                               "--connection-close"]  # fmt: skip
    url = plan.server_url
    assert plan.server is not None
    assert step.argv[cut + 1 :] == ["--base-url", f"{url}/v1", "--model", plan.server.served_model_name,
                                    "--tokenizer", "/tok", "--pp", "2048", "--tg", "32", "--depth", "0", "8192",
                                    "16384", "32768", "--runs", "5", "--concurrency", "1", "--latency-mode", "api",
                                    "--no-cache", "--exit-on-first-fail"]  # fmt: skip
    vllm = {**BENCHY, "engine": {"name": "vllm"}, "model": {"path": "/m"},
            "llamaBenchy": {"coherenceCheck": False, "prefixCaching": True, "noCache": False, "corpusPath": "/book.txt",
                            "concurrency": [1, 4], "latencyMode": "generation"}}  # fmt: skip
    _, plan = plan_of(vllm, ServedModel("/m"))
    argv = plan.steps[0].argv
    assert "--connection-close" not in argv and argv[argv.index("--corpus") + 1] == "/book.txt"
    assert "--skip-coherence" in argv and "--enable-prefix-caching" in argv and "--no-cache" not in argv
    assert argv[argv.index("--concurrency") + 1 : argv.index("--concurrency") + 3] == ["1", "4"]


def test_llama_benchy_rows_status_and_table() -> None:
    report_ = json.loads((DATA / "llama-benchy-0.3.5" / "llama-benchy.json").read_text())
    rows = benchy.parse(report_)
    assert [(r.test, r.kind, r.depth) for r in rows] == [
        ("pp32", "pp", 0), ("tg8", "tg", 0), ("pp32 @ d64", "pp", 64), ("tg8 @ d64", "tg", 64)]  # fmt: skip
    first = report_["benchmarks"][0]
    assert rows[0].ttfr_seconds is not None and rows[0].ttfr_seconds.mean == pytest.approx(
        first["ttfr"]["mean"] / 1e3
    )
    assert rows[0].tokens_per_second.mean == pytest.approx(first["pp_throughput"]["mean"])
    assert rows[1].peak_tokens_per_second is not None and rows[1].ttfr_seconds is None
    assert all(r.version == "0.3.5" and r.model == "tiny-benchy" for r in rows)
    # several concurrency levels: llama-benchy suffixes the test names; a context phase is named ctx_*
    more = {**report_, "max_concurrency": 2,
            "benchmarks": [{**first, "concurrency": 2, "context_size": 64, "is_context_prefill_phase": True}]}  # fmt: skip
    assert [r.test for r in benchy.parse(more)] == ["ctx_pp @ d64 (c2)", "ctx_tg @ d64 (c2)"]
    _, plan = plan_of(BENCHY, ServedModel("/m.gguf", "/tok"))
    status = ServeBenchmarkStatus()
    st.fold_benchmark(status, plan.steps[0], {"kind": "benchy", "benchy": [r.to_wire() for r in rows]}, 0)
    assert status.llama_benchy == rows and st.outcome(status) == "4 llama-benchy row(s)"
    lines = [
        [c.strip() for c in ln.strip("|").split("|")] for ln in report.llama_benchy_table(status).splitlines()
    ]
    assert lines[0] == ["model", "test", "t/s", "peak t/s", "ttfr (ms)", "est_ppt (ms)", "e2e_ttft (ms)"]
    ms = first["ttfr"]
    assert (
        lines[2][1] == "pp32" and lines[2][4] == f"{ms['mean']:.2f} ± {ms['std']:.2f}" and lines[2][3] == ""
    )
    # servelab report: the same table per run, and the offline figures beside the served ones
    run = Run(kind="ServeBenchmark", name="b", namespace="local", spec={}, status=status, source="test")
    (t,) = compare.benchy_tables([run])
    assert (
        t.header[2:] == ["t/s", "peak t/s", "ttfr (ms)", "est_ppt (ms)", "e2e_ttft (ms)"] and len(t.rows) == 4
    )


def test_the_depth_workers_rows_reach_status() -> None:
    """servelab worker depth publishes its rows as "points": they are spec.contextSweep's status.depth."""
    spec = ServeBenchmarkSpec.model_validate({"model": {"path": "/m"}, "engine": {"name": "vllm"},
                                              "contextSweep": {"depths": [0, 64]}})  # fmt: skip
    plan = compile_benchmark(spec, ServedModel("/m"), artifacts="/a", server_url=lambda p: f"http://h:{p}")
    status = ServeBenchmarkStatus()
    point = {"depth": 64, "promptTokens": 2048, "genTokens": 32, "ppTokensPerSecond": 10.0}
    st.fold_benchmark(status, plan.steps[0], {"kind": "depth", "points": [point]}, 0)
    assert [d.depth for d in status.depth] == [64]


def test_llama_benchy_job_reads_a_tokenizer_beside_the_model() -> None:
    """A tokenizer on the model's PVC: the step's Job mounts the PVC where the server has it (a Hub id is
    downloaded instead: the step goes online for it)."""
    spec = ServeBenchmarkSpec.model_validate({**BENCHY, "model": {**PVC, "tokenizer": "/models/models/tok"}})
    step = compile_benchmark(
        spec, ServedModel("/models/models/qwen3-8b", "/models/models/tok"), artifacts="/artifacts",
        server_url=lambda p: f"http://h:{p}", source=spec.model,
    ).steps[0]  # fmt: skip
    assert step.id == "llama-benchy" and step.env == {}
    job = render.benchmark_step_job(OWNER, spec, step, Settings())
    (c,) = job["spec"]["template"]["spec"]["containers"]
    assert {"name": "model", "mountPath": "/models/models", "readOnly": True} in c["volumeMounts"]
    assert c["command"][c["command"].index("--tokenizer") + 1] == "/models/models/tok"
