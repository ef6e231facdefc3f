"""Result models: what a load point, an evaluation or a quantization produced.

These are the rows of ServeBenchmark/QuantJob status and the compact results workers publish.
Times are seconds everywhere (evalscope reports milliseconds in some releases; parsers convert).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from servelab.api.base import ApiModel

PointLabel = Literal["ok", "client-bound", "server-capped", "saturated"]


class ServerMetrics(ApiModel):
    """Server-side counters scraped from the engine's /metrics before and after a point (deltas)."""

    prompt_tokens: float | None = Field(
        None, description="Prompt tokens the server counted during the point."
    )
    generation_tokens: float | None = Field(
        None, description="Generated tokens the server counted during the point."
    )
    requests: float | None = Field(None, description="Requests the server finished during the point.")
    avg_ttft_seconds: float | None = Field(
        None, description="Mean time to first token from the server's histogram, when it exports one."
    )
    output_tokens_per_second: float | None = Field(
        None, description="Server-counted generation tokens divided by the client-measured duration."
    )
    running_max: float | None = Field(
        None, description="Most requests the server said it was serving, sampled during the point."
    )
    waiting_max: float | None = Field(
        None, description="Most requests the server said it held in its queue, sampled during the point."
    )


class LatencyPercentiles(ApiModel):
    p50: float | None = Field(None, description="Median (nearest rank), seconds.")
    p90: float | None = Field(None, description="90th percentile, seconds.")
    p95: float | None = Field(None, description="95th percentile, seconds.")
    p99: float | None = Field(None, description="99th percentile, seconds.")


class PointPercentiles(ApiModel):
    """Per-request latency percentiles of a point (successful requests; TTFT/TPOT of streamed ones)."""

    ttft_seconds: LatencyPercentiles | None = None
    tpot_seconds: LatencyPercentiles | None = None
    latency_seconds: LatencyPercentiles | None = None


class Spread(ApiModel):
    """One figure over a point's repetitions: mean ± sample standard deviation (llama-bench's ±)."""

    mean: float = Field(..., description="Mean of the repetitions' values.")
    sd: float = Field(0, ge=0, description="Their sample standard deviation (n-1); 0 for one repetition.")
    relative: float | None = Field(None, ge=0, description="sd / mean (coefficient of variation).")
    samples: list[float] = Field(
        default_factory=list, max_length=100, description="The value of each repetition, in order."
    )


class PointSpread(ApiModel):
    """How a point's repetitions agree: per-repetition output tok/s, mean TTFT and mean TPOT."""

    output_tokens_per_second: Spread | None = None
    ttft_seconds: Spread | None = None
    tpot_seconds: Spread | None = None


