"""The operator's decisions, from observed states to actions and status (pure, no cluster)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from servelab import core
from servelab.api.quantjob import QuantJobSpec
from servelab.api.servebenchmark import ServeBenchmarkSpec
from servelab.controller import render
from servelab.controller.kube import cluster_site
from servelab.controller.settings import Settings
from servelab.core import JobState, Observed, Owner, ServerState

pytestmark = pytest.mark.unit
SETTINGS = Settings(extra_pod_labels={"servelab.dev/executor": "local"})
SITE = cluster_site(SETTINGS)
NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


@dataclass
class Rendered:
    """A decision of the core as the operator applies it: objects to create and children to delete."""

    status: Any
    create: list[dict[str, Any]]
    delete: list[tuple[str, str, str]]
    events: list[tuple[str, str, str]] = field(default_factory=list)


def decide_benchmark(owner: Owner, spec: ServeBenchmarkSpec, obs: Observed) -> Rendered:
    d = core.decide_benchmark(owner, spec, obs, SITE)
    return Rendered(d.status, *render.decision_objects(owner, spec, d, SETTINGS), d.events)


def decide_quantjob(owner: Owner, spec: QuantJobSpec, obs: Observed) -> Rendered:
    d = core.decide_quantjob(owner, spec, obs, SITE)
    return Rendered(d.status, *render.decision_objects(owner, spec, d, SETTINGS))


def sb(**over: Any) -> ServeBenchmarkSpec:
    spec: dict[str, Any] = {
        "model": {"path": "/models/tiny"},
        "engine": {"name": "llamacpp", "servedModelName": "tiny"},
        "load": {
            "parallel": [1, 4],
            "number": [4, 8],
            "minPromptLength": 16,
            "maxPromptLength": 16,
            "maxTokens": 8,
        },
        "timeouts": {"serverReadySeconds": 60, "totalSeconds": 600},
    }
    spec.update(over)
    return ServeBenchmarkSpec.model_validate(spec)


OWNER = Owner("ServeBenchmark", "bench", "ns", "uid-1", 1)


def point(c: int, valid: bool = True) -> dict[str, Any]:
    row = {"concurrency": c, "requests": c * 2, "succeeded": c * 2, "successRate": 1.0, "outputTokensPerSecond": 10.0 * c,
           "valid": valid}  # fmt: skip
    if not valid:
        row["reason"] = "mean output tokens 3 != requested 8"
    return {"points": [row]}


def sweep(*rows: dict[str, Any], partial: bool = False) -> dict[str, Any]:
    """The sweep step's result: its points so far (published after each point), `partial` until the last."""
    return {"points": [r for row in rows for r in row["points"]], **({"partial": True} if partial else {})}


# what the sweep's worker publishes once its client is ready (the server is created only then)
CLIENT_READY = {"kind": "perf", "partial": True, "clientReady": True, "points": []}


def run(spec: ServeBenchmarkSpec, **obs: Any) -> Any:
    """One decision; the sweep's client has said it is ready unless the test says what was published."""
    status = obs.pop("status", {})
    obs.setdefault("results", {"load": CLIENT_READY})
    return decide_benchmark(
        OWNER, spec, Observed(generation=1, status=status, now=obs.pop("now", NOW), **obs)
    )


def kinds(objs: list[dict[str, Any]]) -> list[str]:
    return [o["kind"] for o in objs]


