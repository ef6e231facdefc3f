"""The engine interface: how a typed Engine spec becomes a server process or container.

One module per engine implements `EngineAdapter`; `servelab.engines.get(name)` finds it. Adding an
engine is one module (registered in `servelab.engines.ENGINES`) and one test.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

from servelab.api.engine import Engine


@dataclass(frozen=True)
class ServedModel:
    """What the engine loads: a path or Hub id, plus an optional separate tokenizer."""

    location: str
    tokenizer: str | None = None
    name: str = "model"  # what clients call it when the spec sets no servedModelName, if the engine allows


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


class EngineAdapter(ABC):
    name: str
    default_port: int
    default_image: str
    health_path: str = "/health"
    metrics_path: str | None = "/metrics"
    needs_shm: bool = True

    @abstractmethod
    def args(self, engine: Engine, model: ServedModel, host: str, port: int) -> list[str]:
        """The full command line (program and arguments), typed options first, extraArgs last."""

    def default_served_name(self, model: ServedModel) -> str:
        """The name the server answers to when the spec sets no servedModelName: vLLM and SGLang register
        the model under the path or Hub id they were given."""
        return model.location

    def env(self, engine: Engine) -> dict[str, str]:
        return {e.name: e.value for e in engine.env}

    def secret_env(self, engine: Engine) -> dict[str, tuple[str, str]]:
        return {}

    def launch(
        self, engine: Engine, model: ServedModel, host: str = "0.0.0.0", port: int | None = None
    ) -> ServerLaunch:
        port = port or engine.port or self.default_port
        return ServerLaunch(
            command=self.args(engine, model, host, port),
            env=self.env(engine),
            port=port,
            health_path=self.health_path,
            metrics_path=self.metrics_path,
            served_model_name=engine.served_model_name or self.default_served_name(model),
            needs_shm=self.needs_shm,
            secret_env=self.secret_env(engine),
        )


def flag(args: list[str], name: str, value: object | None) -> None:
    """Append `name value` when value is set (bools: the bare flag when True)."""
    if value is None or value is False:
        return
    if value is True:
        args.append(name)
    else:
        args += [name, str(value)]
