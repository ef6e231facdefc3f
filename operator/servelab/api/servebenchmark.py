"""ServeBenchmark: serve a model with an engine, load it, evaluate it, record the results."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from servelab.api.base import ApiModel
from servelab.api.common import (
    CommonStatus,
    DnsSubdomain,
    ModelSource,
    Placement,
    Quantity,
    Resources,
    SecretKeyRef,
)
from servelab.api.engine import Engine
from servelab.api.quantjob import Evaluation, Images
from servelab.api.results import (
    DepthPointResult,
    EvalScore,
    LlamaBenchResult,
    LlamaBenchyResult,
    LoadPointResult,
    OfflineThroughputResult,
)
from servelab.api.results import (
    ServerFootprint as ServerFootprint,  # re-exported: it lived here before QuantJob status used it
)
from servelab.api.verdict import Baseline, Slo, Verdict
from servelab.engines import registry


class QuantJobRef(ApiModel):
    name: DnsSubdomain = Field(..., description="QuantJob in the same namespace.")
    variant: str | None = Field(
        None,
        max_length=64,
        description="Which output to serve (e.g. IQ4_XS); default: the only or first one.",
    )


class Endpoint(ApiModel):
    """An OpenAI-compatible server that already runs (a KServe or llm-d deployment, a production service):
    measured and evaluated like a deployed one, with nothing deployed or torn down."""

    __cel__ = [
        ("self.url.startsWith('http://') || self.url.startsWith('https://')",
         "spec.endpoint.url must be an http:// or https:// URL", ".url"),
        ("!has(self.metricsUrl) || self.metricsUrl.startsWith('http://') || self.metricsUrl.startsWith('https://')",
         "spec.endpoint.metricsUrl must be an http:// or https:// URL", ".metricsUrl"),
    ]  # fmt: skip

    url: str = Field(..., min_length=8, max_length=2048, description="Base URL, e.g. http://llm.prod.svc:8000 "
                     "(the OpenAI API under /v1).")  # fmt: skip
    served_model_name: str = Field(..., min_length=1, max_length=256, description="The model name it serves.")
    api_key_secret_ref: SecretKeyRef | None = Field(
        None, description="Secret with its API key (sent by clients)."
    )
    tokenizer: str | None = Field(
        None,
        max_length=1024,
        description="Tokenizer (local path) for prompt lengths; default spec.load.tokenizerPath.",
    )
    metrics_url: str | None = Field(
        None,
        max_length=2048,
        description="Its Prometheus /metrics, for the server's own counters (optional).",
    )


def _endpoint_rule() -> tuple[str, str, str | None]:
    """With spec.endpoint nothing is deployed: every field that configures a server is refused (the engine
    keeps its name, which says what serves the endpoint, and maxModelLen, its context length)."""
    checks = []
    for name, f in Engine.model_fields.items():
        if name in ("name", "max_model_len"):
            continue
        key = f.alias or name
        if f.default_factory is list:
            checks.append(f"(!has(self.engine.{key}) || size(self.engine.{key}) == 0)")
        elif f.default is None or f.is_required():
            checks.append(f"!has(self.engine.{key})")
        else:
            checks.append(f"(!has(self.engine.{key}) || self.engine.{key} == {str(f.default).lower()})")
    checks += ["!has(self.resources)", "!has(self.placement)", "!has(self.isolation)",
               "(!has(self.images) || !has(self.images.server))", "self.serverPolicy == 'Delete'",
               "!has(self.hfTokenSecretRef)"]  # fmt: skip
    return (
        "!has(self.endpoint) || (" + " && ".join(checks) + ")",
        "with spec.endpoint nothing is deployed: of spec.engine only name and maxModelLen apply, and server "
        "fields (engine options, resources, placement, isolation, images.server, serverPolicy, "
        "hfTokenSecretRef) are refused",
        ".endpoint",
    )


def _hub_rules() -> list[tuple[str, str, str | None]]:
    """model.huggingFace.file / revision only with an engine that serves them (the adapters' `hub_file`,
    `hub_revision`): any other would load the whole repository, or its main branch."""
    adapters = [registry.get(n) for n in registry.ENGINES]
    rules: list[tuple[str, str, str | None]] = []
    for attr, key, what in (("hub_file", "file", "serve one file of a Hub repository"),
                            ("hub_revision", "revision", "pin a Hub revision")):  # fmt: skip
        names = [a.name for a in adapters if getattr(a, attr)]
        listed = ", ".join(f"'{n}'" for n in names)
        rules.append((
            f"!has(self.model) || !has(self.model.huggingFace) || !has(self.model.huggingFace.{key}) || "
            f"self.engine.name in [{listed}]",
            f"spec.model.huggingFace.{key}: only engines that {what} take it ({', '.join(names) or 'none'})",
            f".model.huggingFace.{key}",
        ))  # fmt: skip
    return rules


def _modelscope_rule() -> tuple[str, str, str | None]:
    """model.modelScope.file (one file, a GGUF) only with engines that serve one file: the others load a
    whole repository (vLLM and SGLang fetch it themselves, Transformers and MLX read a directory)."""
    names = [n for n in registry.ENGINES if registry.get(n).model_formats[0] == "gguf"]
    listed = ", ".join(f"'{n}'" for n in names)
    return (
        "!has(self.model) || !has(self.model.modelScope) || !has(self.model.modelScope.file) || "
        f"self.engine.name in [{listed}]",
        f"only engines that serve one file take it ({', '.join(names)})",
        ".model.modelScope.file",
    )


def _shm_rule() -> tuple[str, str, str | None]:
    """spec.shmSize sizes the memory-backed /dev/shm of engines that use one: not set for the others."""
    from servelab.engines import registry

    without = [n for n in registry.ENGINES if not registry.get(n).needs_shm]
    names = ", ".join(f"'{n}'" for n in without)
    return (
        f"self.shmSize == '16Gi' || (!has(self.endpoint) && !(self.engine.name in [{names}]))",
        f"spec.shmSize sizes the memory-backed /dev/shm of engines that use one; {', '.join(without)} and "
        "spec.endpoint have none to size",
        ".shmSize",
    )


LoadGeneratorName = Literal[
    "evalscope", "vllm-bench"
]  # servelab.loadgen.GENERATORS (a unit test keeps the two equal)


class Load(ApiModel):
    """An evalscope perf sweep: one point per parallel/number pair."""

    __cel__ = [
        ("size(self.parallel) == size(self.number)",
         "spec.load.parallel and spec.load.number must have the same length (one number per parallel)",
         ".number"),
        ("self.minPromptLength <= self.maxPromptLength",
         "spec.load.minPromptLength must not exceed spec.load.maxPromptLength", ".minPromptLength"),
        ("!has(self.minTokens) || self.minTokens <= self.maxTokens",
         "spec.load.minTokens must not exceed spec.load.maxTokens", ".minTokens"),
        ("self.dataset in ['random', 'openqa'] || has(self.datasetPath)",
         "spec.load.datasetPath (a prompt file) is required by the line_by_line and custom datasets",
         ".datasetPath"),
        ("self.dataset != 'random' || !has(self.datasetPath)",
         "spec.load.datasetPath is not read by the random dataset", ".datasetPath"),
        ("self.dataset == 'random' || self.prefixLength == 0",
         "spec.load.prefixLength applies to the random dataset only", ".prefixLength"),
        ("self.generator != 'vllm-bench' || (self.dataset == 'random' && self.endpoint == 'chat' && self.stream)",
         "spec.load.generator vllm-bench sends random prompts to the streamed chat API only (dataset random, "
         "endpoint chat, stream true): use generator evalscope", ".generator"),
    ]  # fmt: skip

    parallel: list[Annotated[int, Field(ge=1, le=1000000)]] = Field(
        ..., min_length=1, max_length=64, description="Concurrency of each point (--parallel)."
    )
    number: list[Annotated[int, Field(ge=1, le=100000000)]] = Field(
        ..., min_length=1, max_length=64, description="Requests of each point (--number), same length."
    )
    generator: LoadGeneratorName = Field(
        "evalscope",
        description="Load generator (servelab.loadgen): evalscope perf (the write-ups' tool) or vllm-bench "
        "(`vllm bench serve`, a faster client).",
    )
    allow_client_bound: bool = Field(
        False,
        description="Count a point whose load client was at its own limit (label client-bound) as valid; "
        "by default it is invalid: its figures are the client's, not the server's.",
    )
    api: Literal["openai"] = Field("openai", description="evalscope --api.")
    endpoint: Literal["chat", "completions"] = Field(
        "chat", description="/v1/chat/completions or /v1/completions."
    )
    dataset: Literal["random", "openqa", "line_by_line", "custom"] = Field("random", description="--dataset.")
    dataset_path: str | None = Field(
        None,
        max_length=1024,
        description="--dataset-path: the prompt file of line_by_line and custom (optional for openqa), a path "
        "in the load worker's image (locally: on this machine).",
    )
    min_prompt_length: int = Field(1024, ge=0, le=16777216, description="--min-prompt-length (tokens).")
    max_prompt_length: int = Field(1024, ge=1, le=16777216, description="--max-prompt-length (tokens).")
    prefix_length: int = Field(0, ge=0, le=16777216, description="--prefix-length (shared prefix tokens).")
    max_tokens: int = Field(1024, ge=1, le=16777216, description="--max-tokens (output tokens).")
    min_tokens: int | None = Field(None, ge=0, le=16777216, description="--min-tokens.")
    ignore_eos: bool = Field(True, description="Send ignore_eos so every request generates max-tokens.")
    rate: float | None = Field(None, gt=0, description="Requests per second (--rate); unset = no pacing.")
    warmup_requests: int = Field(
        0, ge=0, le=100000, description="Requests sent before the sweep, not counted."
    )
    stream: bool = Field(True, description="Stream responses (TTFT needs it).")
    temperature: float | None = Field(None, ge=0, le=10, description="--temperature.")
    tokenizer_path: str | None = Field(
        None, max_length=1024, description="--tokenizer-path (default: the model's)."
    )
    min_success_rate: float = Field(
        1.0, ge=0, le=1, description="A point below this success rate is invalid."
    )
    point_timeout_seconds: int = Field(3600, ge=10, le=604800, description="Time limit of one point.")
    repetitions: int = Field(
        1,
        ge=1,
        le=100,
        description="Times each point runs (fresh prompts each time); its figures carry mean ± sd over them "
        "and its percentiles are over all their requests.",
    )
    max_relative_spread: float = Field(
        0.1,
        gt=0,
        le=10,
        description="A repeated point whose output tok/s, mean TTFT or mean TPOT varies by more than this "
        "(sd / mean) across its repetitions is flagged unstable.",
    )
    client_shards: int = Field(
        0,
        ge=0,
        le=64,
        description="Client processes per point, each at its share of the concurrency on disjoint prompts; "
        "their per-request records are pooled before any figure is computed (status: clientProcesses). "
        "0 (default): chosen per point, the fewest whose calibrated ceilings keep the load expected from "
        "the sweep's last point under half of theirs, at most one per CPU of the load worker (its pod's CPU "
        "limit: the operator's workerCpu). N: N processes (at most one per request slot), and the load "
        "Job requests N CPUs.",
    )


class ContextSweep(ApiModel):
    """Prompt-processing and generation speed at growing context depth (the seeds' pp/tg @ dN)."""

    depths: list[Annotated[int, Field(ge=0, le=16777216)]] = Field(
        ..., min_length=1, max_length=32, description="Context depths in tokens."
    )
    prompt_tokens: int = Field(2048, ge=1, le=1048576, description="New prompt tokens at each depth.")
    gen_tokens: int = Field(32, ge=1, le=65536, description="Tokens generated at each depth.")
    runs: int = Field(3, ge=1, le=100, description="Repetitions per depth.")


class LlamaBench(ApiModel):
    """llama.cpp's own benchmark, `llama-bench -o json`, against the model's GGUF file in the llamacpp image
    (write-up 003: `llama-bench -p 1024 -n 64 -d 0,16384,32768,65536`): pp/tg tokens per second ± sd at
    each depth, with backend and build. No HTTP: llama-bench loads the model itself, after the server is
    up (on GPUs both hold memory: leave room, or serve with few layers offloaded)."""

    prompt_tokens: list[Annotated[int, Field(ge=0, le=1048576)]] = Field(
        default_factory=lambda: [512], min_length=1, max_length=16, description="-p: prompt tokens (pp)."
    )
    gen_tokens: list[Annotated[int, Field(ge=0, le=65536)]] = Field(
        default_factory=lambda: [128], min_length=1, max_length=16, description="-n: generated tokens (tg)."
    )
    depths: list[Annotated[int, Field(ge=0, le=16777216)]] = Field(
        default_factory=lambda: [0], min_length=1, max_length=32, description="-d: context depths in tokens."
    )
    repetitions: int = Field(5, ge=1, le=100, description="-r: repetitions of each test.")
    threads: int | None = Field(None, ge=1, le=1024, description="-t: CPU threads.")
    gpu_layers: int | None = Field(None, ge=0, le=100000, description="-ngl: layers offloaded to GPUs.")
    flash_attention: bool | None = Field(None, description="-fa 1/0 (default: llama-bench's auto).")
    extra_args: list[Annotated[str, Field(max_length=256)]] = Field(
        default_factory=list, max_length=32, description="More llama-bench arguments, appended last."
    )
    timeout_seconds: int = Field(21600, ge=10, le=604800, description="Time limit of the llama-bench step.")


class OfflineThroughput(ApiModel):
    """vLLM's offline benchmark, `vllm bench throughput` (write-up 002's `vllm.LLM` benchmark): the engine
    loaded in-process, every prompt handed to it at once, no server and no HTTP. Runs in the vLLM image as
    a step of its own, before the server starts (so the two never share the GPUs), with the engine
    arguments of spec.engine that apply offline (the model, its revision and tokenizer, maxModelLen,
    tensorParallelSize, gpuMemoryUtilization, quantization, dtype, kvCacheDtype, speculative,
    trustRemoteCode, vllm.enforceEager); server-only ones (served name, parsers, chat template, host, port,
    engine.extraArgs) are left out. Random prompts of exactly inputTokens tokens, each generating
    outputTokens (`--dataset-name random`)."""

    input_tokens: int = Field(
        1024, ge=1, le=1048576, description="--random-input-len: prompt tokens of each request."
    )
    output_tokens: int = Field(
        512, ge=1, le=1048576, description="--random-output-len: tokens generated per request."
    )
    num_prompts: int = Field(1000, ge=1, le=1000000, description="--num-prompts: requests in the run.")
    warmup_prompts: int = Field(
        0, ge=0, le=100000, description="--num-warmups: requests sent first, not timed."
    )
    extra_args: list[Annotated[str, Field(max_length=256)]] = Field(
        default_factory=list,
        max_length=32,
        description="More `vllm bench throughput` arguments (engine arguments too, e.g. --max-num-seqs), last.",
    )
    timeout_seconds: int = Field(21600, ge=10, le=604800, description="Time limit of the offline step.")


class LlamaBenchy(ApiModel):
    """llama-benchy (PyPI `llama-benchy` 0.3.5), write-up 003's context-depth harness against the served
    OpenAI API: `llama-benchy --depth 0 8192 16384 32768 --runs 5 --no-cache`, rows pp/tg @ dN with t/s,
    peak t/s, ttfr, est_ppt and e2e_ttft, each mean ± sd over the runs. Prompts are slices of a book
    (llama-benchy's --book-url, downloaded; corpusPath gives the text instead where pods are offline)."""

    depths: list[Annotated[int, Field(ge=0, le=16777216)]] = Field(
        default_factory=lambda: [0],
        min_length=1,
        max_length=32,
        description="--depth: context depths in tokens.",
    )
    prompt_tokens: list[Annotated[int, Field(ge=1, le=1048576)]] = Field(
        default_factory=lambda: [2048], min_length=1, max_length=16, description="--pp: prompt tokens."
    )
    gen_tokens: list[Annotated[int, Field(ge=1, le=65536)]] = Field(
        default_factory=lambda: [32], min_length=1, max_length=16, description="--tg: generated tokens."
    )
    runs: int = Field(3, ge=1, le=100, description="--runs: runs of each test.")
    concurrency: list[Annotated[int, Field(ge=1, le=4096)]] = Field(
        default_factory=lambda: [1],
        min_length=1,
        max_length=16,
        description="--concurrency: concurrent requests.",
    )
    no_cache: bool = Field(
        True, description="--no-cache (the write-up's): a unique suffix per prompt and cache_prompt=false."
    )
    latency_mode: Literal["api", "generation", "none"] = Field(
        "api", description="--latency-mode: how the network latency subtracted from est_ppt is measured."
    )
    coherence_check: bool = Field(
        True,
        description="llama-benchy's check that the model answers 'Paris' first (false: --skip-coherence).",
    )
    prefix_caching: bool = Field(
        False, description="--enable-prefix-caching: load each context first, then measure the prompt on it."
    )
    corpus_path: str | None = Field(
        None,
        max_length=1024,
        description="A text file to take prompts from instead of downloading --book-url (a path in the "
        "evalscope worker image; locally on this machine).",
    )
    timeout_seconds: int = Field(21600, ge=10, le=604800, description="Time limit of the llama-benchy step.")


class Isolation(ApiModel):
    exclusive_node: bool = Field(
        True, description="Never share a node with another ServeBenchmark's server (pod anti-affinity)."
    )


class Timeouts(ApiModel):
    server_ready_seconds: int = Field(
        1800, ge=10, le=86400, description="Time for the server to become ready."
    )
    total_seconds: int = Field(21600, ge=60, le=604800, description="Time limit of the whole benchmark.")


class ServeBenchmarkSpec(ApiModel):
    __cel__ = [
        ("(has(self.model) ? 1 : 0) + (has(self.quantJobRef) ? 1 : 0) + (has(self.endpoint) ? 1 : 0) == 1",
         "set exactly one of spec.model, spec.quantJobRef or spec.endpoint", None),
        ("!has(self.endpoint) || !has(self.load) || has(self.endpoint.tokenizer) || has(self.load.tokenizerPath)",
         "spec.endpoint needs a tokenizer (spec.endpoint.tokenizer or spec.load.tokenizerPath) to size prompts",
         ".endpoint.tokenizer"),
        _endpoint_rule(),
        _shm_rule(),
        *_hub_rules(),
        _modelscope_rule(),
        ("!has(self.images) || !has(self.images.quantize)",
         "spec.images.quantize is the QuantJob's quantizer image: a ServeBenchmark runs none", ".images.quantize"),
        ("!has(self.offlineThroughput) || (self.engine.name == 'vllm' && !has(self.endpoint))",
         "spec.offlineThroughput runs vLLM's offline engine on the model: engine.name vllm, not with spec.endpoint",
         ".offlineThroughput"),
        ("!has(self.engine.maxModelLen) || !has(self.offlineThroughput) || "
         "self.offlineThroughput.inputTokens + self.offlineThroughput.outputTokens <= self.engine.maxModelLen",
         "spec.offlineThroughput: inputTokens + outputTokens must not exceed spec.engine.maxModelLen",
         ".offlineThroughput.inputTokens"),
        ("!has(self.llamaBench) || !has(self.endpoint)",
         "spec.llamaBench runs llama-bench on the model's file: not with spec.endpoint", ".llamaBench"),
        # llama.cpp runs on CPU with gpus: 0 (its tensorParallelSize is always 1)
        ("!has(self.resources) || !has(self.resources.gpus) || self.engine.tensorParallelSize <= self.resources.gpus"
         " || (self.engine.name == 'llamacpp' && self.resources.gpus == 0)",
         "spec.engine.tensorParallelSize must not exceed spec.resources.gpus", ".engine.tensorParallelSize"),
        ("has(self.load) || has(self.contextSweep) || has(self.llamaBench) || has(self.llamaBenchy) || "
         "has(self.offlineThroughput) || "
         "(has(self.evaluations) && size(self.evaluations) > 0)",
         "set at least one of spec.load, spec.contextSweep, spec.llamaBench, spec.llamaBenchy, "
         "spec.offlineThroughput or spec.evaluations", None),
        # what cannot fit in the server's context is refused by it, request after request
        ("!has(self.engine.maxModelLen) || !has(self.load) || "
         "self.load.prefixLength + self.load.maxPromptLength + self.load.maxTokens <= self.engine.maxModelLen",
         "spec.load: prefixLength + maxPromptLength + maxTokens must not exceed spec.engine.maxModelLen "
         "(every longer request would be refused by the server)", ".load.maxPromptLength"),
        # llama-server with -np N (and no unified KV cache) splits -c between its slots
        ("!has(self.engine.maxModelLen) || !has(self.load) || self.engine.name != 'llamacpp' || "
         "!has(self.engine.llamacpp) || !has(self.engine.llamacpp.parallelSlots) || "
         "(has(self.engine.extraArgs) && self.engine.extraArgs.exists(a, a == '-kvu' || a == '--kv-unified')) || "
         "(self.load.prefixLength + self.load.maxPromptLength + self.load.maxTokens) * "
         "self.engine.llamacpp.parallelSlots <= self.engine.maxModelLen",
         "spec.load: with spec.engine.llamacpp.parallelSlots, llama-server gives each slot maxModelLen / "
         "parallelSlots of context: prefixLength + maxPromptLength + maxTokens must fit in it (or pass -kvu "
         "in spec.engine.extraArgs for one KV cache shared by the slots)", ".load.maxPromptLength"),
        ("!has(self.engine.maxModelLen) || !has(self.contextSweep) || self.contextSweep.depths.all(d, "
         "d + self.contextSweep.promptTokens + self.contextSweep.genTokens <= self.engine.maxModelLen)",
         "spec.contextSweep: each depth + promptTokens + genTokens must not exceed spec.engine.maxModelLen",
         ".contextSweep.depths"),
        ("!has(self.engine.maxModelLen) || !has(self.evaluations) || self.evaluations.all(e, "
         "!has(e.generation) || !has(e.generation.maxTokens) || e.generation.maxTokens < self.engine.maxModelLen)",
         "spec.evaluations[].generation.maxTokens must be below spec.engine.maxModelLen (room for the prompt)",
         ".evaluations"),
    ]  # fmt: skip

    model: ModelSource | None = Field(None, description="The model to serve.")
    quant_job_ref: QuantJobRef | None = Field(None, description="Serve a QuantJob's output instead.")
    endpoint: Endpoint | None = Field(
        None, description="Measure a server that already runs instead (nothing deployed)."
    )
    engine: Engine = Field(..., description="Engine and its options.")
    load: Load | None = Field(None, description="evalscope perf sweep.")
    context_sweep: ContextSweep | None = Field(None, description="Context-depth sweep.")
    llama_bench: LlamaBench | None = Field(None, description="llama-bench against the model's GGUF file.")
    llama_benchy: LlamaBenchy | None = Field(
        None, description="llama-benchy depth sweep against the served API (write-up 003's harness)."
    )
    offline_throughput: OfflineThroughput | None = Field(
        None, description="vLLM's offline `vllm bench throughput` on the model (no server)."
    )
    evaluations: list[Evaluation] = Field(default_factory=list, max_length=16, description="evalscope evals.")
    resources: Resources | None = Field(None, description="GPUs (default tensorParallelSize), CPU, memory.")
    shm_size: Quantity = Field("16Gi", description="Memory-backed /dev/shm (vLLM, SGLang), e.g. 16Gi.")
    placement: Placement | None = Field(None, description="Where the server runs.")
    isolation: Isolation | None = Field(None, description="Isolation from other benchmarks.")
    timeouts: Timeouts | None = Field(None, description="Time limits.")
    slo: Slo | None = Field(
        None, description="Service-level objectives each point is judged against (the gate)."
    )
    baseline: Baseline | None = Field(None, description="A run to compare with, and the regressions allowed.")
    server_policy: Literal["Delete", "Keep", "KeepOnFailure"] = Field(
        "Delete", description="What to do with the server afterwards."
    )
    images: Images | None = Field(None, description="Image overrides.")
    hf_token_secret_ref: SecretKeyRef | None = Field(None, description="Secret with a Hugging Face token.")


class BenchmarkSummary(ApiModel):
    max_output_tokens_per_second: float | None = Field(None, description="Best output tok/s over the points.")
    single_stream_tokens_per_second: float | None = Field(None, description="Output tok/s at concurrency 1.")
    min_ttft_seconds: float | None = Field(None, description="Lowest average TTFT over the points.")
    points: str | None = Field(None, description="Points done/total.")


class Provenance(ApiModel):
    images: dict[str, str] = Field(default_factory=dict, description="Images used, by role.")
    command: list[str] = Field(default_factory=list, description="The server's rendered command line.")
    node: str | None = Field(None, description="Node the server ran on.")
    gpu_product: str | None = Field(None, description="nvidia.com/gpu.product of that node.")
    versions: dict[str, str] = Field(default_factory=dict, description="Tool versions (engine, evalscope).")


class Timing(ApiModel):
    """How long the server (and its GPUs) was held, and for how much of it load was measured."""

    server_created_at: str | None = Field(None, description="When the server was created.")
    server_ready_at: str | None = Field(None, description="When it first answered its health check.")
    server_released_at: str | None = Field(None, description="When it was deleted (or the run ended).")
    server_held_seconds: float | None = Field(None, description="Created to released (or to now).")
    measured_seconds: float | None = Field(
        None,
        description="Sum of the valid load points' measured durations (an invalid point measured nothing).",
    )
    duty_cycle: float | None = Field(
        None, description="measuredSeconds / serverHeldSeconds: the share of the GPU time spent measuring."
    )
    note: str | None = Field(None, description="Why a figure is missing (e.g. an existing endpoint).")


class ServeBenchmarkStatus(CommonStatus):
    model: str | None = Field(None, description="Resolved model (source or QuantJob output).")
    engine: str | None = Field(None, description="Engine name.")
    quantization: str | None = Field(None, description="Resolved quantization (from the QuantJob or engine).")
    server: str | None = Field(None, description="Server Service URL while it runs.")
    results: list[LoadPointResult] = Field(
        default_factory=list, max_length=64, description="One row per point."
    )
    depth: list[DepthPointResult] = Field(
        default_factory=list, max_length=32, description="Context sweep rows."
    )
    llama_bench: list[LlamaBenchResult] = Field(
        default_factory=list, max_length=256, description="llama-bench rows (test, t/s ± sd, backend, build)."
    )
    llama_benchy: list[LlamaBenchyResult] = Field(
        default_factory=list,
        max_length=512,
        description="llama-benchy rows (test, t/s, peak t/s, ttfr, est_ppt, e2e_ttft, each mean ± sd).",
    )
    offline_throughput: OfflineThroughputResult | None = Field(
        None, description="vLLM's offline throughput (`vllm bench throughput`), beside the served points."
    )
    scores: list[EvalScore] = Field(default_factory=list, max_length=256, description="Evaluation scores.")
    summary: BenchmarkSummary | None = None
    verdict: Verdict | None = Field(None, description="The gate's outcome: every check and whether it held.")
    timing: Timing | None = Field(None, description="Server time held and the duty cycle of the run.")
    footprint: ServerFootprint | None = Field(
        None, description="Model load time, size on disk and GPU memory (where the engine reports it)."
    )
    provenance: Provenance | None = None
