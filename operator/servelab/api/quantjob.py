"""QuantJob: quantize a model, then measure what the quantization cost."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from servelab.api.base import ApiModel
from servelab.api.common import (
    CommonStatus,
    DataSource,
    EnvVar,
    ModelSource,
    Placement,
    PvcSource,
    Resources,
    SecretKeyRef,
    cel,
)
from servelab.api.engine import Engine
from servelab.api.registries import COMPRESSOR_SCHEMES, EVALSCOPE_DATASETS, EVALSCOPE_VERSION
from servelab.api.results import QuantVariantResult
from servelab.api.verdict import Acceptance, Verdict

_SCHEMES = ", ".join(f"'{s}'" for s in COMPRESSOR_SCHEMES)
_DATASETS = ", ".join(f"'{d}'" for d in EVALSCOPE_DATASETS)

QuantMethod = Literal["gptq", "awq", "fp8-dynamic", "w8a8", "w4a8", "gguf"]
GgufType = Literal[
    "F32", "F16", "BF16", "Q8_0", "Q6_K", "Q5_K_M", "Q5_K_S", "Q5_0", "Q5_1", "Q4_K_M", "Q4_K_S",
    "Q4_0", "Q4_1", "Q3_K_L", "Q3_K_M", "Q3_K_S", "Q2_K", "Q2_K_S", "IQ4_NL", "IQ4_XS", "IQ3_M",
    "IQ3_S", "IQ3_XS", "IQ3_XXS", "IQ2_M", "IQ2_S", "IQ2_XS", "IQ2_XXS", "IQ1_M", "IQ1_S", "TQ1_0", "TQ2_0",
]  # fmt: skip


class CompressorOptions(ApiModel):
    """llm-compressor parameters (methods gptq, awq, fp8-dynamic, w8a8, w4a8)."""

    scheme: str | None = Field(
        None,
        max_length=64,
        description="Preset scheme of compressed-tensors (W4A16, W4A16_ASYM, W8A16, W8A8, W4A8, FP8_DYNAMIC, "
        "FP8, ...; any case). Default per method: gptq W4A16, awq W4A16_ASYM, fp8-dynamic FP8_DYNAMIC, "
        "w8a8 W8A8, w4a8 W4A8.",
        json_schema_extra=cel(
            (
                f"self.upperAscii() in [{_SCHEMES}]",
                "not a compressed-tensors preset scheme: one of " + ", ".join(COMPRESSOR_SCHEMES),
            )
        ),
    )
    bits: int | None = Field(None, ge=2, le=8, description="Weight bits, overriding the scheme's.")
    group_size: int | None = Field(
        None, ge=-1, le=4096, description="Weight group size (128 for W4A16 G128; -1 = per channel)."
    )
    symmetric: bool | None = Field(None, description="Symmetric weight quantization.")
    actorder: Literal["static", "group", "weight", "none"] | None = Field(
        None, description="GPTQ activation ordering."
    )
    dampening_frac: float | None = Field(None, gt=0, lt=1, description="GPTQ Hessian dampening fraction.")
    ignore: list[str] = Field(
        default_factory=lambda: ["lm_head"],
        max_length=64,
        description="Modules left unquantized (names or re: patterns).",
    )
    targets: list[str] = Field(
        default_factory=lambda: ["Linear"], max_length=16, description="Target modules."
    )


class GgufVariant(ApiModel):
    type: GgufType = Field(..., description="llama-quantize output type, e.g. IQ4_XS or Q4_K_M.")
    imatrix: bool | None = Field(
        None, description="Use the importance matrix for this type (default: gguf.imatrix)."
    )


class GgufOptions(ApiModel):
    """llama.cpp options (method gguf): convert, optional importance matrix, quantize."""

    outtype: Literal["f32", "f16", "bf16", "q8_0", "auto"] = Field(
        "f16", description="convert_hf_to_gguf.py --outtype of the base GGUF."
    )
    variants: list[GgufVariant] = Field(
        ...,
        min_length=1,
        max_length=16,
        description="Outputs to make, e.g. [{type: IQ4_XS}, {type: Q4_K_M}]; each type once.",
        json_schema_extra=cel(
            (
                "self.all(v, self.exists_one(w, w.type == v.type))",
                "each type may appear only once (two variants of one type would be one file)",
            )
        ),
    )
    imatrix: bool = Field(
        True,
        description="Compute an importance matrix on the calibration text and use it (per-variant override).",
    )
    imatrix_chunks: int | None = Field(None, ge=1, description="llama-imatrix --chunks.")
    leave_output_tensor: bool = Field(False, description="llama-quantize --leave-output-tensor.")
    keep_base: bool = Field(True, description="Keep the unquantized base GGUF among the outputs.")
    extra_args: list[str] = Field(
        default_factory=list, max_length=32, description="Extra llama-quantize arguments."
    )


class Calibration(ApiModel):
    source: DataSource = Field(
        ..., description="Calibration data (text, jsonl with text/messages, or data set)."
    )
    num_samples: int = Field(512, ge=1, le=100000, description="Samples used.")
    max_seq_length: int = Field(2048, ge=16, le=1048576, description="Tokens per sample.")
    apply_chat_template: bool = Field(True, description="Render `messages` samples with the chat template.")


class OutputLocation(ApiModel):
    """Where the quantized model goes: exactly one of pvc or path."""

    __cel__ = [
        ("[has(self.pvc), has(self.path)].filter(x, x).size() == 1", "set exactly one of pvc or path", None),
    ]  # fmt: skip

    pvc: PvcSource | None = Field(None, description="A directory on a PersistentVolumeClaim.")
    path: str | None = Field(None, max_length=1024, description="A local directory (local runs).")


class PerplexityEval(ApiModel):
    text: DataSource = Field(..., description="Text to measure perplexity on (e.g. wiki.test.raw).")
    context_size: int = Field(512, ge=16, le=1048576, description="Tokens per chunk (-c).")
    chunks: int | None = Field(None, ge=1, description="Chunks to evaluate (default: the whole text).")
    kl_divergence: bool = Field(False, description="Also measure KL divergence against the base model.")


class EvalscopeDataset(ApiModel):
    name: str = Field(
        ...,
        min_length=1,
        max_length=128,
        description=f"evalscope data set, e.g. math_500 (a name of evalscope {EVALSCOPE_VERSION}'s registry; "
        "general_qa / general_mcq with localPath for your own data).",
        json_schema_extra=cel(
            (
                f"self in [{_DATASETS}]",
                f"not an evalscope {EVALSCOPE_VERSION} data set (the list is in docs/api.md, 'Names servelab pins')",
            )
        ),
    )
    local_path: str | None = Field(None, max_length=1024, description="Local copy of the data set.")
    subsets: list[str] = Field(default_factory=list, max_length=64, description="Subsets to run.")
    metrics: list[str] = Field(default_factory=list, max_length=16, description="Metrics (e.g. Rouge).")
    few_shot: int | None = Field(None, ge=0, le=64, description="Few-shot examples.")


class GenerationConfig(ApiModel):
    max_tokens: int | None = Field(None, ge=1, le=1048576)
    temperature: float | None = Field(None, ge=0, le=10)
    top_p: float | None = Field(None, gt=0, le=1)
    top_k: int | None = Field(None, ge=-1)
    seed: int | None = None


class Evaluation(ApiModel):
    """An evalscope eval run against the served model."""

    name: str | None = Field(None, max_length=63, description="Name of this evaluation (default: eval-<i>).")
    datasets: list[EvalscopeDataset] = Field(..., min_length=1, max_length=32, description="Data sets.")
    limit: int | None = Field(None, ge=1, description="Samples per data set (all when unset).")
    batch_size: int = Field(8, ge=1, le=4096, description="Concurrent requests (--eval-batch-size).")
    generation: GenerationConfig | None = Field(None, description="Generation settings.")
    timeout_seconds: int | None = Field(None, ge=1, description="Time limit of this evaluation.")


class QuantSpeed(ApiModel):
    """A short load sweep each scoring server also runs (random prompts of promptTokens, outputTokens
    generated per request, end of sequence ignored), so each output's output tok/s, and its speed-up
    against the unquantized model at the same concurrency, land in status (write-up 002's 推理速度)."""

    __cel__ = [
        ("size(self.concurrency) == size(self.requests)",
         "spec.evaluation.speed.requests must have one entry per spec.evaluation.speed.concurrency", ".requests"),
    ]  # fmt: skip

    concurrency: list[Annotated[int, Field(ge=1, le=4096)]] = Field(
        ..., min_length=1, max_length=16, description="Concurrency of each point, e.g. [1, 8]."
    )
    requests: list[Annotated[int, Field(ge=1, le=100000)]] = Field(
        ..., min_length=1, max_length=16, description="Requests of each point (same length as concurrency)."
    )
    prompt_tokens: int = Field(128, ge=1, le=1048576, description="Prompt tokens of each request.")
    output_tokens: int = Field(128, ge=1, le=1048576, description="Tokens generated by each request.")
    point_timeout_seconds: int = Field(1800, ge=10, le=86400, description="Time limit of one point.")


class QuantEvaluation(ApiModel):
    """What quantization cost: perplexity (and KL divergence) on a text, and task scores of each output
    served by an engine and evaluated with evalscope, next to the unquantized model's; with speed, each
    scoring server's output tok/s and the speed-up against the unquantized model."""

    __cel__ = [
        ("!has(self.engine) || has(self.evalscope)",
         "spec.evaluation.engine is only used with spec.evaluation.evalscope", ".engine"),
        ("!has(self.variants) || size(self.variants) == 0 || has(self.evalscope)",
         "spec.evaluation.variants is only used with spec.evaluation.evalscope", ".variants"),
        ("!has(self.speed) || has(self.evalscope)",
         "spec.evaluation.speed runs in the scoring servers: it needs spec.evaluation.evalscope", ".speed"),
        ("!has(self.speed) || !has(self.includeBase) || self.includeBase",
         "spec.evaluation.speed is measured against the unquantized model: it needs "
         "spec.evaluation.includeBase true", ".speed"),
    ]  # fmt: skip

    perplexity: PerplexityEval | None = Field(None, description="Perplexity of base and quantized model.")
    evalscope: Evaluation | None = Field(
        None,
        description="Task scores: after quantizing, each output (and the base model, see includeBase) is "
        "served by `engine` in a child ServeBenchmark and evaluated; scores land in status.variants[].scores "
        "and status.base.scores.",
    )
    engine: Engine | None = Field(
        None,
        description="How outputs are served for evalscope (default: llamacpp for method gguf, vllm otherwise).",
    )
    include_base: bool = Field(
        True, description="Also score the unquantized model (the F16 GGUF, or the source model)."
    )
    variants: list[Annotated[str, Field(max_length=64)]] = Field(
        default_factory=list,
        max_length=32,
        description="Outputs to score, by name (e.g. IQ4_XS); default: every output.",
    )
    server_ready_seconds: int = Field(
        1800, ge=10, le=86400, description="Time each scoring server has to become ready."
    )
    speed: QuantSpeed | None = Field(
        None,
        description="A load sweep each scoring server also runs: output tok/s per concurrency in "
        "status.variants[].speed and status.base.speed, with each variant's speed-up against the base "
        "(needs evalscope and includeBase).",
    )


class Images(ApiModel):
    quantize: str | None = Field(None, max_length=512, description="Image of the quantize worker.")
    llamacpp: str | None = Field(None, max_length=512, description="Image with llama.cpp's tools.")
    evalscope: str | None = Field(None, max_length=512, description="Image of the evalscope worker.")
    server: str | None = Field(None, max_length=512, description="Engine server image.")
    pull_policy: Literal["Always", "IfNotPresent", "Never"] | None = None


class QuantJobSpec(ApiModel):
    __cel__ = [
        ("!has(self.gguf) || self.method == 'gguf'",
         "spec.gguf is only valid with spec.method: gguf", ".gguf"),
        ("self.method != 'gguf' || has(self.gguf)",
         "spec.method gguf requires spec.gguf (at least gguf.variants)", ".gguf"),
        ("!has(self.compressor) || self.method != 'gguf'",
         "spec.compressor is only valid with the llm-compressor methods (gptq, awq, fp8-dynamic, w8a8, w4a8)",
         ".compressor"),
        ("self.method in ['fp8-dynamic'] || (self.method == 'gguf' && has(self.gguf) && !self.gguf.imatrix && self.gguf.variants.all(v, !has(v.imatrix) || !v.imatrix)) || has(self.calibration)",
         "spec.calibration is required by this spec.method (all but fp8-dynamic and gguf without imatrix)",
         ".calibration"),
        # a GGUF QuantJob's outputs are its variant types (named TYPE or TYPE+imatrix) and the F16 base
        ("self.method != 'gguf' || !has(self.gguf) || !has(self.evaluation) || !has(self.evaluation.variants) || "
         "self.evaluation.variants.all(n, n.lowerAscii() == 'f16' || self.gguf.variants.exists(v, "
         "n.lowerAscii() == v.type.lowerAscii() || n.lowerAscii() == v.type.lowerAscii() + '+imatrix'))",
         "spec.evaluation.variants must name outputs this QuantJob makes (a spec.gguf.variants type, or F16)",
         ".evaluation.variants"),
        # the quantizers convert a whole repository (config, tokenizer, weights), never one file of it
        ("!has(self.model.huggingFace) || !has(self.model.huggingFace.file)",
         "spec.model.huggingFace.file is not used by a QuantJob: it quantizes the whole repository",
         ".model.huggingFace.file"),
    ]  # fmt: skip

    model: ModelSource = Field(..., description="The model to quantize.")
    method: QuantMethod = Field(..., description="gptq, awq, fp8-dynamic, w8a8, w4a8 or gguf.")
    compressor: CompressorOptions | None = Field(None, description="llm-compressor parameters.")
    gguf: GgufOptions | None = Field(None, description="llama.cpp parameters (method gguf).")
    calibration: Calibration | None = Field(None, description="Calibration data.")
    output: OutputLocation = Field(..., description="Where the quantized model goes.")
    evaluation: QuantEvaluation | None = Field(None, description="How to measure what quantization cost.")
    resources: Resources | None = Field(None, description="GPUs, CPU and memory of the quantize pod.")
    acceptance: Acceptance | None = Field(
        None, description="What each output may cost against the unquantized model (the gate)."
    )
    placement: Placement | None = Field(None, description="Node selection for the quantize pod.")
    images: Images | None = Field(None, description="Image overrides.")
    hf_token_secret_ref: SecretKeyRef | None = Field(None, description="Secret with a Hugging Face token.")
    env: list[EnvVar] = Field(default_factory=list, max_length=64, description="Extra environment.")
    timeout_seconds: int = Field(21600, ge=60, le=604800, description="Time limit of the whole job.")
    backoff_limit: int = Field(0, ge=0, le=10, description="Retries of the quantize Job.")


class QuantJobSummary(ApiModel):
    best_variant: str | None = Field(None, description="Variant with the lowest perplexity.")
    headline: str | None = Field(None, description="One-line result for kubectl get.")
    output_bytes: int | None = Field(None, ge=0, description="Total size of the outputs.")


class QuantJobStatus(CommonStatus):
    model: str | None = Field(None, description="Resolved model name.")
    output: str | None = Field(None, description="Resolved output location.")
    base: QuantVariantResult | None = Field(None, description="The unquantized model's measurements.")
    variants: list[QuantVariantResult] = Field(default_factory=list, max_length=32, description="Outputs.")
    summary: QuantJobSummary | None = None
    verdict: Verdict | None = Field(None, description="The gate's outcome: every check and whether it held.")
    provenance: dict[str, str] = Field(
        default_factory=dict, description="Images, versions, node, GPU product."
    )
