"""Result metrics are rebuilt from status, with bounded labels, and removed with the resource.

The registry is process-wide (other tests' operators may have filled it), so every check here looks
only at this test's own namespace."""

from __future__ import annotations

import re

import pytest
from prometheus_client import generate_latest

from servelab.controller import metrics

pytestmark = pytest.mark.unit
NS = "unit-metrics"


def body(name: str, tps: float, valid: bool = True) -> dict[str, object]:
    return {
        "metadata": {"namespace": NS, "name": name},
        "spec": {"engine": {"name": "llamacpp"}},
        "status": {
            "phase": "Succeeded", "engine": "llamacpp", "model": "/m/tiny-IQ4_XS.gguf", "quantization": "IQ4_XS",
            "results": [{"concurrency": 4, "requests": 8, "succeeded": 8, "successRate": 1.0, "outputTokensPerSecond": tps,
                         "avgTtftSeconds": 0.02, "p99TtftSeconds": 0.05, "valid": valid}],
            "scores": [{"dataset": "general_qa", "metric": "Rouge-L-F", "subset": "example", "score": 0.12}],
        },
    }  # fmt: skip


def ours(name: str) -> list[str]:
    text = generate_latest(metrics.REGISTRY).decode()
    return [line for line in text.splitlines() if f'namespace="{NS}"' in line and f'name="{name}"' in line]


def succeeded_count() -> float:
    text = generate_latest(metrics.REGISTRY).decode()
    m = re.search(r'servelab_resources{kind="ServeBenchmark",phase="Succeeded"} ([0-9.]+)', text)
    return float(m.group(1)) if m else 0.0


def test_rebuilt_from_status_and_forgotten() -> None:
    before = succeeded_count()
    metrics.observe("ServeBenchmark", body("a", 321.5))
    labels = f'concurrency="4",engine="llamacpp",model="/m/tiny-IQ4_XS.gguf",name="a",namespace="{NS}",quantization="IQ4_XS"'
    lines = ours("a")
    assert f"servelab_load_output_tokens_per_second{{{labels}}} 321.5" in lines
    assert f'servelab_load_ttft_seconds{{{labels},statistic="p99"}} 0.05' in lines
    assert any(line.startswith('servelab_eval_score{dataset="general_qa"') for line in lines)
    assert succeeded_count() == before + 1
    metrics.observe("ServeBenchmark", body("a", 400.0))  # a new status replaces the old series
    assert f"servelab_load_output_tokens_per_second{{{labels}}} 400.0" in ours("a")
    assert succeeded_count() == before + 1
    metrics.forget("ServeBenchmark", NS, "a")
    assert ours("a") == [] and succeeded_count() == before


def test_invalid_points_are_not_exported() -> None:
    metrics.observe("ServeBenchmark", body("b", 999.0, valid=False))
    assert not [line for line in ours("b") if line.startswith("servelab_load_")]
    assert [line for line in ours("b") if line.startswith("servelab_eval_score")]  # scores still are
    metrics.forget("ServeBenchmark", NS, "b")
