"""The engine registry: the built-in engine modules, then those named in `SERVELAB_ENGINE_MODULES`.

`SERVELAB_ENGINE_MODULES` is a comma-separated list of module names (importable from sys.path) or
paths of `.py` files; each module defines an `EngineAdapter` subclass and names it `ADAPTER`. The list
is read once, when this module is first imported, which is before `servelab.api.engine` builds the
`Engine` model (its `name` enum, per-engine option fields and CEL rules come from here) — so an engine
added this way is in the API, the CRDs, the plans and the local executor alike.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

from servelab.engines.base import EngineAdapter

BUILTIN = (
    "servelab.engines.vllm",
    "servelab.engines.sglang",
    "servelab.engines.llamacpp",
    "servelab.engines.transformers",
    "servelab.engines.ollama",
    "servelab.engines.mlx",
)
ENV_VAR = "SERVELAB_ENGINE_MODULES"


def _import(ref: str) -> ModuleType:
    if not ref.endswith(".py"):
        return importlib.import_module(ref)
    path = Path(ref).resolve()
    name = f"servelab_engine_{path.stem}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"{ENV_VAR}: cannot load {ref}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def module_refs() -> list[str]:
    extra = [m.strip() for m in os.environ.get(ENV_VAR, "").split(",") if m.strip()]
    return [*BUILTIN, *extra]


def _load() -> dict[str, type[EngineAdapter]]:
    found: dict[str, type[EngineAdapter]] = {}
    for ref in module_refs():
        adapter = getattr(_import(ref), "ADAPTER", None)
        if not (isinstance(adapter, type) and issubclass(adapter, EngineAdapter)):
            raise ImportError(f"engine module {ref} names no EngineAdapter subclass as ADAPTER")
        if adapter.name in found:
            raise ImportError(f"engine {adapter.name!r} of {ref} is already registered")
        found[adapter.name] = adapter
    return found


ENGINES: dict[str, type[EngineAdapter]] = _load()


def get(name: str) -> EngineAdapter:
    try:
        return ENGINES[name]()
    except KeyError:
        raise ValueError(f"unknown engine {name!r}; known: {', '.join(ENGINES)}") from None


def for_command(command: list[str]) -> EngineAdapter | None:
    """The engine whose server command `command` is (None: not an engine's)."""
    return next((a for a in map(get, ENGINES) if a.owns(command)), None)


def default_for_format(model_format: str) -> str:
    """The engine to serve a model of `model_format` when the spec names none: the first registered
    engine whose native format it is, else the first that serves it."""
    adapters = [get(n) for n in ENGINES]
    native = [a.name for a in adapters if a.model_formats[:1] == (model_format,)]
    serving = [a.name for a in adapters if model_format in a.model_formats]
    if native or serving:
        return (native or serving)[0]
    raise ValueError(f"no registered engine serves {model_format} models")
