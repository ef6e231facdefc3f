"""The engine interface: everything servelab knows about one inference engine, in one class.

One module per engine defines an `EngineAdapter` subclass and names it `ADAPTER`; the registry
(`servelab.engines.registry`) imports the built-in modules and those named in `SERVELAB_ENGINE_MODULES`.
An adapter owns: the server command line (typed options, then `extraArgs`), its port, health and
metrics endpoints and Prometheus sample names, its typed per-engine options (`spec.engine.<name>`)
and their CEL rules, the flags it sets itself (refused in `extraArgs`), how clients must connect,
which model formats it serves and whether it fetches Hub models itself, and the command that runs it
on this machine (`local_command`).

This module imports nothing of `servelab.api` at run time: `servelab.api.engine` builds the `Engine`
model from the registry while the API package loads.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from servelab.api.base import ApiModel
    from servelab.api.engine import Engine

Options = TypeVar("Options", bound="ApiModel")
CelRule = tuple[str, str, str]  # (rule on the engine object, message, fieldPath)


@dataclass(frozen=True)
class ServedModel:
    """What the engine loads: a path or Hub id, plus an optional separate tokenizer."""

    location: str
    tokenizer: str | None = None
    name: str = "model"  # what clients call it when the spec sets no servedModelName, if the engine allows
    # a Hugging Face Hub source (`location` is then its repository id): the revision to pin, and the one
    # file of it to serve (model.huggingFace.revision / .file; the engine's `hub_revision` / `hub_file`)
    from_hub: bool = False
    revision: str | None = None
    hub_file: str | None = None
    # a ModelScope repository the engine fetches itself (`location` is its id; the adapter's
    # `modelscope_env` switch is set; `revision` pins it)
    from_modelscope: bool = False


@dataclass(frozen=True)
class ServerLaunch:
    """A rendered server: the same for a local process and a pod's container."""

    command: list[str]
    env: dict[str, str]
    port: int
    health_path: str
    metrics_path: str | None
    served_model_name: str
    needs_shm: bool
    secret_env: dict[str, tuple[str, str]] = field(default_factory=dict)  # env name -> (secret, key)


@dataclass(frozen=True)
class MetricNames:
    """The engine's Prometheus sample names whose deltas add up to each `ServerMetrics` figure (samples
    of one name are summed over their labels; several names of one figure are added)."""

    prompt_tokens: tuple[str, ...] = ()
    generation_tokens: tuple[str, ...] = ()
    requests: tuple[str, ...] = ()
    ttft_sum: tuple[str, ...] = ()
    ttft_count: tuple[str, ...] = ()
    # gauges sampled during a point: requests the server is serving, and those it holds in its queue
    running: tuple[str, ...] = ()
    waiting: tuple[str, ...] = ()

    def all(self) -> set[str]:
        return {
            *self.prompt_tokens,
            *self.generation_tokens,
            *self.requests,
            *self.ttft_sum,
            *self.ttft_count,
            *self.running,
            *self.waiting,
        }


class NoLocalBuild(RuntimeError):
    """The engine has no build on this machine (it runs in a cluster only)."""


