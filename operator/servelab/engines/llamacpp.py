"""llama.cpp: `llama-server -m MODEL.gguf ...` (/health is 503 while loading; /metrics with --metrics)."""

from __future__ import annotations

from servelab.api.engine import Engine
from servelab.engines.base import EngineAdapter, ServedModel, flag


class LlamaCpp(EngineAdapter):
    name = "llamacpp"
    default_port = 8080
    default_image = "ghcr.io/ggml-org/llama.cpp:server-cuda"
    needs_shm = False

    def __init__(self, program: str = "llama-server") -> None:
        self.program = program

    def default_served_name(self, model: ServedModel) -> str:
        return model.name  # llama-server answers to any model name

    def args(self, engine: Engine, model: ServedModel, host: str, port: int) -> list[str]:
        a = [self.program, "-m", model.location]
        flag(a, "-c", engine.max_model_len)
        flag(a, "-ngl", engine.gpu_layers)
        flag(a, "-np", engine.parallel_slots)
        flag(a, "--alias", engine.served_model_name)
        if engine.chat_template == "jinja":
            a.append("--jinja")
        else:
            flag(a, "--chat-template-file", engine.chat_template)
        flag(a, "-ctk", engine.kv_cache_dtype)
        flag(a, "-ctv", engine.kv_cache_dtype)
        if engine.speculative:
            s = engine.speculative
            flag(a, "-md", s.model)
            flag(a, "--draft-max", s.draft_max or s.num_speculative_tokens)
            flag(a, "--draft-min", s.draft_min)
        a += ["--host", host, "--port", str(port), "--metrics"]
        return a + list(engine.extra_args)

    def secret_env(self, engine: Engine) -> dict[str, tuple[str, str]]:
        ref = engine.api_key_secret_ref
        return {"LLAMA_API_KEY": (ref.name, ref.key)} if ref else {}
