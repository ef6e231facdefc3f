"""Plans compiled from the seeds' manifests, and the status bookkeeping both executors share."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from servelab import status as st
from servelab.api.quantjob import QuantJobSpec
from servelab.api.results import LoadPointResult
from servelab.api.servebenchmark import ServeBenchmarkSpec, ServeBenchmarkStatus
from servelab.engines import ServedModel
from servelab.manifests import load_manifests
from servelab.paths import repo_path
from servelab.plan import compile_benchmark, compile_quantjob

pytestmark = pytest.mark.unit


def example(name: str) -> ServeBenchmarkSpec | QuantJobSpec:
    res = next(r for r in load_manifests(repo_path("examples")) if r.name == name)
    spec = res.spec()
    assert isinstance(spec, ServeBenchmarkSpec | QuantJobSpec)
    return spec


def opt(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def opts(argv: list[str], name: str) -> list[str]:
    """Every value of a flag that takes several (up to the next flag)."""
    values = argv[argv.index(name) + 1 :]
    return values[: next((i for i, v in enumerate(values) if v.startswith("--")), len(values))]


def test_seed_000_sweep_plan() -> None:
    spec = example("qwen3-4b-bf16-vllm")
    assert isinstance(spec, ServeBenchmarkSpec)
    plan = compile_benchmark(
        spec,
        ServedModel("Qwen/Qwen3-4B-Instruct-2507"),
        artifacts="/out",
        server_url=lambda _: "http://sb-server:8080",
    )
    loads = [s for s in plan.steps if s.result == "points"]
    # the whole sweep is one step: one client process for every point, resumable point by point
    (sweep,) = loads
    assert sweep.id == "load" and plan.steps[0] is sweep and "--resume" in sweep.argv
    assert opts(sweep.argv, "--parallel") == ["1", "10", "20", "50", "100"]
    assert opts(sweep.argv, "--number") == ["10", "30", "50", "100", "200"]
    # the worker advances the offset by each point's requests (fresh prompts, like evalscope's own sweep)
    assert opt(sweep.argv, "--dataset-offset") == "0"
    # a time limit per point, and the step's: every point's plus one for the start and the warm-up
    assert opt(sweep.argv, "--point-timeout") == str(spec.load.point_timeout_seconds)
    assert sweep.timeout_seconds == spec.load.point_timeout_seconds * 6
    # it starts with the server (its client's start overlaps the weights' loading)
    assert "--wait-ready" in sweep.argv
    for step in loads:
        a = step.argv
        assert a[:3] == ["servelab", "worker", "perf"] and step.image == "evalscope"
        assert opt(a, "--url") == "http://sb-server:8080/v1"
        assert opt(a, "--model") == "Qwen3-4B-Instruct-2507"
        assert opt(a, "--tokenizer-path") == "Qwen/Qwen3-4B-Instruct-2507"
        assert (opt(a, "--min-prompt-tokens"), opt(a, "--prompt-tokens"), opt(a, "--prefix-length")) == (
            "1024", "1024", "0")  # fmt: skip
        assert (opt(a, "--max-tokens"), opt(a, "--min-tokens")) == ("1024", "1024")
        assert "--no-ignore-eos" not in a and "Connection=close" not in a
        assert opt(a, "--engine") == "vllm"
        assert opt(a, "--metrics-url") == "http://sb-server:8080/metrics"
        assert re.fullmatch(r"[a-z0-9-]+", step.id)
    evals = [s for s in plan.steps if s.result == "scores"]
    assert len(evals) == 1 and opt(evals[0].argv, "--batch-size") == "100"
    a = evals[0].argv
    assert a[a.index("--datasets") + 1 : a.index("--datasets") + 4] == ["math_500", "ifeval", "iquiz"]
    assert opt(a, "--api-url") == "http://sb-server:8080/v1"
    assert plan.points == 5


def test_llamacpp_plan_warms_up_and_closes_connections() -> None:
    spec = example("qwen3-4b-iq4xs-llamacpp")
    assert isinstance(spec, ServeBenchmarkSpec)
    plan = compile_benchmark(
        spec,
        ServedModel("/m/iq4.gguf", "Qwen/Qwen3-4B-Instruct-2507"),
        artifacts="/o",
        server_url=lambda _: "http://s:8080",
    )
    # warmed up once per sweep, by the sweep's own client process before its first point: no step of its own
    assert [s.id for s in plan.steps if s.result in ("points", "warmup")] == ["load"]
    assert opt(plan.steps[0].argv, "--warmup-requests") == "2" and "--warmup-only" not in plan.steps[0].argv
    assert all(opt(s.argv, "--generator") == "evalscope" and s.image == "evalscope" for s in plan.steps)
    assert all(
        opt(s.argv, "--header") == "Connection=close" for s in plan.steps if s.result in ("points", "warmup")
    )
    assert plan.server.command[:3] == ["llama-server", "-m", "/m/iq4.gguf"]


def test_write_up_003_depth_sweep_is_llama_benchy() -> None:
    spec = example("qwen3.5-4b-vllm-mtp")
    assert isinstance(spec, ServeBenchmarkSpec)
    plan = compile_benchmark(
        spec, ServedModel("Qwen/Qwen3.5-4B"), artifacts="/o", server_url=lambda _: "http://s:8000"
    )
    (step,) = plan.steps
    assert step.result == "benchy" and step.image == "evalscope"
    a = step.argv
    assert a[a.index("--depth") + 1 : a.index("--depth") + 5] == ["0", "8192", "16384", "32768"]
    assert (opt(a, "--base-url"), opt(a, "--pp"), opt(a, "--tg"), opt(a, "--runs")) == (
        "http://s:8000/v1",
        "2048",
        "32",
        "5",
    )
    assert "--no-cache" in a and opt(a, "--tokenizer") == "Qwen/Qwen3.5-4B"
    assert step.env == {"HF_HUB_OFFLINE": "0", "TRANSFORMERS_OFFLINE": "0"}  # a Hub tokenizer is downloaded


def test_context_sweep_plan() -> None:
    spec = ServeBenchmarkSpec.model_validate({
        "model": {"huggingFace": {"id": "Qwen/Qwen3.5-4B"}}, "engine": {"name": "vllm"},
        "contextSweep": {"depths": [0, 8192, 16384, 32768], "promptTokens": 2048, "genTokens": 32, "runs": 5}})  # fmt: skip
    plan = compile_benchmark(
        spec, ServedModel("Qwen/Qwen3.5-4B"), artifacts="/o", server_url=lambda _: "http://s:8000"
    )
    (step,) = plan.steps
    assert step.result == "depth"
    a = step.argv
    assert a[a.index("--depths") + 1 : a.index("--depths") + 5] == ["0", "8192", "16384", "32768"]
    assert (opt(a, "--prompt-tokens"), opt(a, "--gen-tokens"), opt(a, "--repetitions")) == ("2048", "32", "5")


def test_gguf_quantjob_plan() -> None:
    spec = example("qwen3-4b-gguf")
    assert isinstance(spec, QuantJobSpec)
    plan = compile_quantjob(spec, "/models/qwen", "/models/out", "/art")
    (step,) = plan.steps
    a = step.argv
    assert a[:3] == ["servelab", "worker", "gguf"] and step.image == "llamacpp" and step.gpus == 1
    assert a[a.index("--types") + 1 : a.index("--types") + 3] == ["IQ4_XS+imatrix", "Q4_K_M"]
    # a Hub model: the worker downloads it (no --hf-dir)
    assert "--leave-output-tensor" in a and opt(a, "--hf-repo") == "Qwen/Qwen3-4B-Instruct-2507"
    assert "--hf-dir" not in a and "--revision" not in a
    assert opt(a, "--imatrix-text") == "/data/calibration-data/calibration.txt"
    assert opt(a, "--eval-text") == "/data/eval-data/wikitext-2-raw/wiki.test.raw" and "--no-kld" in a


def test_gptq_quantjob_plan() -> None:
    spec = example("qwen3-4b-w4a16-g128")
    assert isinstance(spec, QuantJobSpec)
    (step,) = compile_quantjob(spec, "Qwen/Qwen3-4B-Instruct-2507", "/out", "/art").steps
    a = step.argv
    assert a[:3] == ["servelab", "worker", "quantize"] and step.image == "llmcompressor"
    assert (opt(a, "--method"), opt(a, "--scheme"), opt(a, "--group-size"), opt(a, "--actorder")) == (
        "gptq", "W4A16", "128", "static")  # fmt: skip
    assert opt(a, "--ignore") == "lm_head" and opt(a, "--num-samples") == "512"


def point(c: int, tps: float, valid: bool = True) -> LoadPointResult:
    return LoadPointResult(concurrency=c, requests=c * 2, succeeded=c * 2, success_rate=1.0,
                           output_tokens_per_second=tps, avg_ttft_seconds=0.1 * c, valid=valid)  # fmt: skip


def test_conditions_and_folding_keep_results_on_failure() -> None:
    status = st.start(ServeBenchmarkStatus(), 3, 5)
    first = st.condition(status, st.SUCCEEDED)
    assert first is not None and first.status == "False"
    st.fold_points(status, [point(1, 100.0)], 3)
    st.fold_points(status, [point(2, 180.0)], 3)
    assert [r.concurrency for r in status.results] == [1, 2]
    assert status.summary and status.summary.max_output_tokens_per_second == 180.0
    assert status.summary.points == "2/3" and status.summary.single_stream_tokens_per_second == 100.0
    st.fold_points(status, [point(4, 999.0, valid=False)], 3)
    assert status.summary.max_output_tokens_per_second == 180.0  # invalid points never headline
    st.fail(status, "InvalidResult", "load 3/3: success rate 0.5 < 1.0", 3)
    failed = st.condition(status, st.FAILED)
    assert status.phase == "Failed" and failed is not None and failed.reason == "InvalidResult"
    assert len(status.results) == 3  # nothing collected is dropped
    with pytest.raises(ValueError):
        st.fail(status, "Oops", "not a known reason")


def test_transition_time_changes_only_on_flip() -> None:
    status = ServeBenchmarkStatus()
    st.set_condition(status, st.READY, False, "Starting")
    c1 = st.condition(status, st.READY)
    assert c1 is not None
    c1.last_transition_time = "2020-01-01T00:00:00Z"
    st.set_condition(status, st.READY, False, "StillStarting", "x")
    c2 = st.condition(status, st.READY)
    assert (
        c2 is not None and c2.last_transition_time == "2020-01-01T00:00:00Z" and c2.reason == "StillStarting"
    )
    st.set_condition(status, st.READY, True, "ServerReady")
    c3 = st.condition(status, st.READY)
    assert c3 is not None and c3.last_transition_time != "2020-01-01T00:00:00Z"


def test_local_server_that_never_answers_times_out_with_reason(tmp_path: object) -> None:
    import subprocess
    from pathlib import Path

    from servelab.local.processes import StepFailed, free_port, wait_ready

    log = Path(str(tmp_path)) / "server.log"
    proc = subprocess.Popen(["sleep", "30"])
    try:
        with pytest.raises(StepFailed) as err:
            wait_ready(f"http://127.0.0.1:{free_port()}/health", proc, 1.5, log)
        assert err.value.reason == "ServerNotReady" and "not ready within 2s" in str(err.value)
    finally:
        proc.kill()
    dead = subprocess.Popen(["sh", "-c", "echo cannot load model >&2; exit 3"], stderr=log.open("w"))
    dead.wait()
    with pytest.raises(StepFailed) as err:
        wait_ready(f"http://127.0.0.1:{free_port()}/health", dead, 10, log)
    assert err.value.reason == "ServerFailed" and "cannot load model" in str(err.value)


@pytest.mark.parametrize("with_base_key", [False, True])
def test_base_model_is_never_a_quantized_variant(with_base_key: bool) -> None:
    from servelab.api.quantjob import QuantJobStatus

    base = {"name": "BASE", "path": "/m", "perplexity": 10.0}
    result: dict[str, object] = {
        "variants": [base, {"name": "FP8-DYNAMIC", "path": "/o", "perplexity": 10.1}]
    }
    if with_base_key:
        result["base"] = base
    status = QuantJobStatus()
    st.fold_quant(status, result)
    assert status.base is not None and status.base.name == "BASE"
    assert [v.name for v in status.variants] == ["FP8-DYNAMIC"]
    chosen = st.pick_variant(status, None)
    assert (
        chosen is not None and chosen.name == "FP8-DYNAMIC"
    )  # an unnamed reference serves the quantized one


def test_every_worker_command_has_an_image_with_requirements() -> None:
    from servelab.paths import repo_path
    from servelab.plan import WORKER_IMAGE
    from servelab.workers.cli import KINDS

    assert set(WORKER_IMAGE) == set(KINDS)
    for image in set(WORKER_IMAGE.values()):
        assert repo_path("images", image, "requirements.txt").is_file(), image


def test_the_api_lists_exactly_the_registered_load_generators() -> None:
    from typing import get_args

    from servelab import loadgen
    from servelab.api.servebenchmark import LoadGeneratorName

    assert set(get_args(LoadGeneratorName)) == set(loadgen.GENERATORS)


def test_the_perf_worker_renders_points_through_its_generator(tmp_path: Path) -> None:
    import argparse

    from servelab import loadgen
    from servelab.workers import perf

    parser = argparse.ArgumentParser()
    perf.add_arguments(parser)
    args = parser.parse_args(["--url", "http://h:1/v1", "--model", "m", "--tokenizer-path", "/t", "--parallel", "4",
                              "--number", "8", "--out", str(tmp_path), "--prompt-tokens", "128", "--max-tokens",
                              "32", "--evalscope", "/bin/evalscope"])  # fmt: skip
    shape = perf.point_shape(args, "vllm")
    assert (shape.url, shape.min_prompt_tokens, shape.min_tokens, shape.ignore_eos) == (
        "http://h:1/v1/chat/completions", 128, 32, True)  # fmt: skip
    cmd = loadgen.get("evalscope", "/bin/evalscope").point_command(shape, 4, 8, 16, tmp_path)
    assert cmd == perf.build_point_command(args, 4, 8, 16, "vllm")
    assert cmd[:2] == ["/bin/evalscope", "perf"] and opt(cmd, "--dataset-offset") == "16"
    assert opt(cmd, "--parallel") == "4" and opt(cmd, "--extra-args") == '{"ignore_eos": true}'
