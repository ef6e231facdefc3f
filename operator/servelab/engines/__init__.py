"""Engines: one module each, behind `servelab.engines.base.EngineAdapter`, found by the registry."""

from __future__ import annotations

# The API package first: loading it builds `servelab.api.engine.Engine`, which imports the registry
# (and through it every engine module) while this package is still initializing. Engine modules import
# only `servelab.api.base` and `servelab.engines.base` at run time, so that order is always safe.
import servelab.api.base  # noqa: F401
from servelab.engines.base import EngineAdapter, MetricNames, NoLocalBuild, ServedModel, ServerLaunch
from servelab.engines.registry import ENGINES, default_for_format, for_command, get

__all__ = [
    "ENGINES",
    "EngineAdapter",
    "MetricNames",
    "NoLocalBuild",
    "ServedModel",
    "ServerLaunch",
    "default_for_format",
    "for_command",
    "get",
]
