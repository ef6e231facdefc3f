"""Ollama (0.17): `ollama serve`, with the GGUF imported by `ollama create NAME -f Modelfile` once the
server answers; clients use its OpenAI-compatible API (/v1/chat/completions, /v1/models).

The server command is a short POSIX shell script (`sh -c`) around the real `ollama` commands, because an
import needs a running server: it writes the Modelfile (`FROM <model>.gguf` plus
`engine.ollama.modelfile` lines), starts `ollama serve` on OLLAMA_HOST, waits for it, runs `ollama
create`, and then waits on the server (TERM/INT are passed on to it). Ready means the model answers at
`/v1/models/<name>` (404 until the import has finished). Concurrency and memory settings are Ollama's
environment variables: OLLAMA_NUM_PARALLEL (default 1: one request at a time per model), OLLAMA_CONTEXT_LENGTH
(from engine.maxModelLen), OLLAMA_KEEP_ALIVE, OLLAMA_MAX_QUEUE, OLLAMA_FLASH_ATTENTION,
OLLAMA_KV_CACHE_TYPE (from engine.kvCacheDtype), passed to the script as K=V arguments (so they show in
the command and its provenance); `engine.env` is the container's environment as for every engine, and
`engine.extraArgs` are more `ollama create` arguments (e.g. `--quantize q8_0`). Ollama has no Prometheus endpoint, does not honour
`ignore_eos` or `min_tokens` (outputs end at EOS or max_tokens), and names models `name:tag` (`:latest`
when the spec's name has no tag).
"""

from __future__ import annotations

import os
from dataclasses import replace
from typing import TYPE_CHECKING

from pydantic import Field

from servelab.api.base import ApiModel
from servelab.engines.base import CelRule, EngineAdapter, ServedModel, ServerLaunch, llama_gpu_memory

if TYPE_CHECKING:
    from servelab.api.engine import Engine

VERSION = "0.17.4"

# $0 a label; $1 OLLAMA_HOST, $2 model name, $3 model file; then Ollama's settings (K=V) up to `--`, the
# Modelfile's lines after FROM up to `--`, and the rest: more `ollama create` arguments (engine.extraArgs)
SCRIPT = r"""set -u
export OLLAMA_HOST="$1"; name="$2"; model="$3"; shift 3
while [ "$#" -gt 0 ] && [ "$1" != "--" ]; do export "$1"; shift; done; shift
modelfile=$(mktemp); printf 'FROM %s\n' "$model" > "$modelfile"
while [ "$#" -gt 0 ] && [ "$1" != "--" ]; do printf '%s\n' "$1" >> "$modelfile"; shift; done; shift
ollama serve & pid=$!
trap 'kill -TERM "$pid" 2>/dev/null; wait "$pid"; exit 143' TERM INT
until ollama list >/dev/null 2>&1; do kill -0 "$pid" 2>/dev/null || exit 1; sleep 0.5; done
ollama create "$name" -f "$modelfile" "$@" || { kill -TERM "$pid"; wait "$pid"; exit 1; }
wait "$pid"
"""


class OllamaOptions(ApiModel):
    """Ollama-only options (`engine.ollama`, with engine.name: ollama)."""

    num_parallel: int | None = Field(
        None,
        ge=1,
        le=1024,
        description="OLLAMA_NUM_PARALLEL: requests served at a time per model (Ollama: 1).",
    )
    keep_alive: str | None = Field(
        None, max_length=16, pattern=r"^(-1|0|[0-9]+(\.[0-9]+)?(ms|s|m|h))$",
        description="OLLAMA_KEEP_ALIVE: how long the model stays loaded after a request (e.g. 5m, 24h; -1: "
        "forever).",
    )  # fmt: skip
    max_queue: int | None = Field(None, ge=1, le=1048576, description="OLLAMA_MAX_QUEUE: requests queued.")
    flash_attention: bool | None = Field(None, description="OLLAMA_FLASH_ATTENTION.")
    gpu_layers: int | None = Field(None, ge=0, le=100000, description="Modelfile PARAMETER num_gpu.")
    modelfile: list[str] = Field(
        default_factory=list, max_length=32,
        description="More Modelfile lines after FROM (PARAMETER, TEMPLATE, SYSTEM ...).",
    )  # fmt: skip