class LoadPointResult(ApiModel):
    """One row of the results table: one evalscope perf run at a fixed concurrency."""

    concurrency: int = Field(..., ge=1, description="Parallel requests in flight (evalscope --parallel).")
    requests: int = Field(..., ge=0, description="Requests sent (evalscope --number).")
    succeeded: int = Field(0, ge=0, description="Requests that succeeded.")
    failed: int = Field(0, ge=0, description="Requests that failed.")
    success_rate: float = Field(..., ge=0, le=1, description="succeeded / requests, 0..1.")
    duration_seconds: float | None = Field(None, description="Wall time of the point.")
    rps: float | None = Field(None, description="Successful requests per second.")
    avg_latency_seconds: float | None = Field(None, description="Mean end-to-end request latency.")
    p99_latency_seconds: float | None = Field(None, description="99th percentile request latency.")
    output_tokens_per_second: float | None = Field(
        None, description="Generated tokens per second, all requests."
    )
    total_tokens_per_second: float | None = Field(
        None, description="Prompt plus generated tokens per second."
    )
    avg_ttft_seconds: float | None = Field(None, description="Mean time to first token.")
    p99_ttft_seconds: float | None = Field(None, description="99th percentile time to first token.")
    avg_tpot_seconds: float | None = Field(None, description="Mean time per output token after the first.")
    p99_tpot_seconds: float | None = Field(None, description="99th percentile time per output token.")
    avg_input_tokens: float | None = Field(None, description="Mean prompt tokens per request.")
    avg_output_tokens: float | None = Field(None, description="Mean generated tokens per request.")
    percentiles: PointPercentiles | None = Field(None, description="Per-request latency percentiles.")
    slo_attainment: float | None = Field(
        None, ge=0, le=1, description="Share of requests meeting every per-request bound of spec.slo."
    )
    goodput_rps: float | None = Field(
        None,
        description="Requests per second that met every per-request bound of spec.slo (DistServe goodput).",
    )
    goodput_output_tokens_per_second: float | None = Field(
        None, description="Output tokens per second of the requests that met every per-request bound."
    )
    server: ServerMetrics | None = Field(None, description="The engine's own counters for the same point.")
    label: PointLabel | None = Field(
        None,
        description="What limited the point: ok, client-bound (the load client at its own limit), "
        "server-capped (the server serves fewer requests at a time than the concurrency), saturated "
        "(more concurrency, no more throughput). None when no request of the point finished.",
    )
    label_reason: str | None = Field(None, description="The figures behind the label.")
    client_cpu: float | None = Field(
        None, description="Load client CPU during the point: CPU seconds per second (1.0 = one core)."
    )
    client_busy: float | None = Field(
        None, description="Share of the point the client was running or waiting for a CPU, 0..1+."
    )
    client_schedule_delay_seconds: float | None = Field(
        None, description="Mean delay between when a request was due (a slot freed) and when it was sent."
    )
    client_ceiling_fraction: float | None = Field(
        None,
        description="Output tok/s over the generator's calibrated ceiling at this concurrency (summed over "
        "the point's client processes).",
    )
    client_processes: int | None = Field(
        None,
        ge=1,
        description="Client processes (shards) that ran the point, each at its share of the concurrency on "
        "disjoint prompts; their per-request records are pooled before any figure is computed. Unset: one.",
    )
    sustained_concurrency: float | None = Field(
        None,
        description="Requests the server generated at once on average (Little's law: request rate x mean "
        "of latency - TTFT).",
    )
    server_concurrency_limit: int | None = Field(
        None, description="Requests the server serves at a time, as it states or its command sets."
    )
    server_concurrency_flag: str | None = Field(
        None, description="What sets that limit, e.g. llama-server -np 1 (total_slots 1)."
    )
    repetitions: int | None = Field(
        None, ge=1, description="Times the point ran (spec.load.repetitions); requests counts them all."
    )
    spread: PointSpread | None = Field(
        None, description="Mean ± sd over the repetitions (percentiles are over all their requests)."
    )
    unstable: bool | None = Field(
        None,
        description="True when the repetitions disagree beyond spec.load.maxRelativeSpread: the point is "
        "noise, not a trend (it stays in the table, out of the saturation verdict and the chart's lines).",
    )
    unstable_reason: str | None = Field(None, description="Which figures disagreed, and by how much.")
    valid: bool = Field(True, description="False when the point failed a validity check (see reason).")
    reason: str | None = Field(None, description="Why the point is invalid, when it is.")
    artifacts: str | None = Field(None, description="Where the point's full evalscope output is.")


class EvalScore(ApiModel):
    """One metric of one evaluation data set."""

    dataset: str = Field(..., description="Data set name, e.g. math_500, ifeval, general_qa.")
    metric: str = Field(..., description="Metric name, e.g. mean_acc, Rouge-L-F.")
    subset: str | None = Field(None, description="Subset, when the data set has several.")
    num: int | None = Field(None, ge=0, description="Samples scored.")
    score: float = Field(..., description="The score.")


class DepthPointResult(ApiModel):
    """Prompt processing and generation speed at one context depth (the seeds' pp/tg @ dN table)."""

    depth: int = Field(..., ge=0, description="Tokens of context already in the prompt.")
    prompt_tokens: int = Field(..., ge=1, description="New prompt tokens processed at this depth.")
    gen_tokens: int = Field(..., ge=1, description="Tokens generated at this depth.")
    pp_tokens_per_second: float | None = Field(None, description="Prompt processing tokens per second.")
    tg_tokens_per_second: float | None = Field(None, description="Generation tokens per second.")
    ttft_seconds: float | None = Field(None, description="Time to first token at this depth.")


