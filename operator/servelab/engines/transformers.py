"""Hugging Face Transformers: `transformers serve MODEL ...`, Transformers' own OpenAI-compatible server
(transformers 5.23, the `serving` extra: /v1/chat/completions, /v1/completions, /v1/responses,
/v1/models, /health; no /metrics).

The server is pinned to the model it is started with (the positional argument): it answers to that
path or Hub id and to requests that name no model, and refuses any other name (HTTP 400), so it has no
served-model name of its own. Without `--continuous-batching` it generates one request at a time
(`model.generate()` on one inference thread: the write-up's "static batching" baseline); with it, a
paged-attention scheduler batches requests as they arrive (`--cb-*` tune its KV cache). Its request
validation refuses fields outside OpenAI's schema (HTTP 422), so clients send neither `ignore_eos` nor
`min_tokens` (`honors_ignore_eos = False`): outputs end at EOS or max_tokens.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from servelab.api.base import ApiModel
from servelab.engines.base import CelRule, EngineAdapter, ServedModel, ServerLaunch, flag, flag_value

if TYPE_CHECKING:
    from servelab.api.engine import Engine


class TransformersOptions(ApiModel):
    """Transformers-only options (`engine.transformers`, with engine.name: transformers)."""

    continuous_batching: bool = Field(
        False,
        description="--continuous-batching: paged-attention continuous batching (default: one at a time).",
    )
    device: str | None = Field(
        None, max_length=32, pattern=r"^(auto|cpu|mps|cuda(:[0-9]+)?)$",
        description="--device (auto, cpu, cuda, cuda:N, mps; default auto).",
    )  # fmt: skip
    attn_implementation: str | None = Field(
        None, max_length=128, description="--attn-implementation (eager, sdpa, flash_attention_2, ...)."
    )
    compile: bool = Field(False, description="--compile: torch.compile the model.")
    cb_block_size: int | None = Field(
        None, ge=1, le=4096, description="--cb-block-size (tokens per KV block)."
    )
    cb_num_blocks: int | None = Field(None, ge=1, le=16777216, description="--cb-num-blocks (KV blocks).")
    cb_max_batch_tokens: int | None = Field(
        None, ge=1, le=16777216, description="--cb-max-batch-tokens (tokens per batch)."
    )
    cb_max_memory_percent: float | None = Field(
        None, gt=0, le=1, description="--cb-max-memory-percent (GPU memory fraction for the KV cache)."
    )
    reasoning: Literal["on", "off", "auto"] | None = Field(
        None, description="--reasoning (enable_thinking in the chat template; default auto)."
    )


class Transformers(EngineAdapter):
    name = "transformers"
    title = "Transformers"
    default_port = 8000
    default_image = "servelab/transformers:5.23.0"
    metrics_path = None  # transformers serve has no Prometheus endpoint
    honors_ignore_eos = False
    lists_served_model = False  # its /v1/models lists the Hub cache, not the model it is pinned to
    model_formats = ("safetensors",)
    programs = ("transformers",)
    owned_flags = ("--host", "--port")
    options = TransformersOptions

    def engine_rules(self) -> list[CelRule]:
        unsupported = (
            ("servedModelName", "transformers serve answers only to the model path or Hub id it serves"),
            ("maxModelLen", "transformers serve has no context-length flag"),
            ("speculative", "transformers serve has no speculative decoding"),
            ("reasoningParser", "transformers serve parses reasoning itself (engine.transformers.reasoning)"),
            ("toolCallParser", "transformers serve parses tool calls itself"),
            ("kvCacheDtype", "transformers serve has no KV cache dtype flag"),
            ("gpuMemoryUtilization", "use engine.transformers.cbMaxMemoryPercent"),
            ("chatTemplate", "transformers serve uses the tokenizer's chat template"),
            ("apiKeySecretRef", "transformers serve has no API key"),
        )
        rules: list[CelRule] = [
            (f"self.name != 'transformers' || !has(self.{field})",
             f"engine.{field} is not supported with engine.name: transformers ({why})", f".{field}")
            for field, why in unsupported
        ]  # fmt: skip
        rules += [
            ("self.name != 'transformers' || self.tensorParallelSize == 1",
             "engine.tensorParallelSize must be 1 for transformers (transformers serve runs one process)",
             ".tensorParallelSize"),
            ("self.name != 'transformers' || !has(self.quantization) || "
             "self.quantization in ['bnb-4bit', 'bnb-8bit']",
             "engine.quantization must be bnb-4bit or bnb-8bit for transformers (other checkpoints are "
             "detected from their config)", ".quantization"),
        ]  # fmt: skip
        return rules

    def args(self, engine: Engine, model: ServedModel, host: str, port: int) -> list[str]:
        opts = self.options_of(engine, TransformersOptions)
        a = ["transformers", "serve", model.location]
        flag(a, "--continuous-batching", opts.continuous_batching)
        flag(a, "--device", opts.device)
        flag(a, "--dtype", engine.dtype)
        flag(a, "--attn-implementation", opts.attn_implementation)
        flag(a, "--compile", opts.compile)
        flag(a, "--quantization", engine.quantization)
        flag(a, "--trust-remote-code", engine.trust_remote_code)
        flag(a, "--reasoning", opts.reasoning)
        flag(a, "--cb-block-size", opts.cb_block_size)
        flag(a, "--cb-num-blocks", opts.cb_num_blocks)
        flag(a, "--cb-max-batch-tokens", opts.cb_max_batch_tokens)
        flag(a, "--cb-max-memory-percent", opts.cb_max_memory_percent)
        a += ["--host", host, "--port", str(port), "--log-level", "info"]
        return a + list(engine.extra_args)

    def launch(
        self, engine: Engine, model: ServedModel, host: str = "0.0.0.0", port: int | None = None
    ) -> ServerLaunch:
        """Clients name the model by what the server was started with (servedModelName is refused)."""
        return replace(super().launch(engine, model, host, port), served_model_name=model.location)

    def concurrency_limit(
        self, root_url: str | None, command: list[str] | None
    ) -> tuple[int | None, str | None]:
        """Without --continuous-batching, one request at a time (sequential `model.generate()` on one
        inference thread; the rest wait); with it, the scheduler's KV blocks and --cb-max-batch-tokens
        bound it, and the server states no number."""
        if command is None:
            return None, None
        if "--continuous-batching" in command:
            tokens = flag_value(command, "--cb-max-batch-tokens")
            return None, "transformers serve --continuous-batching" + (
                f" --cb-max-batch-tokens {tokens}" if tokens else ""
            )
        return 1, "transformers serve without --continuous-batching (sequential generate)"

    def local_command(self, command: list[str]) -> tuple[list[str], dict[str, str]]:
        """`transformers serve ...` of the `transformers` worker environment (images/transformers), same
        arguments; offline, on CPU here."""
        from servelab.toolchain import envs

        env = envs.worker_environ(None)
        env.pop("PYTHONPATH", None)  # the server needs nothing of servelab's
        # its /v1/models scans the Hub cache and fails (HTTP 500) when the directory does not exist
        hub = Path(
            env.get("HF_HUB_CACHE") or Path(env.get("HF_HOME") or Path.home() / ".cache/huggingface") / "hub"
        )
        hub.mkdir(parents=True, exist_ok=True)
        return [str(envs.env_bin("transformers", "transformers")), *command[1:]], env


ADAPTER = Transformers