class EngineAdapter(ABC):
    name: str  # spec.engine.name, and the key of the per-engine options (spec.engine.<name>)
    title: str = ""  # for messages and docs ("llama.cpp"); defaults to name
    default_port: int
    default_image: str
    health_path: str = "/health"
    metrics_path: str | None = "/metrics"
    metric_names: MetricNames = MetricNames()
    # a GET path and bytes its 200 body contains: tells the engine apart when /metrics says nothing
    fingerprint: tuple[str, bytes] | None = None
    needs_shm: bool = True
    # clients must send `Connection: close` (llama-server closes streamed connections it advertised as
    # keep-alive: reusing them fails at concurrency)
    connection_close: bool = False
    # the server takes vLLM's sampling extensions in a request (`ignore_eos`, `min_tokens`); False: it
    # refuses fields outside OpenAI's schema (transformers serve: HTTP 422) or ignores them (Ollama), so
    # clients send neither and outputs end at EOS or max_tokens (`plan.compile_benchmark` reads this)
    honors_ignore_eos: bool = True
    # `/v1/models` lists the model the server serves (transformers serve lists the Hub cache instead, not
    # the model it is pinned to): the perf worker checks the served name there only when True
    lists_served_model: bool = True
    # model formats served, the native one first: a QuantJob scores its outputs with the engine whose
    # native format they are (`servelab.engines.default_for_format`)
    model_formats: tuple[str, ...] = ("safetensors",)
    # the server pins a Hub revision (model.huggingFace.revision) / serves one file of a Hub repository
    # (model.huggingFace.file); a spec asking for one the engine cannot do is refused at admission
    hub_revision: bool = False
    hub_file: bool = False
    # the environment switch (name, value) that makes the server fetch model ids from ModelScope instead
    # of the Hugging Face Hub (vLLM's VLLM_USE_MODELSCOPE, SGLang's SGLANG_USE_MODELSCOPE); None: a
    # model.modelScope source is downloaded by a step before the server starts (plan.model_step)
    modelscope_env: tuple[str, str] | None = None
    # program names (basename of argv[0]) of the server command: maps a container's command to its engine
    programs: tuple[str, ...] = ()
    # flags the adapter sets itself (from typed fields): `extraArgs` naming one is refused at admission
    owned_flags: tuple[str, ...] = ("--host", "--port")
    # typed per-engine options, `spec.engine.<name>` (None: the engine has none)
    options: type[ApiModel] | None = None

    @abstractmethod
    def args(self, engine: Engine, model: ServedModel, host: str, port: int) -> list[str]:
        """The full command line (program and arguments), typed options first, extraArgs last."""

    def local_command(self, command: list[str]) -> tuple[list[str], dict[str, str]]:
        """The argv and environment that run `command` (as `args` rendered it for the image) on this
        machine; NoLocalBuild where there is none."""
        raise NoLocalBuild(
            f"engine {self.name} has no local build: run it in a cluster (command: {' '.join(command[:3])} ...)"
        )

    def concurrency_limit(
        self, root_url: str | None, command: list[str] | None
    ) -> tuple[int | None, str | None]:
        """How many requests the server serves at a time, as the server states it (read from `root_url`
        when it says) or its command sets it, and what sets it (e.g. "llama-server -np 1 (total_slots
        1)"); (None, None) when the engine says nothing of it."""
        return None, None

    def owns(self, command: list[str]) -> bool:
        """Whether `command` is this engine's server command (a container's command in a local pod)."""
        return bool(command) and Path(command[0]).name in self.programs

    def cel_rules(self) -> list[CelRule]:
        """CEL rules on the engine object: options only for this engine, no operator-owned flags in
        extraArgs, plus `engine_rules` (engine-specific constraints on the shared fields)."""
        label = self.title or self.name
        rules: list[CelRule] = []
        if self.options is not None:
            rules.append((
                f"self.name == '{self.name}' || !has(self.{self.name})",
                f"engine.{self.name} holds {label} options: only valid with engine.name: {self.name}",
                f".{self.name}",
            ))  # fmt: skip
        if self.owned_flags:
            listed = ", ".join(f"'{f}'" for f in self.owned_flags)
            rules.append((
                f"self.name != '{self.name}' || !has(self.extraArgs) || "
                f"!self.extraArgs.exists(a, [{listed}].exists(f, a == f || a.startsWith(f + '=')))",
                f"engine.extraArgs must not set {', '.join(self.owned_flags)}: the operator sets them for {label}",
                ".extraArgs",
            ))  # fmt: skip
        return rules + self.engine_rules()

    def engine_rules(self) -> list[CelRule]:
        return []

    def options_of(self, engine: Engine, model: type[Options]) -> Options:
        """The engine's typed options (`spec.engine.<name>`), defaults when unset."""
        value = getattr(engine, self.name, None)
        return value if isinstance(value, model) else model()

    def default_served_name(self, model: ServedModel) -> str:
        """The name the server answers to when the spec sets no servedModelName: vLLM and SGLang register
        the model under the path or Hub id they were given."""
        return model.location

    def gpu_memory(self, log: str) -> tuple[int, str] | None:
        """GPU memory the server reports having taken for the model, from its log: (bytes, the lines read);
        None where its log says nothing of it (`status.footprint.gpuMemoryBytes` stays null)."""
        return None

    def env(self, engine: Engine) -> dict[str, str]:
        return {e.name: e.value for e in engine.env}

    def secret_env(self, engine: Engine) -> dict[str, tuple[str, str]]:
        return {}

    def launch(
        self, engine: Engine, model: ServedModel, host: str = "0.0.0.0", port: int | None = None
    ) -> ServerLaunch:
        port = port or engine.port or self.default_port
        env = self.env(engine)
        if model.from_modelscope and self.modelscope_env:  # spec.engine.env may still override it
            env = {self.modelscope_env[0]: self.modelscope_env[1], **env}
        return ServerLaunch(
            command=self.args(engine, model, host, port),
            env=env,
            port=port,
            health_path=self.health_path,
            metrics_path=self.metrics_path,
            served_model_name=engine.served_model_name or self.default_served_name(model),
            needs_shm=self.needs_shm,
            secret_env=self.secret_env(engine),
        )