class LlamaBenchResult(ApiModel):
    """One llama-bench test (`llama-bench -o json`): the seeds' `pp1024 @ d16384  5972.57 ± 7.84` row."""

    test: str = Field(
        ..., max_length=64, description="The test as llama-bench names it: pp512, tg128, pp512 @ d4096."
    )
    n_prompt: int = Field(..., ge=0, description="Prompt tokens processed (-p).")
    n_gen: int = Field(..., ge=0, description="Tokens generated (-n).")
    n_depth: int = Field(0, ge=0, description="Tokens of context already in the KV cache (-d).")
    avg_tokens_per_second: float = Field(
        ..., ge=0, description="Mean tokens per second over the repetitions."
    )
    stddev_tokens_per_second: float = Field(
        0, ge=0, description="Their standard deviation (the ± of the table)."
    )
    samples_tokens_per_second: list[float] = Field(
        default_factory=list, max_length=1000, description="Tokens per second of each repetition."
    )
    model_type: str | None = Field(
        None, max_length=256, description="llama-bench's model column (e.g. qwen3 8B Q8_0)."
    )
    model_size_bytes: int | None = Field(None, ge=0, description="The model's size.")
    model_params: int | None = Field(None, ge=0, description="The model's parameter count.")
    backends: str | None = Field(None, max_length=128, description="Backends (CPU, CUDA, MTL,BLAS ...).")
    n_gpu_layers: int | None = Field(None, description="Layers offloaded (-ngl).")
    n_threads: int | None = Field(None, description="CPU threads (-t).")
    flash_attn: int | None = Field(None, description="-fa (1 on, 0 off, -1 auto).")
    build: str | None = Field(None, max_length=128, description="llama.cpp build: commit (number).")


class OfflineThroughputResult(ApiModel):
    """`vllm bench throughput` (vLLM's offline engine, no server): write-up 002's `vllm.LLM` benchmark."""

    requests: int = Field(..., ge=0, description="Requests processed (--num-prompts).")
    prompt_tokens: int | None = Field(None, ge=0, description="Prompt tokens of all requests.")
    output_tokens: int | None = Field(None, ge=0, description="Tokens generated for all requests.")
    elapsed_seconds: float = Field(..., ge=0, description="Time the engine took for all of them.")
    requests_per_second: float = Field(..., ge=0, description="Requests per second.")
    tokens_per_second: float = Field(..., ge=0, description="Prompt and output tokens per second.")
    output_tokens_per_second: float | None = Field(
        None, ge=0, description="Output tokens per second (what the served points' tok/s compares with)."
    )
    input_len: int | None = Field(None, ge=0, description="Prompt tokens of each request, as asked.")
    output_len: int | None = Field(None, ge=0, description="Output tokens of each request, as asked.")
    command: list[str] = Field(
        default_factory=list, max_length=256, description="The `vllm bench throughput` arguments run."
    )


class Metric(ApiModel):
    """A mean ± standard deviation over a test's runs."""

    mean: float = Field(..., description="Mean over the runs.")
    sd: float = Field(0, ge=0, description="Standard deviation over the runs.")


class LlamaBenchyResult(ApiModel):
    """One row of llama-benchy's table (write-up 003: `pp2048 @ d8192  4900.92 ± 366.64`): a prompt
    processing (pp) or generation (tg) test at a context depth and concurrency. Times in seconds (the
    table shows llama-benchy's milliseconds)."""

    test: str = Field(
        ..., max_length=64, description="As llama-benchy names it: pp2048, tg32 @ d8192, ctx_pp @ d8192."
    )
    kind: Literal["pp", "tg", "ctx_pp", "ctx_tg"] = Field(..., description="What the row measures.")
    prompt_tokens: int = Field(..., ge=0, description="--pp of the test.")
    gen_tokens: int = Field(..., ge=0, description="--tg of the test.")
    depth: int = Field(0, ge=0, description="--depth of the test (context tokens before the prompt).")
    concurrency: int = Field(1, ge=1, description="Concurrent requests (--concurrency).")
    tokens_per_second: Metric = Field(..., description="t/s (total over the concurrent requests).")
    request_tokens_per_second: Metric | None = Field(None, description="t/s (req): per request.")
    peak_tokens_per_second: Metric | None = Field(None, description="peak t/s (tg rows).")
    ttfr_seconds: Metric | None = Field(None, description="Time to first response (pp rows).")
    est_ppt_seconds: Metric | None = Field(None, description="Estimated prompt processing time (pp rows).")
    e2e_ttft_seconds: Metric | None = Field(
        None, alias="e2eTtftSeconds", description="End-to-end time to first token (pp rows)."
    )
    model: str | None = Field(None, max_length=256, description="llama-benchy's model column.")
    version: str | None = Field(None, max_length=32, description="llama-benchy's version.")


