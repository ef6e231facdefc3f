"""What makes two load sweeps comparable: the workload fields of `servelab.verdict.WORKLOAD_FIELDS` (the
ones a baseline comparison refuses to mix), read from a spec with its defaults, and said in a few words.

Kept free of heavy imports: the operator's metrics label each benchmark with `describe()`."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from servelab.api.servebenchmark import ServeBenchmarkSpec
from servelab.verdict import WORKLOAD_FIELDS, workload


def of_spec(spec: dict[str, Any] | None) -> dict[str, Any] | None:
    """The workload of a ServeBenchmark spec (wire form) with its defaults; None without spec.load."""
    if not spec or not spec.get("load"):
        return None
    try:
        return workload(ServeBenchmarkSpec.model_validate(spec).to_wire())
    except ValidationError:  # a spec of another servelab version: compare what it says
        return workload(spec)


def describe(w: dict[str, Any] | None) -> str:
    """The workload in a few words, e.g. `evalscope chat random in=1024 out=1024 ignoreEos`."""
    if w is None:
        return "no load sweep"
    words = [str(w.get("generator") or "evalscope"), str(w.get("endpoint") or "chat"), str(w.get("dataset"))]
    if w.get("datasetPath"):
        words.append(str(w["datasetPath"]))
    lo, hi = w.get("minPromptLength"), w.get("maxPromptLength")
    words.append(f"in={hi}" if lo == hi else f"in={lo}..{hi}")
    out_lo, out_hi = w.get("minTokens"), w.get("maxTokens")
    words.append(f"out={out_hi}" if out_lo in (None, out_hi) else f"out={out_lo}..{out_hi}")
    if w.get("prefixLength"):
        words.append(f"prefix={w['prefixLength']}")
    if w.get("ignoreEos"):
        words.append("ignoreEos")
    if w.get("temperature") is not None:
        words.append(f"temperature={w['temperature']:g}")
    if w.get("rate") is not None:
        words.append(f"rate={w['rate']:g}/s")
    return " ".join(words)


def differences(a: dict[str, Any] | None, b: dict[str, Any] | None) -> list[str]:
    """Why two workloads are not comparable, field by field (empty: they are)."""
    if a is None or b is None:
        return [] if a is b else ["one has no load sweep"]
    return [f"{k}: {a.get(k)!r} vs {b.get(k)!r}" for k in WORKLOAD_FIELDS if a.get(k) != b.get(k)]


__all__ = ["describe", "differences", "of_spec"]
