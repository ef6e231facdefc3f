"""MLX-LM: `mlx_lm.server --model MODEL ...` (mlx-lm 0.32, write-up 003), an OpenAI-compatible server on MLX
(/v1/chat/completions, /v1/completions, /v1/models, /health; no /metrics).

MLX is Apple's array framework: on Apple silicon it runs on the GPU through Metal, which needs macOS, so in
a cluster this engine is for Apple-silicon nodes only (a macOS node a Kubernetes scheduler can place a
server on; Linux containers, Apple silicon or not, get MLX's CPU backend). `mlx[cpu]` is MLX's CPU build
for Linux: that is what runs here (the `mlx` worker environment), for tests and local runs.

The server loads the model named by --model and answers to that path (or `default_model`); another name
in a request is looked up on the Hub, so it has no served-model name of its own. It batches requests
(up to --decode-concurrency decoding, --prompt-concurrency prefilling; 32 and 8 by default; --kv-bits
turns batching off). It ignores `ignore_eos` and `min_tokens` (outputs end at EOS or max_tokens).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from pydantic import Field

from servelab.api.base import ApiModel
from servelab.engines.base import CelRule, EngineAdapter, ServedModel, ServerLaunch, flag, flag_value

if TYPE_CHECKING:
    from servelab.api.engine import Engine


class MlxOptions(ApiModel):
    """MLX-LM-only options (`engine.mlx`, with engine.name: mlx)."""

    decode_concurrency: int | None = Field(
        None, ge=1, le=4096, description="--decode-concurrency: requests decoded together (MLX-LM: 32)."
    )
    prompt_concurrency: int | None = Field(
        None, ge=1, le=4096, description="--prompt-concurrency: prompts prefilled together (MLX-LM: 8)."
    )
    prefill_step_size: int | None = Field(None, ge=1, le=1048576, description="--prefill-step-size.")
    prompt_cache_size: int | None = Field(
        None, ge=0, le=65536, description="--prompt-cache-size (KV caches kept)."
    )
    kv_bits: int | None = Field(
        None, ge=2, le=8, description="--kv-bits: quantized KV cache (turns batching off)."
    )
    max_tokens: int | None = Field(
        None, ge=1, le=16777216, description="--max-tokens: default output limit (MLX-LM: 512)."
    )


class Mlx(EngineAdapter):
    name = "mlx"
    title = "MLX-LM"
    default_port = 8080
    default_image = "servelab/mlx:0.32.2"
    metrics_path = None  # mlx_lm.server has no Prometheus endpoint
    needs_shm = False
    honors_ignore_eos = False
    model_formats = ("safetensors",)
    programs = ("mlx_lm.server",)
    owned_flags = ("--host", "--port", "--model")
    options = MlxOptions

    def engine_rules(self) -> list[CelRule]:
        unsupported = (
            ("servedModelName", "mlx_lm.server answers to the model path it loads"),
            ("maxModelLen", "mlx_lm.server has no context-length flag"),
            ("reasoningParser", "mlx_lm.server has no reasoning parser flag"),
            ("toolCallParser", "mlx_lm.server parses tool calls itself"),
            ("quantization", "MLX models carry their quantization"),
            ("dtype", "MLX models carry their types"),
            ("kvCacheDtype", "use engine.mlx.kvBits"),
            ("gpuMemoryUtilization", "MLX sizes its own memory"),
            ("apiKeySecretRef", "mlx_lm.server has no API key"),
        )
        rules: list[CelRule] = [
            (f"self.name != 'mlx' || !has(self.{field})",
             f"engine.{field} is not supported with engine.name: mlx ({why})", f".{field}")
            for field, why in unsupported
        ]  # fmt: skip
        rules += [
            ("self.name != 'mlx' || self.tensorParallelSize == 1",
             "engine.tensorParallelSize must be 1 for mlx", ".tensorParallelSize"),
            ("self.name != 'mlx' || !has(self.speculative) || self.speculative.method == 'draft-model'",
             "engine.speculative for mlx: only method draft-model (--draft-model, --num-draft-tokens)",
             ".speculative"),
        ]  # fmt: skip
        return rules

    def args(self, engine: Engine, model: ServedModel, host: str, port: int) -> list[str]:
        opts = self.options_of(engine, MlxOptions)
        a = ["mlx_lm.server", "--model", model.location]
        if engine.speculative:
            flag(a, "--draft-model", engine.speculative.model)
            flag(a, "--num-draft-tokens", engine.speculative.num_speculative_tokens)
        flag(a, "--chat-template", engine.chat_template)
        flag(a, "--trust-remote-code", engine.trust_remote_code)
        flag(a, "--decode-concurrency", opts.decode_concurrency)
        flag(a, "--prompt-concurrency", opts.prompt_concurrency)
        flag(a, "--prefill-step-size", opts.prefill_step_size)
        flag(a, "--prompt-cache-size", opts.prompt_cache_size)
        flag(a, "--kv-bits", opts.kv_bits)
        flag(a, "--max-tokens", opts.max_tokens)
        a += ["--host", host, "--port", str(port)]
        return a + list(engine.extra_args)

    def launch(
        self, engine: Engine, model: ServedModel, host: str = "0.0.0.0", port: int | None = None
    ) -> ServerLaunch:
        """Clients name the model by its path (servedModelName is refused)."""
        return replace(super().launch(engine, model, host, port), served_model_name=model.location)

    def concurrency_limit(
        self, root_url: str | None, command: list[str] | None
    ) -> tuple[int | None, str | None]:
        """MLX-LM decodes up to --decode-concurrency requests together (default 32); --kv-bits serves
        one at a time."""
        if command is None:
            return None, None
        if flag_value(command, "--kv-bits"):
            return 1, "mlx_lm.server --kv-bits (no batching)"
        value = flag_value(command, "--decode-concurrency")
        if value and value.isdigit():
            return int(value), f"mlx_lm.server --decode-concurrency {value}"
        return 32, "MLX-LM's default --decode-concurrency (32)"

    def local_command(self, command: list[str]) -> tuple[list[str], dict[str, str]]:
        """`mlx_lm.server ...` of the `mlx` worker environment (images/mlx: MLX's CPU build), same
        arguments, offline."""
        from servelab.toolchain import envs

        env = envs.worker_environ(None)
        env.pop("PYTHONPATH", None)
        return [str(envs.env_bin("mlx", "mlx_lm.server")), *command[1:]], env


ADAPTER = Mlx
