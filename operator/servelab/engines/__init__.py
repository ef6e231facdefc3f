"""Engines: one module each, behind `servelab.engines.base.EngineAdapter`."""

from __future__ import annotations

from servelab.engines.base import EngineAdapter, ServedModel, ServerLaunch
from servelab.engines.llamacpp import LlamaCpp
from servelab.engines.sglang import Sglang
from servelab.engines.vllm import Vllm

ENGINES: dict[str, type[EngineAdapter]] = {"vllm": Vllm, "sglang": Sglang, "llamacpp": LlamaCpp}


def get(name: str) -> EngineAdapter:
    try:
        return ENGINES[name]()
    except KeyError:
        raise ValueError(f"unknown engine {name!r}; known: {', '.join(ENGINES)}") from None


__all__ = ["ENGINES", "EngineAdapter", "ServedModel", "ServerLaunch", "get"]
