"""Load generators: one module each, behind `servelab.loadgen.base.LoadGenerator`."""

from __future__ import annotations

from servelab.loadgen.base import LoadGenerator, PointShape
from servelab.loadgen.evalscope import Evalscope
from servelab.loadgen.vllm_bench import VllmBench

GENERATORS: dict[str, type[LoadGenerator]] = {"evalscope": Evalscope, "vllm-bench": VllmBench}
DEFAULT = "evalscope"


def get(name: str, program: str | None = None) -> LoadGenerator:
    try:
        return GENERATORS[name](program)
    except KeyError:
        raise ValueError(f"unknown load generator {name!r}; known: {', '.join(GENERATORS)}") from None


__all__ = ["DEFAULT", "GENERATORS", "LoadGenerator", "PointShape", "get"]
