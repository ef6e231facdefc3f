"""The `mlx` engine (MLX-LM's mlx_lm.server): its command line, what it refuses, its concurrency."""

from __future__ import annotations

import pytest

from servelab.api.engine import Engine
from servelab.api.validate import SpecError, validate_resource
from servelab.engines import ServedModel, get

pytestmark = pytest.mark.unit


def test_command_and_concurrency() -> None:
    spec = Engine.model_validate({
        "name": "mlx", "speculative": {"method": "draft-model", "model": "/models/draft", "numSpeculativeTokens": 3},
        "extraArgs": ["--temp", "1.0"], "mlx": {"decodeConcurrency": 16, "promptConcurrency": 4, "maxTokens": 2048},
    })  # fmt: skip
    launch = get("mlx").launch(spec, ServedModel("/models/q4"), host="0.0.0.0", port=8080)
    assert launch.command == [
        "mlx_lm.server", "--model", "/models/q4", "--draft-model", "/models/draft", "--num-draft-tokens", "3",
        "--decode-concurrency", "16", "--prompt-concurrency", "4", "--max-tokens", "2048",
        "--host", "0.0.0.0", "--port", "8080", "--temp", "1.0",
    ]  # fmt: skip
    assert launch.served_model_name == "/models/q4" and launch.metrics_path is None
    assert get("mlx").concurrency_limit(None, launch.command) == (16, "mlx_lm.server --decode-concurrency 16")
    default = get("mlx").launch(Engine(name="mlx"), ServedModel("/m")).command
    assert get("mlx").concurrency_limit(None, default)[0] == 32
    assert get("mlx").concurrency_limit(None, [*default, "--kv-bits", "4"])[0] == 1


@pytest.mark.parametrize(
    ("engine", "field"),
    [
        ({"servedModelName": "tiny"}, "servedModelName"),
        ({"speculative": {"method": "eagle"}}, "speculative"),
        ({"kvCacheDtype": "fp8"}, "kvCacheDtype"),
        ({"tensorParallelSize": 2}, "tensorParallelSize"),
    ],
)
def test_refuses_what_mlx_lm_cannot_do(engine: dict[str, object], field: str) -> None:
    spec = {
        "model": {"path": "/m"},
        "load": {"parallel": [1], "number": [1]},
        "engine": {"name": "mlx", **engine},
    }
    with pytest.raises(SpecError) as err:
        validate_resource("ServeBenchmark", "x", spec)
    assert err.value.errors[0].startswith(f"spec.engine.{field}: engine.")