def flag_value(command: list[str] | None, *names: str) -> str | None:
    """The value of the last of `names` in a command line (`--name V` or `--name=V`), or None."""
    value = None
    args = list(command or [])
    for i, arg in enumerate(args):
        for name in names:
            if arg == name and i + 1 < len(args):
                value = args[i + 1]
            elif arg.startswith(name + "="):
                value = arg.split("=", 1)[1]
    return value


def get_json(url: str, timeout: float = 5.0) -> object | None:
    """GET a JSON document (the server's own statement of its settings), None when it does not answer."""
    import json
    import urllib.request

    from servelab.workers.common import auth_headers

    try:
        request = urllib.request.Request(url, headers=auth_headers())
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            data: object = json.loads(resp.read())
            return data
    except (OSError, ValueError):
        return None


def flag(args: list[str], name: str, value: object | None) -> None:
    """Append `name value` when value is set (bools: the bare flag when True)."""
    if value is None or value is False:
        return
    if value is True:
        args.append(name)
    else:
        args += [name, str(value)]


GIB = 1 << 30
MIB = 1 << 20
# llama.cpp's buffer sizes (llama-server; Ollama's runner logs the same): a device's model weights, KV cache
# and compute buffers; CPU, CPU_Mapped and CUDA_Host are host memory
_LLAMA_BUFFER = re.compile(
    r"(?P<dev>(?:CUDA|ROCm|Vulkan|Metal|MTL|SYCL)\d*) (?P<kind>model|KV|compute) buffer size =\s*(?P<mib>[0-9.]+) MiB"
)


def llama_gpu_memory(log: str) -> tuple[int, str] | None:
    """llama.cpp's GPU buffers (model + KV + compute) summed from its log, the last load only."""
    found: dict[tuple[str, str], float] = {}
    for m in _LLAMA_BUFFER.finditer(log):
        found[(m["dev"], m["kind"])] = float(m["mib"])  # a reload logs them again: the last one counts
    if not found:
        return None
    lines = ", ".join(f"{dev} {kind} buffer {mib:.2f} MiB" for (dev, kind), mib in sorted(found.items()))
    return int(sum(found.values()) * MIB), f"server log: {lines}"


def last_match(pattern: str, log: str) -> re.Match[str] | None:
    matches = list(re.finditer(pattern, log))
    return matches[-1] if matches else None
