"""The inference engine a model is served with (shared by ServeBenchmark and QuantJob evaluation)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from pydantic import Field, create_model

from servelab.api.base import ApiModel
from servelab.api.common import EnvVar, SecretKeyRef
from servelab.engines import registry

# extraArgs items are bounded so the CEL rules over them stay within the apiserver's cost budget
ExtraArg = Annotated[str, Field(max_length=4096)]


class SpeculativeDecoding(ApiModel):
    """Speculative decoding, rendered per engine (vLLM --speculative-config, SGLang --speculative-*,
    llama.cpp --spec-type/-md/--spec-draft-n-*); a method or option the engine cannot run is refused."""

    method: Literal["eagle", "eagle3", "mtp", "ngram", "draft-model", "nextn"] = Field(
        ...,
        description="Algorithm. vLLM: eagle, eagle3 and draft-model need `model`; SGLang: eagle3 and "
        "draft-model; llama.cpp (--spec-type): draft-model and eagle3 need `model` (a GGUF), mtp/nextn use "
        "the model's own MTP layers, ngram is ngram-mod, eagle is not supported.",
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
    draft_max: int | None = Field(
        None, ge=1, le=256, description="llama.cpp --spec-draft-n-max (ngram: --spec-ngram-mod-n-max)."
    )
    draft_min: int | None = Field(
        None, ge=0, le=256, description="llama.cpp --spec-draft-n-min (ngram: --spec-ngram-mod-n-min)."
    )


class EngineFields(ApiModel):
    """The fields every engine shares; `Engine` adds the registered names and per-engine options."""

    __cel__: ClassVar[list[tuple[str, str, str]]] = []  # `Engine`'s: every adapter's rules

    name: str = Field(..., description="The engine (one of the registered engines).")
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
    trust_remote_code: bool = Field(False, description="--trust-remote-code.")
    api_key_secret_ref: SecretKeyRef | None = Field(None, description="Secret with the server's API key.")
    extra_args: list[ExtraArg] = Field(
        default_factory=list,
        max_length=128,
        description="Extra server arguments, appended last (not the flags the operator sets itself).",
    )
    env: list[EnvVar] = Field(default_factory=list, max_length=64, description="Extra server environment.")
    port: int | None = Field(None, ge=1, le=65535, description="Server port (default per engine).")


def _engine_model() -> type[EngineFields]:
    """`Engine`: the shared fields, `name` narrowed to the registered engines, one optional options
    sub-object per engine that has options (`engine.<name>`), and every adapter's CEL rules."""
    adapters = [registry.get(n) for n in registry.ENGINES]
    names = tuple(a.name for a in adapters)
    fields: dict[str, Any] = {"name": (Literal[names], Field(..., description=", ".join(names) + "."))}
    for a in adapters:
        if a.options is not None:
            title = a.title or a.name
            fields[a.name] = (
                a.options | None,
                Field(None, description=f"{title} options (engine.name: {a.name})."),
            )
    model = create_model(
        "Engine",
        __base__=EngineFields,
        __module__=__name__,
        __doc__="The inference engine and its typed options (shared ones, then `<engine name>: {...}`). "
        "Free `extraArgs` are appended last.",
        **fields,
    )
    model.__cel__ = [rule for a in adapters for rule in a.cel_rules()]
    return model


if TYPE_CHECKING:
    Engine = EngineFields
    EngineName = str
else:
    Engine = _engine_model()
    EngineName = Literal[tuple(registry.ENGINES)]

__all__ = ["Engine", "EngineFields", "EngineName", "SpeculativeDecoding"]
