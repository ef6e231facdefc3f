"""vLLM: `vllm serve MODEL ...` (OpenAI server on one port: /health, /v1/*, /metrics)."""

from __future__ import annotations

import json

from servelab.api.engine import Engine
from servelab.engines.base import EngineAdapter, ServedModel, flag


class Vllm(EngineAdapter):
    name = "vllm"
    default_port = 8000
    default_image = "vllm/vllm-openai:v0.11.0"

    def args(self, engine: Engine, model: ServedModel, host: str, port: int) -> list[str]:
        a = ["vllm", "serve", model.location]
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
        flag(a, "--enforce-eager", engine.enforce_eager)
        a += ["--host", host, "--port", str(port)]
        return a + list(engine.extra_args)

    def secret_env(self, engine: Engine) -> dict[str, tuple[str, str]]:
        ref = engine.api_key_secret_ref
        return {"VLLM_API_KEY": (ref.name, ref.key)} if ref else {}