def test_first_pass_starts_the_client_then_the_server_and_worker_rbac() -> None:
    # the sweep's Job starts first (with the rights to publish): no server, no GPU held while it starts
    first = run(sb(), results={})
    assert kinds(first.create) == ["ServiceAccount", "Role", "RoleBinding", "Job"]
    job = first.create[3]["spec"]["template"]["spec"]["containers"][0]["command"]
    assert job[job.index("--wait-ready") + 1] == "60" and first.status.timing is None
    assert first.status.progress.step.startswith("start the load client")
    waiting = run(sb(), results={}, jobs={"load": JobState("j", active=True)}, status=first.status.to_wire())
    assert waiting.create == []  # nothing more until the client says it is ready
    # the client ready (its worker published so): the server now, the Job not again
    d = run(sb(), jobs={"load": JobState("j", active=True)}, status=first.status.to_wire())
    assert kinds(d.create) == ["ServiceAccount", "Role", "RoleBinding", "Deployment", "Service"]
    assert d.status.timing.server_created_at
    dep = d.create[3]
    assert dep["metadata"]["name"] == "bench-g1-server"
    assert dep["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    pod = dep["spec"]["template"]["spec"]
    assert pod["containers"][0]["command"][0] == "llama-server"
    cmd = pod["containers"][0]["command"]
    assert cmd[cmd.index("--host") + 1] == "$(POD_IP)"  # each server listens on its own pod IP
    assert {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}} in pod["containers"][
        0
    ]["env"]
    assert pod["containers"][0]["startupProbe"]["httpGet"]["path"] == "/health"
    assert dep["spec"]["template"]["metadata"]["labels"]["servelab.dev/executor"] == "local"
    assert "podAntiAffinity" in pod["affinity"]  # isolation: no two benchmark servers on one node
    assert d.status.phase == "Running" and d.status.observed_generation == 1


