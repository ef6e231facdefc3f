"""Result metrics are rebuilt from status, with bounded labels, and removed with the resource."""

from __future__ import annotations

import pytest
from prometheus_client import generate_latest

from servelab.controller import metrics

pytestmark = pytest.mark.unit


def body(name: str, tps: float, valid: bool = True) -> dict[str, object]:
    return {
        "metadata": {"namespace": "ns", "name": name},
        "spec": {"engine": {"name": "llamacpp"}},
        "status": {
            "phase": "Succeeded", "engine": "llamacpp", "model": "/m/tiny-IQ4_XS.gguf", "quantization": "IQ4_XS",
            "results": [{"concurrency": 4, "requests": 8, "succeeded": 8, "successRate": 1.0, "outputTokensPerSecond": tps,
                         "avgTtftSeconds": 0.02, "p99TtftSeconds": 0.05, "valid": valid}],
            "scores": [{"dataset": "general_qa", "metric": "Rouge-L-F", "subset": "example", "score": 0.12}],
        },
    }  # fmt: skip


def scrape() -> str:
    return generate_latest(metrics.REGISTRY).decode()


def test_rebuilt_from_status_and_forgotten() -> None:
    metrics.observe("ServeBenchmark", body("a", 321.5))
    text = scrape()
    labels = 'concurrency="4",engine="llamacpp",model="/m/tiny-IQ4_XS.gguf",name="a",namespace="ns",quantization="IQ4_XS"'
    assert f"servelab_load_output_tokens_per_second{{{labels}}} 321.5" in text
    assert f'servelab_load_ttft_seconds{{{labels},statistic="p99"}} 0.05' in text
    assert 'servelab_eval_score{dataset="general_qa"' in text
    assert 'servelab_resources{kind="ServeBenchmark",phase="Succeeded"} 1.0' in text
    metrics.observe("ServeBenchmark", body("a", 400.0))  # a new status replaces the old series
    assert f"servelab_load_output_tokens_per_second{{{labels}}} 400.0" in scrape()
    metrics.forget("ServeBenchmark", "ns", "a")
    assert 'name="a"' not in scrape()


def test_invalid_points_are_not_exported() -> None:
    metrics.observe("ServeBenchmark", body("b", 999.0, valid=False))
    assert 'servelab_load_output_tokens_per_second{' not in scrape().split("# TYPE servelab_load_requests")[0].split(
        "# TYPE servelab_load_output_tokens_per_second gauge")[1]  # fmt: skip
    metrics.forget("ServeBenchmark", "ns", "b")