class ServerFootprint(ApiModel):
    """What loading the model took (write-up 002's table: load time, size, memory), each figure with where
    it comes from; null where it is not known (never estimated)."""

    load_seconds: float | None = Field(
        None,
        description="Server start to ready: in a cluster the engine container's start to the pod's Ready "
        "condition (after the model step, if any); locally the server process's start to its first healthy "
        "answer (polled every tick, 0.5 s).",
    )
    load_source: str | None = Field(None, description="How loadSeconds was measured.")
    model_bytes: int | None = Field(
        None,
        ge=0,
        description="The model's size on disk (apparent sizes of its files), measured by the model step "
        "(`servelab worker model`); null where the engine fetches the model itself (a Hugging Face Hub "
        "repository, ModelScope with vLLM/SGLang) or the path is inside the engine's image.",
    )
    model_bytes_source: str | None = Field(None, description="What was measured, and how it got there.")
    gpu_memory_bytes: int | None = Field(
        None,
        ge=0,
        description="GPU memory the engine reports for the model in its log (vLLM: 'Model loading took X "
        "GiB'; SGLang: 'Load weight end ... mem usage=X GB'; llama.cpp and Ollama: the GPU model and KV "
        "buffer sizes); null for engines that report none (Transformers, MLX) or on CPU.",
    )
    gpu_memory_source: str | None = Field(None, description="The log lines gpuMemoryBytes was read from.")


class QuantSpeedPoint(ApiModel):
    """One output's speed at one concurrency of spec.evaluation.speed, against the unquantized model's."""

    concurrency: int = Field(..., ge=1, description="Parallel requests of the point.")
    output_tokens_per_second: float | None = Field(
        None, description="Output tok/s of the point (null when the point is invalid or not measured yet)."
    )
    valid: bool = Field(False, description="Whether the point was measured and valid.")
    speedup: float | None = Field(
        None,
        description="This output's tok/s over the base's at the same concurrency; null for the base itself "
        "and where either point is not a valid measurement (see reason).",
    )
    reason: str | None = Field(None, description="Why there is no tok/s or no speed-up, when there is none.")


class QuantVariantResult(ApiModel):
    """What one quantized output costs: size, time, quality against the unquantized model."""

    name: str = Field(..., description="Variant name, e.g. IQ4_XS or W4A16-G128.")
    path: str | None = Field(None, description="Where the output is (file or directory).")
    size_bytes: int | None = Field(None, ge=0, description="Size of the output on disk.")
    duration_seconds: float | None = Field(None, ge=0, description="Time the quantization took.")
    perplexity: float | None = Field(None, description="Perplexity on the evaluation text.")
    perplexity_error: float | None = Field(None, description="The +/- of the perplexity estimate.")
    kl_divergence: float | None = Field(None, description="Mean KL divergence against the base model.")
    scores: list[EvalScore] = Field(default_factory=list, description="Task scores, when evaluated.")
    quantization_config: dict[str, object] | None = Field(
        None, description="The saved quantization config (compressed-tensors), as recorded."
    )
    size_ratio: float | None = Field(
        None,
        ge=0,
        description="sizeBytes over the base's (its sizeBytes, else the model bytes its scoring run measured); "
        "null when either is unknown, and on the base itself.",
    )
    footprint: ServerFootprint | None = Field(
        None,
        description="The serving footprint its scoring run recorded (load time, model bytes, GPU memory): "
        "the scoring ServeBenchmark's status.footprint.",
    )
    speed: list[QuantSpeedPoint] = Field(
        default_factory=list,
        max_length=16,
        description="Output tok/s per concurrency of spec.evaluation.speed, with the speed-up against the base.",
    )
