"""The inference engine a model is served with (shared by ServeBenchmark and QuantJob evaluation)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from servelab.api.base import ApiModel
from servelab.api.common import EnvVar, SecretKeyRef

EngineName = Literal["vllm", "sglang", "llamacpp"]


class SpeculativeDecoding(ApiModel):
    """Speculative decoding, rendered per engine (vLLM --speculative-config, SGLang --speculative-*,
    llama.cpp --model-draft/--draft-*)."""

    method: Literal["eagle", "eagle3", "mtp", "ngram", "draft-model", "nextn"] = Field(
        ..., description="Algorithm."
    )
    model: str | None = Field(None, max_length=512, description="Draft model (path or Hub id), where needed.")
    num_speculative_tokens: int | None = Field(
        None, ge=1, le=64, description="Tokens proposed per step (vLLM num_speculative_tokens)."
    )
    num_steps: int | None = Field(None, ge=1, le=64, description="SGLang --speculative-num-steps.")
    eagle_topk: int | None = Field(None, ge=1, le=64, description="SGLang --speculative-eagle-topk.")
    num_draft_tokens: int | None = Field(
        None, ge=1, le=256, description="SGLang --speculative-num-draft-tokens."
    )
    draft_tensor_parallel_size: int | None = Field(None, ge=1, le=64, description="vLLM draft TP size.")
    draft_max: int | None = Field(None, ge=1, le=256, description="llama.cpp --draft-max.")
    draft_min: int | None = Field(None, ge=0, le=256, description="llama.cpp --draft-min.")


class Engine(ApiModel):
    """The inference engine and its typed options. Free `extraArgs` are appended last."""

    __cel__ = [
        ("self.name == 'llamacpp' || !has(self.gpuLayers)",
         "spec.engine.gpuLayers is a llama.cpp option (engine.name: llamacpp)", ".gpuLayers"),
        ("self.name == 'llamacpp' || !has(self.parallelSlots)",
         "spec.engine.parallelSlots is a llama.cpp option (engine.name: llamacpp)", ".parallelSlots"),
        ("self.name != 'llamacpp' || self.tensorParallelSize == 1",
         "spec.engine.tensorParallelSize must be 1 for llamacpp (it splits layers with gpuLayers instead)",
         ".tensorParallelSize"),
    ]  # fmt: skip

    name: EngineName = Field(..., description="vllm, sglang or llamacpp.")
    image: str | None = Field(None, max_length=512, description="Server image (default per engine).")
    served_model_name: str | None = Field(
        None, max_length=256, description="Name clients use (--served-model-name / --alias)."
    )
    max_model_len: int | None = Field(
        None, ge=16, le=16777216, description="Context length (--max-model-len, --context-length, -c)."
    )
    tensor_parallel_size: int = Field(1, ge=1, le=64, description="Tensor-parallel GPUs.")
    gpu_memory_utilization: float | None = Field(
        None,
        gt=0,
        le=1,
        description="GPU memory fraction (--gpu-memory-utilization / --mem-fraction-static).",
    )
    quantization: str | None = Field(
        None,
        max_length=64,
        description="Engine quantization flag (fp8, awq, gptq, ...); usually auto-detected.",
    )
    dtype: Literal["auto", "bfloat16", "float16", "float32", "half"] | None = Field(
        None, description="--dtype."
    )
    kv_cache_dtype: str | None = Field(None, max_length=32, description="KV cache dtype (e.g. fp8).")
    speculative: SpeculativeDecoding | None = Field(None, description="Speculative decoding.")
    reasoning_parser: str | None = Field(None, max_length=64, description="--reasoning-parser.")
    tool_call_parser: str | None = Field(None, max_length=64, description="--tool-call-parser.")
    chat_template: str | None = Field(
        None, max_length=1024, description="Chat template path (or --jinja for llama.cpp: 'jinja')."
    )
    gpu_layers: int | None = Field(None, ge=-1, le=100000, description="llama.cpp -ngl.")
    parallel_slots: int | None = Field(None, ge=1, le=4096, description="llama.cpp -np (server slots).")
    trust_remote_code: bool = Field(False, description="--trust-remote-code.")
    enforce_eager: bool = Field(False, description="vLLM --enforce-eager.")
    api_key_secret_ref: SecretKeyRef | None = Field(None, description="Secret with the server's API key.")
    extra_args: list[str] = Field(default_factory=list, max_length=128, description="Extra server arguments.")
    env: list[EnvVar] = Field(default_factory=list, max_length=64, description="Extra server environment.")
    port: int | None = Field(None, ge=1, le=65535, description="Server port (default per engine).")


__all__ = ["Engine", "EngineName", "SpeculativeDecoding"]
