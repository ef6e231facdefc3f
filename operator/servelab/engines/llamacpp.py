"""llama.cpp: `llama-server -m MODEL.gguf ...` (/health is 503 while loading; /metrics with --metrics)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from pydantic import Field

from servelab.api.base import ApiModel
from servelab.engines.base import (
    CelRule,
    EngineAdapter,
    MetricNames,
    ServedModel,
    flag,
    flag_value,
    get_json,
    llama_gpu_memory,
)

if TYPE_CHECKING:
    from servelab.api.engine import Engine


# speculative.method -> the pinned llama-server's --spec-type (eagle, EAGLE-1, is refused at admission)
SPEC_TYPES = {"draft-model": "draft-simple", "eagle3": "draft-eagle3",
              "mtp": "draft-mtp", "nextn": "draft-mtp", "ngram": "ngram-mod"}  # fmt: skip


class LlamaCppOptions(ApiModel):
    """llama.cpp-only options (`engine.llamacpp`, with engine.name: llamacpp)."""

    gpu_layers: int | None = Field(None, ge=-1, le=100000, description="-ngl: layers offloaded to GPUs.")
    parallel_slots: int | None = Field(None, ge=1, le=4096, description="-np: server slots.")


class LlamaCpp(EngineAdapter):
    name = "llamacpp"
    title = "llama.cpp"
    default_port = 8080
    default_image = "ghcr.io/ggml-org/llama.cpp:server-cuda"
    needs_shm = False
    # `--metrics`: prompt_tokens_total excludes cached prompt tokens; no request counter, no TTFT histogram
    metric_names = MetricNames(
        prompt_tokens=("llamacpp:prompt_tokens_total", "llamacpp:prompt_tokens_cached_total"),
        generation_tokens=("llamacpp:tokens_predicted_total",),
        running=("llamacpp:requests_processing",),
        waiting=("llamacpp:requests_deferred",),
    )
    fingerprint = ("/props", b"default_generation_settings")
    connection_close = True
    model_formats = ("gguf",)
    hub_file = True  # --hf-repo ID --hf-file FILE; llama-server pins no revision (it takes the main branch)
    programs = ("llama-server",)
    owned_flags = ("--host", "--port", "-m", "--model", "-a", "--alias", "-hf", "-hfr", "--hf-repo", "-hff",
                   "--hf-file")  # fmt: skip
    options = LlamaCppOptions

    def __init__(self, program: str = "llama-server") -> None:
        self.program = program

    def engine_rules(self) -> list[CelRule]:
        return [(
            "self.name != 'llamacpp' || self.tensorParallelSize == 1",
            "engine.tensorParallelSize must be 1 for llamacpp (it splits layers with llamacpp.gpuLayers instead)",
            ".tensorParallelSize",
        ), (
            "self.name != 'llamacpp' || (!has(self.gpuMemoryUtilization) && !has(self.quantization) && "
            "!has(self.dtype) && !has(self.reasoningParser) && !has(self.toolCallParser) && "
            "(!has(self.trustRemoteCode) || !self.trustRemoteCode))",
            "engine.gpuMemoryUtilization, quantization, dtype, reasoningParser, toolCallParser and "
            "trustRemoteCode have no llama-server equivalent (a GGUF file fixes its types; see engine.extraArgs)",
            "",
        ), (
            # llama-server (the pinned release's --spec-type): draft-simple and draft-eagle3 need a draft
            # model (-md), draft-mtp uses the model's own MTP layers, ngram-mod none; no EAGLE-1
            "self.name != 'llamacpp' || !has(self.speculative) || (self.speculative.method != 'eagle' && "
            "(has(self.speculative.model) || !(self.speculative.method in ['draft-model', 'eagle3'])))",
            "engine.speculative on llamacpp: method eagle is not supported (use eagle3, draft-model, mtp or "
            "ngram), and draft-model and eagle3 need speculative.model (a draft GGUF path)",
            ".speculative",
        ), (
            "self.name != 'llamacpp' || !has(self.speculative) || (!has(self.speculative.numSteps) && "
            "!has(self.speculative.eagleTopk) && !has(self.speculative.numDraftTokens) && "
            "!has(self.speculative.draftTensorParallelSize))",
            "engine.speculative.numSteps, eagleTopk, numDraftTokens and draftTensorParallelSize are not "
            "llamacpp options (use draftMax, draftMin)",
            ".speculative",
        )]  # fmt: skip

    def default_served_name(self, model: ServedModel) -> str:
        return model.name  # llama-server answers to any model name

    def gpu_memory(self, log: str) -> tuple[int, str] | None:
        # CUDA0 model/KV/compute buffer sizes: llama-server prints them at -lv 4 only; none on CPU
        return llama_gpu_memory(log)

    def args(self, engine: Engine, model: ServedModel, host: str, port: int) -> list[str]:
        opts = self.options_of(engine, LlamaCppOptions)
        if model.from_hub:  # llama-server downloads the GGUF itself (HF_TOKEN from the environment)
            a = [self.program, "--hf-repo", model.location]
            flag(a, "--hf-file", model.hub_file)
        else:
            a = [self.program, "-m", model.location]
        flag(a, "-c", engine.max_model_len)
        flag(a, "-ngl", opts.gpu_layers)
        flag(a, "-np", opts.parallel_slots)
        flag(a, "--alias", engine.served_model_name)
        if engine.chat_template == "jinja":
            a.append("--jinja")
        else:
            flag(a, "--chat-template-file", engine.chat_template)
        flag(a, "-ctk", engine.kv_cache_dtype)
        flag(a, "-ctv", engine.kv_cache_dtype)
        if engine.speculative:
            s = engine.speculative
            a += ["--spec-type", SPEC_TYPES.get(s.method, s.method)]
            flag(a, "-md", s.model)
            ngram = "ngram-mod" if s.method == "ngram" else "draft"  # --spec-{ngram-mod,draft}-n-{max,min}
            flag(a, f"--spec-{ngram}-n-max", s.draft_max or s.num_speculative_tokens)
            flag(a, f"--spec-{ngram}-n-min", s.draft_min)
        a += ["--host", host, "--port", str(port), "--metrics"]
        return a + list(engine.extra_args)

    def secret_env(self, engine: Engine) -> dict[str, tuple[str, str]]:
        ref = engine.api_key_secret_ref
        return {"LLAMA_API_KEY": (ref.name, ref.key)} if ref else {}

    def concurrency_limit(
        self, root_url: str | None, command: list[str] | None
    ) -> tuple[int | None, str | None]:
        """llama-server serves `total_slots` requests at a time (/props; set by -np/--parallel or
        LLAMA_ARG_N_PARALLEL, default -1 = auto = 4 slots in the pinned release); the rest wait
        (`llamacpp:requests_deferred`)."""
        value = flag_value(command, "-np", "--parallel")
        setting = f"llama-server -np {value}" if value else "llama-server's default -np (auto: 4 slots)"
        props = get_json(root_url.rstrip("/") + "/props") if root_url else None
        slots = props.get("total_slots") if isinstance(props, dict) else None
        if isinstance(slots, int) and slots > 0:
            return slots, f"{setting} (total_slots {slots})"
        if value and value.lstrip("-").isdigit() and int(value) > 0:
            return int(value), setting
        return (4, setting) if command is not None and not value else (None, None)

    def local_command(self, command: list[str]) -> tuple[list[str], dict[str, str]]:
        """The CPU build of llama-server (servelab.toolchain.llamacpp), same arguments."""
        from servelab.toolchain import llamacpp

        return [str(llamacpp.tool("llama-server")), *command[1:]], dict(os.environ)


ADAPTER = LlamaCpp
