"""Compile a spec into a plan: the ordered steps of one run, independent of where it runs.

The same plan is executed by `servelab.local` (processes on one machine) and by the operator
(a Deployment/Service for the server, one Job per worker step). Steps carry the worker command
line exactly as the pod runs it (`servelab worker ...`); executors only decide *where* it runs.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Literal

from servelab import loadgen
from servelab.api.common import DataSource, ModelSource, PvcSource
from servelab.api.engine import Engine
from servelab.api.quantjob import QuantJobSpec, QuantJobStatus
from servelab.api.servebenchmark import Load, ServeBenchmarkSpec, Timeouts
from servelab.engines import ServedModel, ServerLaunch, default_for_format, get
from servelab.names import dns_name

ResultKind = Literal["points", "depth", "scores", "quant", "warmup", "bench", "model", "benchy", "offline"]
Image = Literal["evalscope", "llamacpp", "llmcompressor", "vllm-cpu"]


# Which worker image runs each `servelab worker <command>` (the images under images/): the one table the
# operator (Job images), the local executor and the local pod runner all read.
WORKER_IMAGE: dict[str, Image] = {"perf": "evalscope", "eval": "evalscope", "depth": "evalscope",
                                  "gguf": "llamacpp", "quantize": "llmcompressor", "llamabench": "llamacpp",
                                  "model": "evalscope", "benchy": "evalscope", "offline": "vllm-cpu"}  # fmt: skip
# Under the model root: the ModelScope step's cache and its links to the snapshots (`repos/<id>`). A
# PersistentVolumeClaim's name never starts with '.', so no PVC source is mounted there.
MODELSCOPE_DIR = ".modelscope"


@dataclass(frozen=True)
class WorkerStep:
    id: str  # deterministic and DNS-safe: the Job name suffix and the artifacts sub-directory
    title: str  # what progress shows, e.g. "load 2/5 (parallel 10, number 30)"
    argv: list[str]  # starts with "servelab", "worker"
    result: ResultKind
    timeout_seconds: int
    env: dict[str, str] = field(default_factory=dict)
    gpus: int = 0
    cpus: int = 0  # CPUs the step's pod requests (0: the operator's workerCpu)
    image_name: str | None = None  # the image when not the command's default (a load generator's)
    secret_env: dict[str, tuple[str, str]] = field(default_factory=dict)  # env name -> (Secret, key)
    # the model source the step reads (its volume is mounted where model_location says), and the step that
    # makes it ready first in the same place (`servelab worker model`: a ModelScope download)
    model_source: ModelSource | None = None
    prepare: WorkerStep | None = None
    # the engine's own image (the server's), where a step runs the engine itself (`servelab worker offline`:
    # vLLM's offline benchmark); set by the decision core. Locally the step runs in `image`'s environment.
    engine_image: str | None = None

    @property
    def image(self) -> str:
        return self.image_name or WORKER_IMAGE[self.argv[2]]


@dataclass(frozen=True)
class BenchmarkPlan:
    server: ServerLaunch | None  # None: spec.endpoint, a server that already runs
    server_url: str  # how clients reach the server (no trailing slash)
    model: ServedModel
    steps: list[WorkerStep]
    ready_timeout_seconds: int
    total_timeout_seconds: int
    # `servelab worker model` before the server starts, beside it (an init container of the server pod; a
    # process the local executor waits for): fetches a ModelScope model, measures the model's size on disk
    model_step: WorkerStep | None = None

    points: int = 0  # load points of the sweep (all in the one "load" step)
    # steps that run the engine themselves, with no server (spec.offlineThroughput): before the server starts,
    # so the two never hold the GPUs at once
    offline: list[WorkerStep] = field(default_factory=list)


@dataclass(frozen=True)
class QuantPlan:
    steps: list[WorkerStep]
    output: str
    total_timeout_seconds: int


def engine_fetches_modelscope(source: ModelSource, engine: str | None) -> bool:
    """A model.modelScope source the engine fetches itself (its environment switch: vLLM, SGLang)."""
    return source.model_scope is not None and engine is not None and get(engine).modelscope_env is not None


def modelscope_link(source: ModelSource, mount_root: str = "/models") -> str:
    """Where the model step links a ModelScope snapshot (the repository's root)."""
    assert source.model_scope
    return f"{mount_root}/{MODELSCOPE_DIR}/repos/{source.model_scope.id}"


def model_location(source: ModelSource, mount_root: str = "/models", engine: str | None = None) -> str:
    """What an engine or worker is given for a model source (pvc sources are mounted under mount_root; a
    ModelScope repository is its id for an engine that fetches it, else where the model step links it)."""
    if source.path:
        return source.path
    if source.hugging_face:
        return source.hugging_face.id
    if source.model_scope:
        ms = source.model_scope
        if engine_fetches_modelscope(source, engine):
            return ms.id
        return modelscope_link(source, mount_root) + (f"/{ms.file}" if ms.file else "")
    assert source.pvc
    return f"{mount_root}/{source.pvc.claim_name}/{source.pvc.path}".rstrip("/")


def served_model(
    source: ModelSource, mount_root: str = "/models", name: str = "model", engine: str | None = None
) -> ServedModel:
    """What an engine serves for a model source: where it is, its tokenizer and, for a Hub repository,
    the revision to pin and the one file to serve (model.huggingFace.revision / .file); for a ModelScope
    repository the engine fetches itself, its id, revision and the engine's environment switch."""
    hf = source.hugging_face
    ms = source.model_scope if engine_fetches_modelscope(source, engine) else None
    return ServedModel(
        model_location(source, mount_root, engine), source.tokenizer, name=name, from_hub=hf is not None,
        revision=hf.revision if hf else (ms.revision if ms else None), hub_file=hf.file if hf else None,
        from_modelscope=ms is not None,
    )  # fmt: skip


def model_step(
    source: ModelSource | None, mount_root: str = "/models", engine: str | None = None
) -> WorkerStep | None:
    """`servelab worker model` for a model source: a ModelScope repository downloaded (modelscope package)
    and linked where model_location says, then measured; a PVC or a path measured. None where the engine
    itself fetches the model (a Hugging Face Hub repository, ModelScope with vLLM/SGLang): its size on
    disk is then unknown to servelab."""
    if source is None or source.hugging_face or engine_fetches_modelscope(source, engine):
        return None
    argv = ["servelab", "worker", "model"]
    if source.model_scope:
        ms = source.model_scope
        argv += ["--modelscope", ms.id, "--link", modelscope_link(source, mount_root)]
        argv += ["--revision", ms.revision] if ms.revision else []
        argv += ["--file", ms.file] if ms.file else []
        title = f"fetch {ms.id} from ModelScope"
    else:
        argv += ["--path", model_location(source, mount_root, engine)]
        title = "measure the model"
    return WorkerStep(id="model", title=title, argv=argv, result="model", timeout_seconds=21600,
                      model_source=source)  # fmt: skip


def data_location(source: DataSource, mount_root: str = "/data") -> str:
    """A data source as workers take it: a path, or `hf:ID[:SUBSET]@SPLIT[#COLUMN]` for a Hub data set,
    which the worker downloads (servelab.workers.hub)."""
    if source.path:
        return source.path
    if source.pvc:
        return f"{mount_root}/{source.pvc.claim_name}/{source.pvc.path}".rstrip("/")
    if source.config_map:
        return f"{mount_root}/configmap-{source.config_map.name}/{source.config_map.key}"
    assert source.hugging_face
    hf = source.hugging_face
    location = "hf:" + hf.id + (f":{hf.subset}" if hf.subset else "") + f"@{hf.split}"
    return location + (f"#{hf.column}" if hf.column else "")


def _model_args(spec: QuantJobSpec, model: str, local_flag: str) -> list[str]:
    """How a quantize worker is given its model: a Hub repository it downloads (pinned to the revision),
    or a directory."""
    hf = spec.model.hugging_face
    if hf is None:
        return [local_flag, model]
    return ["--hf-repo", hf.id, *(["--revision", hf.revision] if hf.revision else [])]


def llama_bench_step(
    spec: ServeBenchmarkSpec, model: ServedModel, artifacts: str, source: ModelSource | None = None,
    mount_root: str = "/models",
) -> WorkerStep:  # fmt: skip
    """`servelab worker llamabench`: llama-bench -o json against the GGUF file, in the llamacpp image. The
    file is where the server reads it: the model source's volume mounted the same way, a ModelScope file
    fetched first (the model step), a Hugging Face Hub file downloaded by the worker (--hf-repo/--hf-file)."""
    lb = spec.llama_bench
    assert lb is not None
    if model.from_hub:
        where = ["--hf-repo", model.location, *(["--hf-file", model.hub_file] if model.hub_file else [])]
    else:
        where = ["--model", model.location]
    argv = ["servelab", "worker", "llamabench", *where, "-p", *map(str, lb.prompt_tokens),
            "-n", *map(str, lb.gen_tokens), "-d", *map(str, lb.depths), "-r", str(lb.repetitions)]  # fmt: skip
    if lb.threads is not None:
        argv += ["-t", str(lb.threads)]
    if lb.gpu_layers is not None:
        argv += ["-ngl", str(lb.gpu_layers)]
    if lb.flash_attention is not None:
        argv += ["-fa", "1" if lb.flash_attention else "0"]
    argv += [f"--extra={a}" for a in lb.extra_args]
    argv += ["--timeout", str(lb.timeout_seconds), "--out", f"{artifacts}/llama-bench"]
    tests = f"pp {','.join(map(str, lb.prompt_tokens))} / tg {','.join(map(str, lb.gen_tokens))}"
    gpus = (spec.resources.gpus or 1) if lb.gpu_layers and spec.resources else 0
    return WorkerStep(id="llama-bench", title=f"llama-bench ({tests} @ d {','.join(map(str, lb.depths))})",
                      argv=argv, result="bench", timeout_seconds=lb.timeout_seconds, gpus=gpus,
                      model_source=source, prepare=model_step(source, mount_root, spec.engine.name)
                      if source and source.model_scope else None)  # fmt: skip


# `vllm serve` options that only the server has: left out of the offline benchmark's engine arguments
_SERVER_ONLY = {"--served-model-name": 1, "--reasoning-parser": 1, "--tool-call-parser": 1, "--chat-template": 1,
                "--host": 1, "--port": 1, "--enable-auto-tool-choice": 0}  # fmt: skip


def offline_args(spec: ServeBenchmarkSpec, launch: ServerLaunch) -> list[str]:
    """`vllm bench throughput` arguments (after the program): the model and the engine arguments of the
    rendered `vllm serve` command that apply offline (server-only flags and engine.extraArgs left out),
    random prompts of the spec's lengths, then spec.offlineThroughput.extraArgs."""
    ot = spec.offline_throughput
    assert ot is not None
    cmd = launch.command
    served = cmd[3 : len(cmd) - len(spec.engine.extra_args)]
    engine_args: list[str] = []
    i = 0
    while i < len(served):
        a = served[i]
        if a in _SERVER_ONLY:
            i += 1 + _SERVER_ONLY[a]
            continue
        engine_args.append(a)
        i += 1
    return ["--model", cmd[2], *engine_args, "--dataset-name", "random",
            "--random-input-len", str(ot.input_tokens), "--random-output-len", str(ot.output_tokens),
            "--num-prompts", str(ot.num_prompts), "--num-warmups", str(ot.warmup_prompts), *ot.extra_args]  # fmt: skip


def offline_step(spec: ServeBenchmarkSpec, launch: ServerLaunch, artifacts: str,
                 source: ModelSource | None = None) -> WorkerStep:  # fmt: skip
    """`servelab worker offline`: vLLM's offline benchmark on the model (no server), on the server's GPUs."""
    ot = spec.offline_throughput
    assert ot is not None
    gpus = (
        spec.resources.gpus
        if spec.resources and spec.resources.gpus is not None
        else spec.engine.tensor_parallel_size
    )
    argv = ["servelab", "worker", "offline", "--timeout", str(ot.timeout_seconds), "--out", f"{artifacts}/offline",
            "--", *offline_args(spec, launch)]  # fmt: skip
    title = f"offline throughput ({ot.num_prompts} prompts, {ot.input_tokens} in / {ot.output_tokens} out)"
    return WorkerStep(id="offline", title=title, argv=argv, result="offline", timeout_seconds=ot.timeout_seconds,
                      env=dict(launch.env), gpus=gpus, model_source=source)  # fmt: skip


def benchy_args(spec: ServeBenchmarkSpec, base_url: str, served_name: str, tokenizer: str) -> list[str]:
    """llama-benchy's arguments for spec.llamaBenchy (write-up 003: `--base-url URL/v1 --no-cache --model M
    --depth 0 8192 16384 32768 --runs 5`); the API key is added by the worker from its Secret."""
    lb = spec.llama_benchy
    assert lb is not None
    a = ["--base-url", base_url, "--model", served_name, "--tokenizer", tokenizer,
         "--pp", *map(str, lb.prompt_tokens), "--tg", *map(str, lb.gen_tokens), "--depth", *map(str, lb.depths),
         "--runs", str(lb.runs), "--concurrency", *map(str, lb.concurrency), "--latency-mode", lb.latency_mode]  # fmt: skip
    if lb.no_cache:
        a.append("--no-cache")
    if not lb.coherence_check:
        a.append("--skip-coherence")
    a.append("--exit-on-first-fail")  # a failed request fails the step: its rows would average fewer runs
    if lb.prefix_caching:
        a.append("--enable-prefix-caching")
    return a


def compile_benchmark(
    spec: ServeBenchmarkSpec, model: ServedModel, *, artifacts: str, server_url: Callable[[int], str],
    host: str = "0.0.0.0", port: int | None = None, connection_close: bool | None = None,
    source: ModelSource | None = None, mount_root: str = "/models",
) -> BenchmarkPlan:  # fmt: skip
    """The run of a ServeBenchmark: the server launched once (host and port as the site needs them),
    `server_url(port)` is how the site's clients reach it, and the ordered worker steps. `source` is the
    model source `model` was resolved from (PVC sources mounted under `mount_root`): it gives the model
    step before the server, and the volume llama-bench reads the model file from."""
    engine = get(spec.engine.name)
    ep = spec.endpoint
    launch = None if ep else engine.launch(spec.engine, model, host=host, port=port)
    if ep:  # a server that already runs: nothing is launched
        url = ep.url.rstrip("/").removesuffix("/v1")
        name = ep.served_model_name
        tokenizer = ep.tokenizer or (spec.load.tokenizer_path if spec.load else None) or name
        metrics_url = ep.metrics_url or "none"
    else:
        assert launch is not None
        url = server_url(launch.port)
        name = launch.served_model_name
        tokenizer = (spec.load.tokenizer_path if spec.load else None) or model.tokenizer or model.location
        metrics_url = f"{url}{launch.metrics_path}" if launch.metrics_path else "none"
    timeouts = spec.timeouts
    steps: list[WorkerStep] = []
    # an engine that closes streamed connections (llama-server) needs `Connection: close` from clients
    connection_close = engine.connection_close if connection_close is None else connection_close
    base = f"{url}/v1"
    if spec.load:
        load = spec.load
        shape = ["--url", base, "--model", name, "--tokenizer-path", tokenizer, "--engine", spec.engine.name,
                 "--min-prompt-tokens", str(load.min_prompt_length), "--prompt-tokens", str(load.max_prompt_length),
                 "--prefix-length", str(load.prefix_length), "--max-tokens", str(load.max_tokens),
                 "--request-timeout", str(load.point_timeout_seconds)]  # fmt: skip
        # an engine that refuses (or ignores) ignore_eos/min_tokens gets neither: outputs end at EOS
        honors = engine.honors_ignore_eos
        if load.min_tokens is not None or not honors:
            shape += ["--min-tokens", str(load.min_tokens if honors else 0)]
        if not load.ignore_eos or not honors:
            shape.append("--no-ignore-eos")
        if load.dataset != "random":  # prompts from a data set instead of random tokens
            shape += ["--dataset", load.dataset]
        if load.dataset_path:
            shape += ["--dataset-path", load.dataset_path]
        if load.endpoint != "chat":
            shape += ["--endpoint", load.endpoint]
        if not load.stream:
            shape.append("--no-stream")
        if load.rate:
            shape += ["--rate", str(load.rate)]
        if load.temperature is not None:
            shape += ["--temperature", str(load.temperature)]
        if connection_close:
            shape += ["--header", "Connection=close"]
        if spec.slo:  # goodput counts the requests meeting every per-request bound
            for flag_, bound in (("--slo-ttft", spec.slo.ttft_seconds), ("--slo-tpot", spec.slo.tpot_seconds),
                                 ("--slo-e2e", spec.slo.e2e_latency_seconds)):  # fmt: skip
                if bound is not None:
                    shape += [flag_, str(bound)]
        metrics = ["--metrics-url", metrics_url]
        generator = loadgen.get(load.generator)
        shape += ["--generator", generator.name]
        if load.allow_client_bound:
            shape.append("--allow-client-bound")
        if launch is not None:  # the server's concurrency limit is read from it (and from the server)
            shape += ["--server-command", json.dumps(launch.command)]
        shape += ["--client-shards", str(load.client_shards)]
        if load.repetitions > 1:  # each point runs again on fresh prompts; its figures carry mean ± sd
            shape += [
                "--repetitions",
                str(load.repetitions),
                "--max-relative-spread",
                str(load.max_relative_spread),
            ]
        # one step, one client process for the whole sweep (`servelab.loadgen.session`): a process start
        # per point held the server for seconds of imports per point; the warm-up is sent once, before the
        # first point, by the same process; each point's result is published as it finishes, and a
        # restarted step keeps the points already published (--resume), resuming at the first without one.
        # Each point draws fresh random prompts (the worker advances the offset by each point's requests),
        # so no point hits another's prefix cache.
        total = len(load.parallel)
        pairs = ", ".join(f"{p}x{n}" for p, n in zip(load.parallel, load.number, strict=True))
        steps.append(WorkerStep(
            id="load", title=f"load sweep ({total} point{'s' if total > 1 else ''}: parallel x number {pairs})",
            argv=["servelab", "worker", "perf", *shape, *metrics, "--parallel", *map(str, load.parallel),
                  "--number", *map(str, load.number), "--dataset-offset", "0",
                  "--min-success-rate", str(load.min_success_rate), "--warmup-requests", str(load.warmup_requests),
                  "--point-timeout", str(load.point_timeout_seconds), "--resume", "--out", f"{artifacts}/load"],
            result="points", image_name=generator.image, cpus=load.client_shards,
            # every point's time limit, and one more for the client's start, the warm-up and the scrapes
            timeout_seconds=load.point_timeout_seconds * (load.repetitions * total + 1),
        ))  # fmt: skip
    if spec.context_sweep:
        sweep = spec.context_sweep
        steps.append(WorkerStep(
            id="depth", title=f"context sweep (depths {', '.join(map(str, sweep.depths))})",
            argv=["servelab", "worker", "depth", "--url", base, "--model", name, "--tokenizer-path", tokenizer,
                  "--depths", *map(str, sweep.depths), "--prompt-tokens", str(sweep.prompt_tokens),
                  "--gen-tokens", str(sweep.gen_tokens), "--repetitions", str(sweep.runs),
                  "--out", f"{artifacts}/depth"],
            result="depth", timeout_seconds=timeouts.total_seconds if timeouts else 21600,
        ))  # fmt: skip
    if spec.llama_benchy:
        lb = spec.llama_benchy
        argv = [
            "servelab",
            "worker",
            "benchy",
            "--timeout",
            str(lb.timeout_seconds),
            "--out",
            f"{artifacts}/llama-benchy",
        ]
        if lb.corpus_path:
            argv += ["--corpus", lb.corpus_path]
        if connection_close:
            argv.append("--connection-close")
        # the tokenizer is read where the model is (its volume mounted), or from the Hub (a repository id)
        hub = {} if tokenizer.startswith("/") else {"HF_HUB_OFFLINE": "0", "TRANSFORMERS_OFFLINE": "0"}
        steps.append(WorkerStep(
            id="llama-benchy", title=f"llama-benchy (depths {', '.join(map(str, lb.depths))}, {lb.runs} runs)",
            argv=[*argv, "--", *benchy_args(spec, base, name, tokenizer)], result="benchy",
            timeout_seconds=lb.timeout_seconds, env=hub, model_source=source if source and source.pvc else None,
        ))  # fmt: skip
    if spec.llama_bench and launch is not None:  # llama-bench on the served model's file (not HTTP)
        steps.append(llama_bench_step(spec, model, artifacts, source, mount_root))
    for i, ev in enumerate(spec.evaluations):
        names = [d.name for d in ev.datasets]
        dataset_args: dict[str, dict[str, object]] = {}
        for d in ev.datasets:
            a: dict[str, object] = {}
            if d.local_path:
                a["local_path"] = d.local_path
            if d.subsets:
                a["subset_list"] = d.subsets
            if d.metrics:
                a["metric_list"] = d.metrics
            if d.few_shot is not None:
                a["few_shot_num"] = d.few_shot
            if a:
                dataset_args[d.name] = a
        argv = ["servelab", "worker", "eval", "--api-url", base, "--model", name, "--datasets", *names,
                "--dataset-args", json.dumps(dataset_args, sort_keys=True), "--batch-size", str(ev.batch_size),
                "--out", f"{artifacts}/eval-{i}"]  # fmt: skip
        if ev.limit:
            argv += ["--limit", str(ev.limit)]
        if ev.generation:
            argv += [
                "--generation-config",
                json.dumps(ev.generation.model_dump(exclude_none=True), sort_keys=True),
            ]
        steps.append(WorkerStep(
            id=f"eval-{i}", title=f"eval {ev.name or i + 1} ({', '.join(names)})",
            argv=argv, result="scores", timeout_seconds=ev.timeout_seconds or 21600,
        ))  # fmt: skip
    key = ep.api_key_secret_ref if ep else spec.engine.api_key_secret_ref
    if key:  # every client sends the server's API key, from its Secret (never an argument)
        steps = [replace(s_, secret_env={"SERVELAB_API_KEY": (key.name, key.key)}) for s_ in steps]
    if steps and steps[0].argv[2] == "perf":
        # the first load step waits for the server itself: it is started with the server (its client's start
        # overlaps the weights' loading) and, for an existing endpoint, waits for it to answer
        ready = str(timeouts.server_ready_seconds if timeouts else 1800)
        steps[0] = replace(steps[0], argv=[*steps[0].argv, "--wait-ready", ready])
    return BenchmarkPlan(
        server=launch, server_url=url, model=model, steps=steps,
        ready_timeout_seconds=timeouts.server_ready_seconds if timeouts else 1800,
        total_timeout_seconds=timeouts.total_seconds if timeouts else 21600,
        points=len(spec.load.parallel) if spec.load else 0,
        model_step=model_step(source, mount_root, spec.engine.name) if launch is not None else None,
        offline=[offline_step(spec, launch, artifacts, source)] if spec.offline_throughput and launch else [],
    )  # fmt: skip


def compile_quantjob(
    spec: QuantJobSpec, model: str, output: str, artifacts: str, mount_root: str = "/models"
) -> QuantPlan:
    """The run of a QuantJob: one quantize step (which also measures perplexity when asked)."""
    argv: list[str]
    ev = spec.evaluation.perplexity if spec.evaluation else None
    if spec.method == "gguf":
        assert spec.gguf is not None
        g = spec.gguf
        source = _model_args(spec, model, "--hf-dir")
        argv = ["servelab", "worker", "gguf", *source, "--out", output, "--types"]
        for v in g.variants:
            use = g.imatrix if v.imatrix is None else v.imatrix
            argv.append(f"{v.type}+imatrix" if use else v.type)
        if spec.calibration:
            argv += ["--imatrix-text", data_location(spec.calibration.source)]
        if g.imatrix_chunks:
            argv += ["--imatrix-chunks", str(g.imatrix_chunks)]
        if g.leave_output_tensor:
            argv.append("--leave-output-tensor")
        argv += ["--outtype", g.outtype]
        if not g.keep_base:
            argv.append("--drop-base")
        argv += [f"--quantize-arg={a}" for a in g.extra_args]
        if (spec.resources.gpus if spec.resources and spec.resources.gpus is not None else 1) > 0:
            argv += ["--gpu-layers", "999"]  # llama-imatrix / llama-perplexity offload to the pod's GPUs
        if ev:
            argv += ["--eval-text", data_location(ev.text), "--ctx", str(ev.context_size)]
            if ev.chunks:
                argv += ["--chunks", str(ev.chunks)]
            if not ev.kl_divergence:
                argv.append("--no-kld")
    else:
        c = spec.compressor
        argv = ["servelab", "worker", "quantize", *_model_args(spec, model, "--model"), "--method", spec.method,
                "--out", output]  # fmt: skip
        if c:
            for flag_, value in (("--scheme", c.scheme), ("--bits", c.bits), ("--group-size", c.group_size),
                                 ("--actorder", c.actorder), ("--dampening-frac", c.dampening_frac)):  # fmt: skip
                if value is not None:
                    argv += [flag_, str(value)]
            if c.symmetric is not None:
                argv += ["--symmetric" if c.symmetric else "--asymmetric"]
            argv += ["--ignore", *c.ignore, "--targets", *c.targets]
        if spec.calibration:
            cal = spec.calibration
            argv += ["--calibration", data_location(cal.source), "--num-samples", str(cal.num_samples),
                     "--max-seq-length", str(cal.max_seq_length)]  # fmt: skip
            if cal.source.hugging_face and cal.source.hugging_face.column:
                argv += ["--text-field", cal.source.hugging_face.column]
            if not cal.apply_chat_template:
                argv.append("--no-chat-template")
        if ev:
            argv += ["--eval-text", data_location(ev.text), "--eval-ctx", str(ev.context_size)]
            if ev.chunks:
                argv += ["--eval-chunks", str(ev.chunks)]
            if not ev.kl_divergence:
                argv.append("--no-kld")
    gpus = spec.resources.gpus if spec.resources and spec.resources.gpus is not None else 1
    # a ModelScope model is fetched first, in the same pod (where model_location says: --hf-dir/--model)
    fetch = model_step(spec.model, mount_root) if spec.model.model_scope else None
    step = WorkerStep(
        id="quantize", title=f"quantize ({spec.method})", argv=argv, result="quant",
        timeout_seconds=spec.timeout_seconds, gpus=gpus, model_source=spec.model, prepare=fetch,
    )  # fmt: skip
    return QuantPlan(steps=[step], output=output, total_timeout_seconds=spec.timeout_seconds)


def quant_output(spec: QuantJobSpec, mount_root: str = "/models", default: str | None = None) -> str:
    """Where a QuantJob writes its outputs: under the output PVC's mount, the spec's path, or the site's
    default (the local run directory)."""
    out = spec.output
    if out.pvc:
        return f"{mount_root}/{out.pvc.claim_name}/{out.pvc.path}".rstrip("/")
    return out.path or default or ""


@dataclass(frozen=True)
class ScoreRun:
    """One output of a QuantJob served and evaluated for task scores: a ServeBenchmark of its own."""

    variant: str  # the QuantVariantResult's name (e.g. IQ4_XS+imatrix, F16, BASE)
    suffix: str  # DNS-safe, deterministic: the child's name suffix
    spec: ServeBenchmarkSpec


def output_source(spec: QuantJobSpec, path: str, mount_root: str = "/models") -> ModelSource:
    """The model source of a QuantJob output (or of its unquantized source model), as a benchmark needs it."""
    if path == model_location(spec.model, mount_root):
        return spec.model
    tokenizer = model_location(spec.model, mount_root) if path.endswith(".gguf") else None
    pvc = spec.output.pvc
    prefix = f"{mount_root}/{pvc.claim_name}/" if pvc else None
    if pvc and prefix and path.startswith(prefix):
        return ModelSource(
            pvc=PvcSource(claim_name=pvc.claim_name, path=path[len(prefix) :]), tokenizer=tokenizer
        )
    return ModelSource(path=path, tokenizer=tokenizer)


def quant_score_runs(spec: QuantJobSpec, status: QuantJobStatus) -> list[ScoreRun]:
    """The task-score runs of a quantized QuantJob: one ServeBenchmark spec per output to score, the
    unquantized model first. Both executors run exactly these (locally as processes, in a cluster as
    child ServeBenchmarks owned by the QuantJob)."""
    ev = spec.evaluation
    if not ev or not ev.evalscope:
        return []
    wanted = {w.lower() for w in ev.variants}
    outputs = [v for v in status.variants if not wanted or v.name.lower() in wanted
               or v.name.split("+")[0].lower() in wanted]  # fmt: skip
    if ev.include_base and status.base:
        outputs.insert(0, status.base)
    # outputs are served by the engine whose native format they are (GGUF: llama.cpp; else vLLM)
    engine = ev.engine or Engine(name=default_for_format("gguf" if spec.method == "gguf" else "safetensors"))
    load = None
    if ev.speed:  # the same short sweep on every output's server: tok/s comparable at each concurrency
        sp = ev.speed
        load = Load(parallel=sp.concurrency, number=sp.requests, min_prompt_length=sp.prompt_tokens,
                    max_prompt_length=sp.prompt_tokens, max_tokens=sp.output_tokens, min_tokens=sp.output_tokens,
                    ignore_eos=True, point_timeout_seconds=sp.point_timeout_seconds)  # fmt: skip
    runs = []
    for v in outputs:
        if not v.path:
            continue
        bench = ServeBenchmarkSpec(
            model=output_source(spec, v.path), engine=engine, evaluations=[ev.evalscope], load=load,
            placement=spec.placement, images=spec.images, hf_token_secret_ref=spec.hf_token_secret_ref,
            timeouts=Timeouts(server_ready_seconds=ev.server_ready_seconds, total_seconds=spec.timeout_seconds),
        )  # fmt: skip
        runs.append(ScoreRun(variant=v.name, suffix="score-" + dns_name(v.name, 40), spec=bench))
    return runs