class Ollama(EngineAdapter):
    name = "ollama"
    title = "Ollama"
    default_port = 11434
    default_image = "ollama/ollama:0.17.4"
    health_path = "/api/version"  # each launch names its model: /v1/models/<name>
    metrics_path = None  # Ollama has no Prometheus endpoint
    fingerprint = ("/api/version", b'"version"')
    needs_shm = False
    honors_ignore_eos = False
    model_formats = ("gguf",)
    programs = ("ollama",)
    owned_flags = ("--host", "--port")
    options = OllamaOptions

    def engine_rules(self) -> list[CelRule]:
        unsupported = (
            ("speculative", "Ollama has no speculative decoding"),
            ("reasoningParser", "Ollama parses reasoning itself"),
            ("toolCallParser", "Ollama parses tool calls itself"),
            ("chatTemplate", "use a TEMPLATE line in engine.ollama.modelfile"),
            ("quantization", "Ollama serves the GGUF's own quantization"),
            ("dtype", "Ollama serves the GGUF's own types"),
            ("gpuMemoryUtilization", "Ollama sizes its own memory"),
            ("apiKeySecretRef", "Ollama has no API key"),
        )
        rules: list[CelRule] = [
            (f"self.name != 'ollama' || !has(self.{field})",
             f"engine.{field} is not supported with engine.name: ollama ({why})", f".{field}")
            for field, why in unsupported
        ]  # fmt: skip
        rules += [
            ("self.name != 'ollama' || self.tensorParallelSize == 1",
             "engine.tensorParallelSize must be 1 for ollama (it splits layers itself)", ".tensorParallelSize"),
            ("self.name != 'ollama' || !has(self.servedModelName) || "
             "self.servedModelName.matches('^[a-zA-Z0-9][a-zA-Z0-9_.-]*(:[a-zA-Z0-9_.-]+)?$')",
             "engine.servedModelName must be an Ollama model name (name or name:tag; letters, digits, _ . -)",
             ".servedModelName"),
        ]  # fmt: skip
        return rules

    def default_served_name(self, model: ServedModel) -> str:
        return model.name

    @staticmethod
    def tagged(name: str) -> str:
        """Ollama's name for a model: `name:latest` when the name has no tag."""
        return name if ":" in name else f"{name}:latest"

    def settings(self, engine: Engine) -> dict[str, str]:
        """Ollama's typed settings, its environment variables (exported by the script: they show in the
        command and in provenance)."""
        opts = self.options_of(engine, OllamaOptions)
        typed = {
            "OLLAMA_NUM_PARALLEL": opts.num_parallel,
            "OLLAMA_CONTEXT_LENGTH": engine.max_model_len,
            "OLLAMA_KEEP_ALIVE": opts.keep_alive,
            "OLLAMA_MAX_QUEUE": opts.max_queue,
            "OLLAMA_FLASH_ATTENTION": None
            if opts.flash_attention is None
            else str(opts.flash_attention).lower(),
            "OLLAMA_KV_CACHE_TYPE": engine.kv_cache_dtype,
        }
        return {k: str(v) for k, v in typed.items() if v is not None}

    def gpu_memory(self, log: str) -> tuple[int, str] | None:
        return llama_gpu_memory(
            log
        )  # its llama.cpp runner logs the device buffer sizes into the server's log

    def args(self, engine: Engine, model: ServedModel, host: str, port: int) -> list[str]:
        opts = self.options_of(engine, OllamaOptions)
        served = self.tagged(engine.served_model_name or self.default_served_name(model))
        settings = [f"{k}={v}" for k, v in self.settings(engine).items()]
        lines = [f"PARAMETER num_gpu {opts.gpu_layers}"] if opts.gpu_layers is not None else []
        return ["sh", "-c", SCRIPT, "ollama-serve", f"{host}:{port}", served, model.location, *settings, "--",
                *lines, *opts.modelfile, "--", *engine.extra_args]  # fmt: skip

    def launch(
        self, engine: Engine, model: ServedModel, host: str = "0.0.0.0", port: int | None = None
    ) -> ServerLaunch:
        launch = super().launch(engine, model, host, port)
        served = self.tagged(launch.served_model_name)
        return replace(launch, served_model_name=served, health_path=f"/v1/models/{served}")

    def owns(self, command: list[str]) -> bool:
        return super().owns(command) or (command[:2] == ["sh", "-c"] and len(command) > 3
                                         and command[3] == "ollama-serve")  # fmt: skip

    def concurrency_limit(
        self, root_url: str | None, command: list[str] | None
    ) -> tuple[int | None, str | None]:
        """Ollama serves OLLAMA_NUM_PARALLEL requests at a time per loaded model (default 1); the rest wait
        in its queue (OLLAMA_MAX_QUEUE)."""
        if command is None:
            return None, None
        value = next((a.split("=", 1)[1] for a in command if a.startswith("OLLAMA_NUM_PARALLEL=")), None)
        if value and value.isdigit():
            return int(value), f"ollama OLLAMA_NUM_PARALLEL={value}"
        return 1, "Ollama's default OLLAMA_NUM_PARALLEL (1)"

    def local_command(self, command: list[str]) -> tuple[list[str], dict[str, str]]:
        """The same script, with this machine's build of Ollama (hack/build-ollama.sh) first on PATH and its
        models under the servelab cache (OLLAMA_MODELS, unless set)."""
        from servelab.toolchain import ollama

        env = dict(os.environ)
        env["PATH"] = os.pathsep.join([str(ollama.ensure_ollama().parent), env.get("PATH", "")])
        env.setdefault("OLLAMA_MODELS", str(ollama.models_dir()))
        env.setdefault("OLLAMA_NOPRUNE", "1")
        return list(command), env


ADAPTER = Ollama