def test_vllm_server_gets_gpus_shm_and_secret_env() -> None:
    spec = sb(engine={"name": "vllm", "tensorParallelSize": 2, "apiKeySecretRef": {"name": "k", "key": "api"}},
              hfTokenSecretRef={"name": "hf"})  # fmt: skip
    dep = run(spec).create[3]
    c = dep["spec"]["template"]["spec"]["containers"][0]
    assert c["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert {"name": "dshm", "mountPath": "/dev/shm"} in c["volumeMounts"]
    env = {e["name"]: e for e in c["env"]}
    assert env["VLLM_API_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "k", "key": "api"}
    assert env["HF_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "hf"
    assert "--tensor-parallel-size" in c["command"]


def test_the_sweep_runs_as_one_job_and_each_point_folds_as_it_is_published() -> None:
    started = {"status": run(sb()).status.to_wire()}
    ready = ServerState(exists=True, ready=True, node="gpu-h100-0", gpu_product="NVIDIA-H100-80GB-HBM3")
    d = run(sb(), server=ready, results={}, **started)
    assert kinds(d.create) == ["ServiceAccount", "Role", "RoleBinding", "Job"]  # its rights to publish, too
    job = d.create[3]
    assert job["metadata"]["name"] == "bench-g1-load"
    cmd = job["spec"]["template"]["spec"]["containers"][0]["command"]
    assert cmd[:3] == ["servelab", "worker", "perf"] and "http://bench-g1-server.ns.svc:8080/v1" in cmd
    # every point of the sweep in the one Job (one client process), resumable from its published points
    assert cmd[cmd.index("--parallel") + 1 : cmd.index("--parallel") + 3] == ["1", "4"] and "--resume" in cmd
    assert "nvidia.com/gpu" not in job["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert d.status.provenance.gpu_product == "NVIDIA-H100-80GB-HBM3"
    # the first point published while the Job runs: its row is in the table, nothing else is created
    jobs = {"load": JobState("bench-g1-load", active=True)}
    d = run(sb(), server=ready, jobs=jobs, results={"load": sweep(point(1), partial=True)}, **started)
    assert d.create == [] and [r.concurrency for r in d.status.results] == [1]
    assert d.status.summary.points == "1/2" and d.status.progress.step.startswith("load 2/2 (parallel 4")
    measured = [m for _, reason, m in d.events if reason == "PointMeasured"]
    assert measured == ["load 1/2: concurrency 1, 2 requests, 10.0 out tok/s"]  # said once, as it comes
    again = run(sb(), server=ready, jobs=jobs, results={"load": sweep(point(1), partial=True)},
                status=d.status.to_wire())  # fmt: skip
    assert not [r for _, r, _ in again.events if r == "PointMeasured"]
    # the Job done, its last result (not partial) published: the run ends with both rows
    jobs["load"] = JobState("bench-g1-load", succeeded=True)
    d = run(sb(), server=ready, jobs=jobs, results={"load": sweep(point(1), point(4))}, **started)
    assert d.status.phase == "Succeeded" and len(d.status.results) == 2
    assert ("apps/v1", "Deployment", "bench-g1-server") in d.delete  # serverPolicy Delete


def test_a_finished_sweep_waits_for_its_last_result_not_a_partial_one() -> None:
    """The Job may be seen Complete before its final result: a partial one does not end the run, and one
    that never comes fails it (as a step that published nothing)."""
    started = {"status": run(sb()).status.to_wire()}
    ready = ServerState(exists=True, ready=True)
    partial = {"load": sweep(point(1), partial=True)}
    fresh = {"load": JobState("j", succeeded=True, completed_at=NOW - timedelta(seconds=5))}
    d = run(sb(), server=ready, jobs=fresh, results=partial, **started)
    assert d.status.phase == "Running" and d.create == [] and len(d.status.results) == 1
    stale = {"load": JobState("j", succeeded=True, completed_at=NOW - timedelta(seconds=31))}
    d = run(sb(), server=ready, jobs=stale, results=partial, **started)
    assert d.status.phase == "Failed" and "without publishing a result" in (d.status.message or "")
    assert len(d.status.results) == 1  # the point measured stays


def test_a_sweep_job_gone_with_points_published_runs_again_and_resumes() -> None:
    """Its Job deleted (or, locally, the run interrupted) after some points: the same Job is created
    again; the worker keeps the published points (--resume) and measures from the first without one."""
    started = {"status": run(sb()).status.to_wire()}
    d = run(sb(), server=ServerState(exists=True, ready=True), results={"load": sweep(point(1), partial=True)},
            **started)  # fmt: skip
    assert [o["metadata"]["name"] for o in d.create if o["kind"] == "Job"] == ["bench-g1-load"]
    assert [r.concurrency for r in d.status.results] == [1]


def test_invalid_point_fails_and_keeps_data() -> None:
    started = {"status": run(sb()).status.to_wire()}
    ready = ServerState(exists=True, ready=True)
    jobs = {"load": JobState("j", failed=True, message="BackoffLimitExceeded")}
    d = run(
        sb(), server=ready, jobs=jobs, results={"load": sweep(point(1), point(4, valid=False))}, **started
    )
    assert d.status.phase == "Failed"
    failed = next(c for c in d.status.conditions if c.type == "Failed")
    assert (
        failed.status == "True"
        and failed.reason == "InvalidResult"
        and "mean output tokens" in failed.message
        and failed.message.startswith("load 2/2 (parallel 4, number 8)")  # the point that was invalid
    )
    assert len(d.status.results) == 2  # both rows kept, the invalid one marked


def test_server_never_ready_times_out_and_is_torn_down() -> None:
    started = run(sb()).status.to_wire()
    later = NOW + timedelta(seconds=61)
    started["startTime"] = NOW.strftime("%Y-%m-%dT%H:%M:%SZ")
    d = run(sb(), server=ServerState(exists=True), status=started, now=later)
    failed = next(c for c in d.status.conditions if c.type == "Failed")
    assert failed.reason == "ServerNotReady" and ("apps/v1", "Deployment", "bench-g1-server") in d.delete


def test_unschedulable_stays_pending_with_the_reason() -> None:
    started = run(sb()).status.to_wire()
    msg = "Unschedulable: 0/3 nodes are available: 3 Insufficient nvidia.com/gpu."
    d = run(sb(), server=ServerState(exists=True, unschedulable=msg), status=started)
    assert d.status.phase == "Pending"
    ready = next(c for c in d.status.conditions if c.type == "ServerReady")
    assert ready.reason == "Unschedulable" and "Insufficient nvidia.com/gpu" in ready.message
    reconciling = next(c for c in d.status.conditions if c.type == "Reconciling")
    assert reconciling.status == "True" and reconciling.reason == "Unschedulable"


def test_quantjob_reference_waits_then_resolves_or_fails() -> None:
    spec = sb(model=None, quantJobRef={"name": "qj", "variant": "IQ4_XS"})
    d = run(spec)
    assert d.status.phase == "Pending" and d.create == []  # no QuantJob yet: polled until the grace ends
    qj_spec = {"model": {"path": "/models/hf"}, "method": "gguf", "gguf": {"variants": [{"type": "IQ4_XS"}]},
               "calibration": {"source": {"path": "/c.txt"}}, "output": {"pvc": {"claimName": "models", "path": "out"}}}  # fmt: skip
    running = {"spec": qj_spec, "status": {"phase": "Running"}}
    d = run(spec, quantjob=running, status=d.status.to_wire())
    assert d.status.phase == "Waiting" and "Running" in (d.status.progress.step or "")
    failed = {"spec": qj_spec, "status": {"phase": "Failed", "message": "QuantizeFailed: boom"}}
    d2 = run(spec, quantjob=failed, status=d.status.to_wire())
    assert d2.status.phase == "Failed" and "boom" in (d2.status.message or "")
    done = {"spec": qj_spec, "status": {"phase": "Succeeded", "variants": [
        {"name": "IQ4_XS", "path": "/models/models/out/model-IQ4_XS.gguf"}]}}  # fmt: skip
    d3 = run(spec, quantjob=done, status=d.status.to_wire())
    dep = next(o for o in d3.create if o["kind"] == "Deployment")
    c = dep["spec"]["template"]["spec"]["containers"][0]
    assert c["command"][:3] == ["llama-server", "-m", "/models/models/out/model-IQ4_XS.gguf"]
    assert {"name": "model", "mountPath": "/models/models", "readOnly": True} in c["volumeMounts"]
    assert d3.status.quantization == "IQ4_XS"


def test_serving_a_quantjobs_base_model_mounts_where_that_model_is() -> None:
    """The unquantized model of an llm-compressor QuantJob lives where the QuantJob read it (here its own
    PVC), not on the output PVC: the server mounts that claim."""
    spec = sb(model=None, quantJobRef={"name": "qj", "variant": "BASE"}, engine={"name": "vllm"})
    qj_spec = {"model": {"pvc": {"claimName": "hub", "path": "qwen3"}}, "method": "fp8-dynamic",
               "output": {"pvc": {"claimName": "models", "path": "fp8"}}}  # fmt: skip
    done = {"spec": qj_spec, "status": {"phase": "Succeeded", "base": {"name": "BASE", "path": "/models/hub/qwen3"},
                                        "variants": [{"name": "FP8-DYNAMIC", "path": "/models/models/fp8"}]}}  # fmt: skip
    d = run(spec, quantjob=done, status=run(spec).status.to_wire())
    c = next(o for o in d.create if o["kind"] == "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert c["command"][:3] == ["vllm", "serve", "/models/hub/qwen3"]
    assert {"name": "model", "mountPath": "/models/hub", "readOnly": True} in c["volumeMounts"]
    assert all(m["mountPath"] != "/models/models" for m in c["volumeMounts"])


def test_missing_quantjob_fails_after_grace() -> None:
    spec = sb(model=None, quantJobRef={"name": "nope"})
    st0 = run(spec).status.to_wire()
    st0["startTime"] = NOW.strftime("%Y-%m-%dT%H:%M:%SZ")
    d = run(spec, status=st0, now=NOW + timedelta(seconds=61))
    assert d.status.phase == "Failed" and "QuantJob nope does not exist" in (d.status.message or "")


def test_new_generation_resets_and_deletes_old_children() -> None:
    finished = run(sb()).status
    finished.phase = "Succeeded"
    stale = [("batch/v1", "Job", "bench-g1-load-0")]
    owner2 = Owner("ServeBenchmark", "bench", "ns", "uid-1", 2)
    obs = Observed(generation=2, status=finished.to_wire(), now=NOW, stale=stale)
    d = decide_benchmark(owner2, sb(), obs)
    assert d.status.observed_generation == 2 and d.status.results == []
    assert stale[0] in d.delete and any(o["metadata"]["name"] == "bench-g2-load" for o in d.create)


def test_quantjob_job_and_outcomes() -> None:
    spec = QuantJobSpec.model_validate({
        "model": {"huggingFace": {"id": "Qwen/Qwen3-4B-Instruct-2507"}}, "method": "gptq",
        "calibration": {"source": {"path": "/data/c.jsonl"}}, "output": {"pvc": {"claimName": "models", "path": "w4"}},
        "resources": {"gpus": 1}, "placement": {"nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-L40S"}},
        "hfTokenSecretRef": {"name": "hf"}})  # fmt: skip
    owner = Owner("QuantJob", "q", "ns", "uid-q", 1)
    d = decide_quantjob(owner, spec, Observed(generation=1, status={}, now=NOW))
    job = next(o for o in d.create if o["kind"] == "Job")
    pod = job["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert (
        c["command"][:3] == ["servelab", "worker", "quantize"]
        and c["resources"]["limits"]["nvidia.com/gpu"] == "1"
    )
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-L40S"}
    assert {"name": "output", "mountPath": "/models/models"} in c["volumeMounts"]
    assert any(e["name"] == "HF_TOKEN" and "valueFrom" in e for e in c["env"])
    assert "hf_" not in str(job)  # the token itself never appears
    st1 = d.status.to_wire()
    result = {
        "variants": [
            {"name": "W4A16-G128", "path": "/models/models/w4", "sizeBytes": 1000, "durationSeconds": 3}
        ]
    }
    done = decide_quantjob(owner, spec, Observed(generation=1, status=st1, now=NOW,
                           jobs={"quantize": JobState("q-q1-quantize", succeeded=True)}, results={"quantize": result}))  # fmt: skip
    assert done.status.phase == "Succeeded" and done.status.variants[0].size_bytes == 1000
    crash = decide_quantjob(owner, spec, Observed(generation=1, status=st1, now=NOW,
                            jobs={"quantize": JobState("x", failed=True)}, results={"quantize": {"reason": "ValueError: bad group"}}))  # fmt: skip
    assert crash.status.phase == "Failed" and "ValueError: bad group" in (crash.status.message or "")


def test_load_generator_crash_is_load_failed_not_invalid_result() -> None:
    started = {"status": run(sb()).status.to_wire()}
    crashed = {"points": [{"concurrency": 1, "requests": 4, "succeeded": 0, "failed": 0, "successRate": 0.0,
                           "valid": False, "reason": "evalscope produced no results (rc=1)"}]}  # fmt: skip
    jobs = {"load": JobState("j0", failed=True, message="BackoffLimitExceeded")}
    d = run(
        sb(), server=ServerState(exists=True, ready=True), jobs=jobs, results={"load": crashed}, **started
    )
    failed = next(c for c in d.status.conditions if c.type == "Failed")
    assert failed.reason == "LoadFailed" and "evalscope produced no results" in failed.message


def test_quantjob_downloads_into_a_cache_volume_with_the_token_from_its_secret() -> None:
    spec = QuantJobSpec.model_validate({
        "model": {"huggingFace": {"id": "Qwen/Qwen3-4B-Instruct-2507"}}, "method": "fp8-dynamic",
        "output": {"path": "/out"}, "hfTokenSecretRef": {"name": "hf-token", "key": "token"}})  # fmt: skip
    d = decide_quantjob(
        Owner("QuantJob", "q", "ns", "u", 1), spec, Observed(generation=1, status={}, now=NOW)
    )
    job = next(o for o in d.create if o["kind"] == "Job")
    pod = job["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert {"name": "hf-cache", "mountPath": "/cache/huggingface"} in c["volumeMounts"]
    assert {"name": "hf-cache", "emptyDir": {}} in pod["volumes"]
    token = next(e for e in c["env"] if e["name"] == "HF_TOKEN")
    assert token == {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf-token", "key": "token"}}}
    # the worker image is offline by default: the Job lets it download into the cache volume
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["HF_HOME"] == "/cache/huggingface" and env["HF_HUB_OFFLINE"] == "0"
    assert c["command"][c["command"].index("--hf-repo") + 1] == "Qwen/Qwen3-4B-Instruct-2507"


def test_a_job_that_succeeds_without_publishing_fails_the_run() -> None:
    started = {"status": run(sb()).status.to_wire()}
    ready = ServerState(exists=True, ready=True)
    fresh = {"load": JobState("j0", succeeded=True, completed_at=NOW - timedelta(seconds=5))}
    d = run(sb(), server=ready, jobs=fresh, **started)
    assert d.status.phase == "Running"  # the result may still be on its way
    stale = {"load": JobState("j0", succeeded=True, completed_at=NOW - timedelta(seconds=31))}
    d = run(sb(), server=ready, jobs=stale, **started)
    failed = next(c for c in d.status.conditions if c.type == "Failed")
    assert failed.reason == "LoadFailed" and "without publishing a result" in failed.message


def _scoring_spec(**evaluation: Any) -> QuantJobSpec:
    return QuantJobSpec.model_validate({
        "model": {"huggingFace": {"id": "Qwen/Qwen3-8B"}}, "method": "gptq",
        "calibration": {"source": {"path": "/data/c.jsonl"}}, "output": {"pvc": {"claimName": "models", "path": "w4"}},
        "placement": {"nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-L40S"}},
        "evaluation": {"evalscope": {"datasets": [{"name": "math_500", "localPath": "/data/math"}], "limit": 50},
                       **evaluation},
    })  # fmt: skip


QUANTIZED = {
    "base": {"name": "BASE", "path": "Qwen/Qwen3-8B", "sizeBytes": 16_000},
    "variants": [
        {"name": "W4A16-G128", "path": "/models/models/w4", "sizeBytes": 5_000, "durationSeconds": 3}
    ],
}


def test_quantjob_scores_each_output_with_a_child_servebenchmark_then_succeeds() -> None:
    spec = _scoring_spec(engine={"name": "vllm", "maxModelLen": 4096})
    owner = Owner("QuantJob", "q", "ns", "uid-q", 1)
    quantized = {
        "jobs": {"quantize": JobState("q-q1-quantize", succeeded=True)},
        "results": {"quantize": QUANTIZED},
    }
    start = decide_quantjob(owner, spec, Observed(generation=1, status={}, now=NOW)).status.to_wire()

    # quantized: the base model's scoring run is created first, owned by the QuantJob, not yet Succeeded
    d = decide_quantjob(owner, spec, Observed(generation=1, status=start, now=NOW, **quantized))
    assert d.status.phase == "Running" and kinds(d.create) == ["ServeBenchmark"]
    base = d.create[0]
    assert base["metadata"]["name"] == "q-q1-score-base"
    assert base["metadata"]["ownerReferences"][0]["uid"] == "uid-q"
    assert base["spec"]["model"]["huggingFace"]["id"] == "Qwen/Qwen3-8B"  # the source model, as it came
    assert base["spec"]["engine"]["name"] == "vllm" and base["spec"]["engine"]["maxModelLen"] == 4096
    assert base["spec"]["evaluations"][0]["datasets"][0]["name"] == "math_500"
    assert base["spec"]["placement"]["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-L40S"}
    ServeBenchmarkSpec.model_validate(base["spec"])  # a valid spec for the apiserver's schema too

    score = {"dataset": "math_500", "metric": "acc", "num": 50}
    running = {"status": {"phase": "Running", "message": "eval 1"}}
    done_base = {"status": {"phase": "Succeeded", "scores": [{**score, "score": 0.62}]}}
    s1 = d.status.to_wire()
    d = decide_quantjob(owner, spec, Observed(generation=1, status=s1, now=NOW, **quantized,
                        benchmarks={"q-q1-score-base": running}))  # fmt: skip
    assert d.create == [] and d.status.phase == "Running" and "score BASE" in (d.status.progress.step or "")

    # the base is scored: the quantized output is next, served from its place on the output PVC
    d = decide_quantjob(owner, spec, Observed(generation=1, status=d.status.to_wire(), now=NOW, **quantized,
                        benchmarks={"q-q1-score-base": done_base}))  # fmt: skip
    child = d.create[0]
    assert child["metadata"]["name"] == "q-q1-score-w4a16-g128"
    assert child["spec"]["model"]["pvc"] == {"claimName": "models", "path": "w4"}
    assert d.status.base is not None and d.status.base.scores[0].score == 0.62

    done_q = {"status": {"phase": "Succeeded", "scores": [{**score, "score": 0.58}]}}
    d = decide_quantjob(owner, spec, Observed(generation=1, status=d.status.to_wire(), now=NOW, **quantized,
                        benchmarks={"q-q1-score-base": done_base, "q-q1-score-w4a16-g128": done_q}))  # fmt: skip
    assert d.status.phase == "Succeeded" and d.create == []
    assert [s.score for s in d.status.variants[0].scores] == [0.58]
    assert (
        "math_500 acc 0.580" in (d.status.summary.headline or "")
        and "base math_500 acc 0.620" in d.status.summary.headline
    )


def test_quantjob_scoring_failure_is_eval_failed_and_keeps_the_quantization() -> None:
    spec = _scoring_spec(includeBase=False)
    owner = Owner("QuantJob", "q", "ns", "uid-q", 1)
    start = decide_quantjob(owner, spec, Observed(generation=1, status={}, now=NOW)).status.to_wire()
    failed = {"status": {"phase": "Failed", "message": "ServerNotReady: not ready within 1800s"}}
    d = decide_quantjob(owner, spec, Observed(generation=1, status=start, now=NOW,
                        jobs={"quantize": JobState("j", succeeded=True)}, results={"quantize": QUANTIZED},
                        benchmarks={"q-q1-score-w4a16-g128": failed}))  # fmt: skip
    cond = next(c for c in d.status.conditions if c.type == "Failed")
    assert d.status.phase == "Failed" and cond.reason == "EvalFailed" and "ServerNotReady" in cond.message
    assert d.status.variants[0].size_bytes == 5_000  # what was measured before stays


def test_quantjob_evaluation_engine_needs_evalscope() -> None:
    from servelab.api.validate import SpecError, validate_resource

    spec = _scoring_spec().to_wire()
    del spec["evaluation"]["evalscope"]
    spec["evaluation"]["engine"] = {"name": "vllm"}
    with pytest.raises(
        SpecError, match=r"spec\.evaluation\.engine is only used with spec\.evaluation\.evalscope"
    ):
        validate_resource("QuantJob", "q", spec)


def test_duty_cycle_is_measured_load_over_the_time_the_server_was_held() -> None:
    created = run(sb()).status.to_wire()
    assert created["timing"]["serverCreatedAt"] == "2026-11-22T12:00:00Z"
    ready = ServerState(exists=True, ready=True)
    at = NOW + timedelta(seconds=20)
    s1 = run(sb(), server=ready, status=created, now=at).status.to_wire()
    assert s1["timing"]["serverReadyAt"] == "2026-11-22T12:00:20Z"
    rows = {"load": {"points": [{**point(1)["points"][0], "durationSeconds": 30.0},
                                {**point(4)["points"][0], "durationSeconds": 30.0}]}}  # fmt: skip
    jobs = {k: JobState(k, succeeded=True) for k in rows}
    done = run(sb(), server=ready, jobs=jobs, results=rows, status=s1, now=NOW + timedelta(seconds=100))
    t = done.status.timing
    assert done.status.phase == "Succeeded" and t.server_released_at == "2026-11-22T12:01:40Z"
    assert (t.server_held_seconds, t.measured_seconds, t.duty_cycle) == (100.0, 60.0, 0.6)


def test_an_invalid_point_is_not_measured_load() -> None:
    """A point whose requests all timed out held the server without measuring: not counted as load."""
    created = run(sb()).status.to_wire()
    ready = ServerState(exists=True, ready=True)
    s1 = run(sb(), server=ready, status=created, now=NOW + timedelta(seconds=20)).status.to_wire()
    rows = {"load": {"points": [{**point(1)["points"][0], "durationSeconds": 30.0},
                                {**point(4, valid=False)["points"][0], "durationSeconds": 50.0}]}}  # fmt: skip
    jobs = {k: JobState(k, succeeded=True) for k in rows}
    done = run(sb(), server=ready, jobs=jobs, results=rows, status=s1, now=NOW + timedelta(seconds=100))
    t = done.status.timing
    assert (t.server_held_seconds, t.measured_seconds, t.duty_cycle) == (100.0, 30.0, 0.3)


def test_a_client_that_cannot_start_fails_the_run_with_no_server() -> None:
    started = run(sb(), results={}).status.to_wire()
    d = run(sb(), results={}, jobs={"load": JobState("j", failed=True, message="BackoffLimitExceeded")},
            status=started)  # fmt: skip
    assert d.status.phase == "Failed" and "BackoffLimitExceeded" in (d.status.message or "")
    assert not [o for o in d.create if o["kind"] == "Deployment"]
    started = run(sb(), results={}).status.to_wire()
    started["startTime"] = NOW.strftime("%Y-%m-%dT%H:%M:%SZ")
    late = run(sb(), results={}, jobs={"load": JobState("j", active=True)}, status=started,
               now=NOW + timedelta(seconds=61))  # fmt: skip
    assert late.status.phase == "Failed" and "did not start within 60s" in (late.status.message or "")


def test_a_result_that_does_not_match_the_schema_fails_the_run_instead_of_the_reconcile() -> None:
    started = {"status": run(sb()).status.to_wire()}
    jobs = {"load": JobState("j0", succeeded=True)}
    bad = {"points": [{**point(1)["points"][0], "secretField": "x"}]}
    d = run(sb(), server=ServerState(exists=True, ready=True), jobs=jobs, results={"load": bad}, **started)
    failed = next(c for c in d.status.conditions if c.type == "Failed")
    assert d.status.phase == "Failed" and failed.reason == "InvalidResult"
    assert "does not match servelab's result schema" in failed.message and "secretField" in failed.message
    assert d.status.results == []  # nothing of it reached status


def test_quantjob_fields_reach_the_job_and_the_worker() -> None:
    """resources.cpu/memory, backoffLimit, per-image overrides and pull policy, gguf outtype/keepBase/
    extraArgs, GPU offload of llama-imatrix/-perplexity, perplexity over the whole text by default."""
    spec = QuantJobSpec.model_validate({
        "model": {"path": "/models/hf"}, "method": "gguf", "output": {"path": "/out"},
        "gguf": {"variants": [{"type": "IQ4_XS"}], "outtype": "bf16", "keepBase": False,
                 "extraArgs": ["--pure"]},
        "calibration": {"source": {"path": "/c.txt"}},
        "evaluation": {"perplexity": {"text": {"path": "/wiki.txt"}, "contextSize": 256}},
        "resources": {"gpus": 1, "cpu": "8", "memory": "64Gi"}, "backoffLimit": 2,
        "images": {"llamacpp": "registry.local/llama:1", "pullPolicy": "Always"}})  # fmt: skip
    d = decide_quantjob(
        Owner("QuantJob", "q", "ns", "u", 1), spec, Observed(generation=1, status={}, now=NOW)
    )
    job = next(o for o in d.create if o["kind"] == "Job")
    c = job["spec"]["template"]["spec"]["containers"][0]
    assert job["spec"]["backoffLimit"] == 2
    assert c["resources"]["limits"] == {"cpu": "8", "memory": "64Gi", "nvidia.com/gpu": "1"}
    assert c["image"] == "registry.local/llama:1" and c["imagePullPolicy"] == "Always"
    argv = c["command"]
    assert argv[argv.index("--outtype") + 1] == "bf16" and "--drop-base" in argv
    assert "--quantize-arg=--pure" in argv and argv[argv.index("--gpu-layers") + 1] == "999"
    assert "--chunks" not in argv  # spec.evaluation.perplexity.chunks unset: the whole text
    cpu = spec.model_copy(update={"resources": spec.resources.model_copy(update={"gpus": 0})})
    d = decide_quantjob(Owner("QuantJob", "q", "ns", "u", 1), cpu, Observed(generation=1, status={}, now=NOW))
    argv = next(o for o in d.create if o["kind"] == "Job")["spec"]["template"]["spec"]["containers"][0][
        "command"
    ]
    assert "--gpu-layers" not in argv


def test_calibration_column_and_chat_template_reach_the_quantize_worker() -> None:
    spec = QuantJobSpec.model_validate({
        "model": {"path": "/models/hf"}, "method": "gptq", "output": {"path": "/out"},
        "calibration": {"source": {"huggingFace": {"id": "org/cal", "column": "conversation"}},
                        "applyChatTemplate": False}})  # fmt: skip
    d = decide_quantjob(
        Owner("QuantJob", "q", "ns", "u", 1), spec, Observed(generation=1, status={}, now=NOW)
    )
    argv = next(o for o in d.create if o["kind"] == "Job")["spec"]["template"]["spec"]["containers"][0][
        "command"
    ]
    assert argv[argv.index("--text-field") + 1] == "conversation" and "--no-chat-template" in argv


def test_benchmark_worker_images_follow_spec_images() -> None:
    d = run(sb(images={"evalscope": "registry.local/evalscope:2", "pullPolicy": "Never"}))
    job = next(o for o in d.create if o["kind"] == "Job")["spec"]["template"]["spec"]["containers"][0]
    dep = next(o for o in d.create if o["kind"] == "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert job["image"] == "registry.local/evalscope:2" and job["imagePullPolicy"] == "Never"
    assert dep["imagePullPolicy"] == "Never"
