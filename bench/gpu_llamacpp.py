"""The llama.cpp path for real on one GPU: a random-weight Qwen3-4B, IQ4_XS and Q4_K_M, servelab's sweep.

Run on a GPU machine with nvcc, cmake, ninja and a Python that has torch, transformers, numpy and
safetensors (nothing is downloaded there). Two halves:

1. Here, on the developer machine (network, the project's caches):

       .venv/bin/python bench/gpu_llamacpp.py prepare

   writes `.gpu/` (ignored; add `/.gpu/` and `/.whl/` to .git/info/exclude): the pinned llama.cpp
   source (servelab.toolchain.llamacpp's, without models/docs/media) as a tarball, a tokenizer with
   Qwen3-4B's vocabulary size (the tiny test model's byte-level BPE with Qwen2's pre-tokenizer, extended
   by synthetic merges to 151,936 ids, so every id the random model samples is a real token), the tiny
   test model's tokenizer (the harness's), and the zeroserver binary (hack/zeroserver, static); and
   `.whl/`: the Python 3.12 wheels of servelab's worker dependencies and evalscope that the GPU image
   lacks.

2. There, from the repository root (`.gpu` and `.whl` carried):

       python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
       PYTHONPATH=/tmp/site python3 bench/gpu_llamacpp.py device --budget 540 --out $OUT

   Each stage is done once (markers under --work) and skipped when already done, so a second call on the
   same machine resumes where a first one stopped at its time budget:
   build llama.cpp with CUDA (the project's CMake flags + -DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90,
   into servelab's cache layout, so the product's own `toolchain.llamacpp.tool()` finds it); make the
   random-weight model (transformers Qwen3ForCausalLM with Qwen3-4B's config, bf16, on the GPU); convert
   to GGUF f16 (servelab.toolchain.llamacpp convert, i.e. the pinned convert_hf_to_gguf.py); quantize to
   IQ4_XS and Q4_K_M (`llama-quantize --leave-output-tensor`, as write-up 000; no importance matrix:
   weights' values do not change speed); then per quantization a ServeBenchmark spec (engine llamacpp,
   gpuLayers 99) compiled by servelab's plan (`servelab.plan.compile_benchmark`): the rendered
   llama-server command started through the adapter's `local_command`, the rendered worker steps
   (`servelab worker perf` warm-up and points, `servelab worker llamabench`) run as the local executor
   runs them; last, bench/harness.py (the client ceiling against hack/zeroserver) on this machine.

   Writes summary.json, summary.md and logs.tar.gz to --out.

The 2026-11-29 H200 run and its figures: docs/measurement.md, "H200 llama.cpp run" (raw summary in
bench/results/). Its c=64 point did not measure: with many slots the pinned llama-server re-saves every
idle slot to its host-memory prompt cache on each new request; a rerun should add
`--server-arg=--no-cache-idle-slots` (the recorded run passed no extra server arguments).

`device --tiny` is the CPU rehearsal of the same path (a 2-layer model with the same vocabulary, the
CPU llama.cpp build from the cache, a short sweep): run it here before spending GPU time.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
GPU = REPO / ".gpu"
WHL = REPO / ".whl"
sys.path[:0] = [str(REPO / "operator"), str(REPO / "devtools")]

VOCAB = 151936
# Qwen/Qwen3-4B's config.json (the architecture; weights are random)
QWEN3_4B = {"vocab_size": VOCAB, "hidden_size": 2560, "intermediate_size": 9728, "num_hidden_layers": 36,
            "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128,
            "max_position_embeddings": 40960, "rope_theta": 1000000.0, "rms_norm_eps": 1e-6,
            "tie_word_embeddings": True}  # fmt: skip
TINY = {**QWEN3_4B, "hidden_size": 256, "intermediate_size": 512, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 64}  # fmt: skip
QUANTS = ("IQ4_XS", "Q4_K_M")
CUDA_FLAGS = ("-DGGML_CUDA=ON", "-DCMAKE_CUDA_ARCHITECTURES=90", "-DGGML_CUDA_NCCL=OFF", "-DLLAMA_CURL=OFF")
# evalscope's and servelab's worker dependencies that the GPU image (python 3.12) lacks; the versions of
# the project's evalscope worker environment
WHEELS = [
    "annotated_types==0.8.0",
    "pydantic==2.14.3",
    "pydantic_core==2.50.4",
    "typing_inspection==0.4.5",
    "cffi==2.1.1",
    "pycparser==3.12",
    "colorlog==6.12.0",
    "cryptography==50.0.2",
    "datasets==4.8.4",
    "dill==0.4.1",
    "multiprocess==0.70.19",
    "docstring_parser==0.18.0",
    "editdistance==0.8.1",
    "evalscope==1.14.1",
    "fastapi==0.165.0",
    "filetype==1.2.0",
    "httpx2==2.16.2",
    "httpcore2==2.16.2",
    "jsonlines==4.0.0",
    "jsonschema==4.26.0",
    "jsonschema_specifications==2025.9.1",
    "referencing==0.37.0",
    "rpds_py==2026.9.1",
    "modelscope==1.40.2",
    "modelscope_hub==0.5.1",
    "openai==3.54.0",
    "jiter==0.19.0",
    "distro==1.9.0",
    "opentelemetry_api==1.45.2",
    "plotly==7.1.0",
    "sniffio==1.3.1",
    "sse_starlette==3.7.0",
    "starlette==1.10.0",
    "uvicorn==0.54.0",
]


# ---- here: what travels ----------------------------------------------------------------------------
def extend_tokenizer(src: Path, out: Path, size: int = VOCAB) -> int:
    """The tiny model's byte-level BPE, extended to `size` ids by merges of existing token pairs."""
    data = json.loads((src / "tokenizer.json").read_text())
    vocab: dict[str, int] = data["model"]["vocab"]
    merges: list[list[str]] = data["model"]["merges"]
    specials = {t["content"] for t in data["added_tokens"]}
    base = [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1]) if t not in specials]
    nxt = max(vocab.values()) + 1
    for a in base:
        for b in base:
            if nxt >= size:
                break
            if a + b not in vocab:
                vocab[a + b] = nxt
                merges.append([a, b])
                nxt += 1
    out.mkdir(parents=True, exist_ok=True)
    (out / "tokenizer.json").write_text(json.dumps(data, ensure_ascii=False))
    cfg = json.loads((src / "tokenizer_config.json").read_text())
    cfg["model_max_length"] = QWEN3_4B["max_position_embeddings"]
    (out / "tokenizer_config.json").write_text(json.dumps(cfg, indent=2, ensure_ascii=False) + "\n")
    for name in ("special_tokens_map.json", "chat_template.jinja"):
        if (src / name).is_file():
            shutil.copy2(src / name, out / name)
    return nxt


def prepare() -> None:
    from servelab.toolchain import llamacpp
    from servelab_dev import zeroserver
    from servelab_dev.tinymodel import ensure_tiny_model

    GPU.mkdir(exist_ok=True)
    src = llamacpp.ensure_source()
    with tarfile.open(GPU / "llama-src.tar.xz", "w:xz") as tar:
        tar.add(src, arcname="llama.cpp",
                filter=lambda m: None if m.name.split("/")[1:2] in (["models"], ["docs"], ["media"], [".git"]) else m)  # fmt: skip
    tiny = ensure_tiny_model()
    n = extend_tokenizer(tiny, GPU / "tokenizer")
    print(f"tokenizer: {n} ids")
    (GPU / "tiny").mkdir(exist_ok=True)
    for f in tiny.iterdir():
        if f.name != "model.safetensors":
            shutil.copy2(f, GPU / "tiny" / f.name)
    shutil.copy2(zeroserver.ensure(), GPU / "zeroserver")
    WHL.mkdir(exist_ok=True)
    plats = [f"--platform={p}" for p in ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64",
                                         "manylinux2014_x86_64", "manylinux1_x86_64", "manylinux_2_31_x86_64")]  # fmt: skip
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                    "--python-version", "3.12", "--implementation", "cp", *plats, "-d", str(WHL), *WHEELS],
                   check=True)  # fmt: skip
    size = sum(f.stat().st_size for d in (GPU, WHL) for f in d.rglob("*") if f.is_file())
    print(f".gpu + .whl: {size / 2**20:.1f} MiB")


# ---- there: the stages -----------------------------------------------------------------------------
class Stages:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.t0 = time.monotonic()
        self.work: Path = args.work
        self.done = self.work / "done"
        self.done.mkdir(parents=True, exist_ok=True)
        self.logs = self.work / "logs"
        self.logs.mkdir(exist_ok=True)
        self.summary_path = self.work / "summary.json"
        self.summary: dict[str, Any] = (
            json.loads(self.summary_path.read_text()) if self.summary_path.is_file() else {}
        )
        self.summary.setdefault("calls", []).append(
            {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        )
        self.deferred: list[str] = []

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def log(self, msg: str) -> None:
        print(f"[{self.elapsed():6.1f}s] {msg}", flush=True)

    def save(self) -> None:
        self.summary["calls"][-1]["seconds"] = round(self.elapsed(), 1)
        self.summary["calls"][-1]["deferred"] = self.deferred
        self.summary_path.write_text(json.dumps(self.summary, indent=2) + "\n")

    def stage(self, name: str, estimate: float, fn: Any, *a: Any) -> bool:
        if (self.done / name).is_file():
            return True
        if self.elapsed() + estimate > self.args.budget:
            self.log(
                f"{name}: deferred (needs ~{estimate:.0f}s, {self.args.budget - self.elapsed():.0f}s left)"
            )
            self.deferred.append(name)
            return False
        self.log(f"{name}: start")
        started = time.monotonic()
        try:
            fn(*a)
        except Exception as exc:  # keep going with the other stages; the failure is in the summary
            self.log(f"{name}: FAILED {exc!r}")
            self.summary.setdefault("failures", {})[name] = repr(exc)[-2000:]
            self.save()
            return False
        secs = round(time.monotonic() - started, 1)
        (self.summary.get("failures") or {}).pop(name, None)
        self.summary.setdefault("stageSeconds", {})[name] = secs
        (self.done / name).write_text(str(secs))
        self.log(f"{name}: done in {secs}s")
        self.save()
        return True

    def run(
        self, cmd: list[str], log: str, env: dict[str, str] | None = None, timeout: float | None = None
    ) -> str:
        path = self.logs / log
        with path.open("a") as fh:
            fh.write("$ " + " ".join(map(str, cmd)) + "\n")
            fh.flush()
            rc = subprocess.run(
                list(map(str, cmd)), stdout=fh, stderr=subprocess.STDOUT, env=env, timeout=timeout
            ).returncode
        text = path.read_text(errors="replace")
        if rc != 0:
            raise RuntimeError(f"{cmd[0]} {' '.join(map(str, cmd[1:3]))} rc={rc}: {text[-1500:]}")
        return text


def environ(extra_path: str = "") -> dict[str, str]:
    env = dict(os.environ)
    parts = [str(REPO / "operator"), str(REPO / "devtools"), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in parts if p)
    for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
        env[k] = "1"
    if extra_path:
        env["PATH"] = extra_path + os.pathsep + env.get("PATH", "")
    return env


def setup(st: Stages) -> None:
    """Source where servelab's toolchain looks, the fake worker environment, zeroserver, tiny tokenizer."""
    from servelab.toolchain import envs, llamacpp
    from servelab_dev import tinymodel

    if not st.args.tiny:
        home = llamacpp.home()
        if not (home / "src" / "CMakeLists.txt").is_file():
            home.mkdir(parents=True, exist_ok=True)
            with tarfile.open(GPU / "llama-src.tar.xz") as tar:
                tar.extractall(home, filter="data")
            os.replace(home / "llama.cpp", home / "src")
        # the worker environment `evalscope` is this interpreter with the carried wheels on PYTHONPATH
        for name in ("evalscope", "llamacpp"):
            env = envs.env_dir(name)
            (env / "bin").mkdir(parents=True, exist_ok=True)
            py = env / "bin" / "python"
            py.write_text(f'#!/bin/sh\nexec {sys.executable} "$@"\n')
            py.chmod(0o755)
            (env / envs.MARKER).write_text(
                json.dumps({"name": name, "note": "bench/gpu_llamacpp.py: the image's python"})
            )
        zs = REPO / "hack" / "zeroserver"
        import hashlib

        h = hashlib.sha256((zs / "go.mod").read_bytes() + (zs / "main.go").read_bytes()).hexdigest()[:12]
        dest = llamacpp.cache_root() / "bin" / f"zeroserver-{h}"
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copy2(GPU / "zeroserver", dest / "zeroserver")
        tiny = tinymodel.tiny_model_dir()
        tiny.mkdir(parents=True, exist_ok=True)
        for f in (GPU / "tiny").iterdir():
            shutil.copy2(f, tiny / f.name)
    st.summary["machine"] = machine()


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {"cpus": os.cpu_count()}
    for cmd, key in ((["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"], "gpu"),
                     (["nvcc", "--version"], "nvcc"), (["uname", "-r"], "kernel")):  # fmt: skip
        try:
            info[key] = (
                subprocess.run(cmd, capture_output=True, text=True, timeout=30)
                .stdout.strip()
                .splitlines()[-1]
            )
        except (OSError, subprocess.SubprocessError, IndexError):
            info[key] = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info["python"] = sys.version.split()[0]
    try:
        import torch
        import transformers

        info["torch"], info["transformers"] = torch.__version__, transformers.__version__
    except ImportError:
        pass
    return info


def start_build(st: Stages) -> subprocess.Popen[bytes] | None:
    """cmake configure + build of the product's tools with CUDA, in the background."""
    from servelab.toolchain import llamacpp

    if st.args.tiny or all((llamacpp.bin_dir() / t).is_file() for t in llamacpp.TOOLS):
        return None
    build = llamacpp.home() / "build-cuda"
    flags = [f for f in llamacpp.CMAKE_FLAGS] + list(CUDA_FLAGS)
    st.summary["cmakeFlags"] = flags
    script = (f"set -e; cmake -S {llamacpp.source_dir()} -B {build} -G Ninja {' '.join(flags)}; "
              f"cmake --build {build} -j{os.cpu_count()} --target {' '.join(llamacpp.TOOLS)}")  # fmt: skip
    fh = (st.logs / "build.log").open("a")
    fh.write(f"$ {script}\n")
    fh.flush()
    st.log("build: started in the background")
    st.build_started = time.monotonic()  # type: ignore[attr-defined]
    return subprocess.Popen(["bash", "-c", script], stdout=fh, stderr=subprocess.STDOUT)


def finish_build(st: Stages, proc: subprocess.Popen[bytes] | None) -> None:
    from servelab.toolchain import llamacpp

    if proc is None:
        return
    left = st.args.budget - st.elapsed()
    try:
        rc = proc.wait(timeout=max(left, 1))
    except subprocess.TimeoutExpired:
        proc.kill()
        st.deferred.append("build")
        raise RuntimeError("the build did not finish inside the budget") from None
    if rc != 0:
        raise RuntimeError("build failed: " + (st.logs / "build.log").read_text(errors="replace")[-3000:])
    build = llamacpp.home() / "build-cuda"
    out = llamacpp.bin_dir()
    out.mkdir(parents=True, exist_ok=True)
    for t in llamacpp.TOOLS:
        shutil.copy2(build / "bin" / t, out / t)
    secs = round(time.monotonic() - st.build_started, 1)  # type: ignore[attr-defined]
    info = {"llamaCppPythonVersion": llamacpp.LLAMA_CPP_PYTHON_VERSION, "cmakeFlags": st.summary.get("cmakeFlags"),
            "targets": list(llamacpp.TOOLS), "jobs": os.cpu_count(), "buildSeconds": secs, "cuda": True}  # fmt: skip
    (out / "BUILD_INFO.json").write_text(json.dumps(info, indent=2) + "\n")
    st.summary["buildSeconds"] = secs
    st.log(f"build: finished in {secs}s")


def make_model(st: Stages) -> None:
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    cfg = TINY if st.args.tiny else QWEN3_4B
    out = st.work / "hf"
    shutil.rmtree(out, ignore_errors=True)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    config = Qwen3Config(**cfg, bos_token_id=0, eos_token_id=2, pad_token_id=0)
    torch.manual_seed(0)
    torch.set_default_dtype(torch.bfloat16)
    t = time.monotonic()
    with torch.device(device):
        model = Qwen3ForCausalLM(config)
    model = model.to(torch.bfloat16)
    if device == "cuda":
        torch.cuda.synchronize()
    params = sum(p.numel() for p in model.parameters())
    model.save_pretrained(str(out))
    for f in (GPU / "tokenizer").iterdir():
        shutil.copy2(f, out / f.name)
    st.summary["model"] = {"config": cfg, "parameters": params, "device": device, "seconds": round(time.monotonic() - t, 1),
                           "bytes": sum(f.stat().st_size for f in out.glob("*.safetensors"))}  # fmt: skip
    st.log(f"model: {params / 1e9:.3f} B parameters")


def convert(st: Stages) -> None:
    from servelab.toolchain import llamacpp

    out = st.work / "model-f16.gguf"
    cmd = llamacpp.convert_command(st.work / "hf", out, outtype="f16", python=Path(sys.executable))
    st.summary["convertCommand"] = cmd
    st.run(cmd, "convert.log", env=environ())
    st.summary["f16Bytes"] = out.stat().st_size


def quantize(st: Stages, qtype: str) -> None:
    from servelab.toolchain import llamacpp

    out = st.work / f"model-{qtype.lower()}.gguf"
    cmd = [
        str(llamacpp.tool("llama-quantize")),
        "--leave-output-tensor",
        str(st.work / "model-f16.gguf"),
        str(out),
        qtype,
    ]
    st.summary.setdefault("quantizeCommands", {})[qtype] = cmd
    st.run(cmd, f"quantize-{qtype}.log")
    st.summary.setdefault("ggufBytes", {})[qtype] = out.stat().st_size


def spec_for(st: Stages, qtype: str, capped: bool = False) -> dict[str, Any]:
    """The ServeBenchmark spec of one quantization (capped: write-up 000's shape, one slot, c=1 and 4)."""
    a = st.args
    name = f"qwen3-4b-random-{qtype.lower()}"
    if capped:
        spec = spec_for(st, qtype)
        spec["engine"]["llamacpp"]["parallelSlots"] = 1
        spec["engine"]["maxModelLen"] = a.slot_context
        spec["load"]["parallel"], spec["load"]["number"] = [1, 4], [2, 8]
        del spec["llamaBench"]
        return spec
    return {
        "model": {"path": str(st.work / f"model-{qtype.lower()}.gguf"), "tokenizer": str(st.work / "hf")},
        "engine": {"name": "llamacpp", "servedModelName": name, "maxModelLen": a.slots * a.slot_context, "port": a.port,
                   "llamacpp": {"gpuLayers": 99, "parallelSlots": a.slots}, "extraArgs": list(a.server_arg)},
        "load": {"parallel": a.parallel, "number": a.number, "minPromptLength": a.prompt, "maxPromptLength": a.prompt,
                 "prefixLength": 0, "maxTokens": a.output, "minTokens": a.output, "ignoreEos": True,
                 "tokenizerPath": str(st.work / "hf"), "warmupRequests": 2, "pointTimeoutSeconds": a.point_timeout},
        "llamaBench": {"promptTokens": [512], "genTokens": [128], "gpuLayers": 99, "repetitions": 5},
        "resources": {"gpus": 0 if a.tiny else 1},
        "timeouts": {"serverReadySeconds": 600},
    }  # fmt: skip


def render(st: Stages, qtype: str, capped: bool = False) -> Any:
    from servelab.api.servebenchmark import ServeBenchmarkSpec
    from servelab.plan import compile_benchmark, served_model

    spec = ServeBenchmarkSpec.model_validate(spec_for(st, qtype, capped))
    assert spec.model is not None
    model = served_model(spec.model, engine="llamacpp")
    port = spec.engine.port or 8080
    return compile_benchmark(spec, model, artifacts=str(st.work / "runs" / (f"{qtype}-np1" if capped else qtype)), server_url=lambda p: f"http://127.0.0.1:{p}",
                             host="127.0.0.1", port=port)  # fmt: skip


def sweep(st: Stages, qtype: str, capped: bool = False) -> None:
    """The compiled plan run as the local executor runs it: server, then its worker steps in order."""
    from servelab import engines

    key = f"{qtype}-np1" if capped else qtype
    plan = render(st, qtype, capped)
    runs = st.work / "runs" / key
    shutil.rmtree(runs, ignore_errors=True)
    runs.mkdir(parents=True)
    assert plan.server is not None
    adapter = engines.get("llamacpp")
    local, env = adapter.local_command(plan.server.command)
    rec: dict[str, Any] = {"renderedServerCommand": plan.server.command, "localServerCommand": local,
                           "steps": [s.argv for s in plan.steps], "stepSeconds": {}}  # fmt: skip
    st.summary.setdefault("sweeps", {})[key] = rec
    held0 = time.monotonic()
    with (st.logs / f"server-{key}.log").open("w") as fh:
        fh.write("$ " + " ".join(local) + "\n")
        fh.flush()
        server = subprocess.Popen(local, env={**env, **plan.server.env}, stdout=fh, stderr=subprocess.STDOUT,
                                  start_new_session=True)  # fmt: skip
    try:
        for step in plan.steps:
            argv = [sys.executable, "-m", "servelab", *step.argv[1:]]
            t = time.monotonic()
            try:
                left = st.args.budget - st.elapsed() + 20
                st.run(
                    argv,
                    f"step-{key}-{step.id}.log",
                    env=environ(),
                    timeout=min(step.timeout_seconds, max(left, 30)),
                )
            except (RuntimeError, subprocess.TimeoutExpired) as exc:  # perf exits 1 when a point is invalid
                rec.setdefault("stepErrors", {})[step.id] = str(exc)[-800:]
            rec["stepSeconds"][step.id] = round(time.monotonic() - t, 1)
            if server.poll() is not None:
                raise RuntimeError(f"llama-server exited rc={server.returncode}")
        props = _get(f"{plan.server_url}/props")
        if isinstance(props, dict):
            rec["props"] = {k: props.get(k) for k in ("total_slots", "build_info", "model_path")}
            rec["props"]["n_ctx"] = (props.get("default_generation_settings") or {}).get("n_ctx")
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
    rec["serverHeldSeconds"] = round(time.monotonic() - held0, 1)
    points, bench = [], None
    for step in plan.steps:  # each step's --out is ARTIFACTS/<something>; its result.json is there
        out_dir = step.argv[step.argv.index("--out") + 1] if "--out" in step.argv else str(runs / step.id)
        res = Path(out_dir) / "result.json"
        if not res.is_file():
            continue
        data = json.loads(res.read_text())
        if step.result == "points":
            points += data.get("points", [])
            rec["sweepDurationSeconds"] = data.get("durationSeconds")
        elif step.result == "bench":
            bench = data.get("bench")
    rec["points"], rec["llamaBench"] = points, bench
    measured = sum(p.get("durationSeconds") or 0 for p in points)
    rec["measuredSeconds"] = round(measured, 1)
    rec["dutyCycle"] = round(measured / rec["serverHeldSeconds"], 3) if rec["serverHeldSeconds"] else None
    server_log = (st.logs / f"server-{key}.log").read_text(errors="replace")
    rec["serverLogHead"] = [ln for ln in server_log.splitlines() if any(k in ln for k in (
        "CUDA", "offloaded", "n_ctx", "n_slots", "build", "flash_attn", "model type", "file type", "kv_unified"))][:40]  # fmt: skip
    if not points:
        raise RuntimeError(f"no points: {rec.get('stepErrors')}")


def _get(url: str) -> Any:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return json.loads(r.read())
    except (OSError, ValueError):
        return None


def harness(st: Stages) -> None:
    cmd = [sys.executable, str(REPO / "bench" / "harness.py"), "--generators", "evalscope",
           "--concurrency", *map(str, st.args.harness_concurrency)]  # fmt: skip
    if st.args.harness_shards:  # the ceiling with k client processes per point (spec.load.clientShards)
        cmd += ["--shards", *map(str, st.args.harness_shards), "--json", str(st.args.out / "harness.json")]
        st.args.out.mkdir(parents=True, exist_ok=True)
    text = st.run(cmd, "harness.log", env=environ(), timeout=max(st.args.budget - st.elapsed(), 60))
    st.summary["harness"] = text[text.find("machine:") :] if "machine:" in text else text[-6000:]


# ---- the report ----------------------------------------------------------------------------------
def markdown(summary: dict[str, Any]) -> str:
    lines = []
    for qtype, rec in (summary.get("sweeps") or {}).items():
        lines.append(f"### {qtype}\n")
        lines.append("`" + " ".join(rec.get("renderedServerCommand", [])) + "`\n")
        lines.append("| conc | requests | out tok/s | mean TTFT s (p99) | mean TPOT ms | mean latency s | "
                     "sustained conc | client CPU | label |")  # fmt: skip
        lines.append("|---|---|---|---|---|---|---|---|---|")
        for p in rec.get("points", []):

            def f(k: str, spec: str, scale: float = 1.0, p: dict[str, Any] = p) -> str:
                v = p.get(k)
                return format(v * scale, spec) if isinstance(v, int | float) else "-"

            lines.append(f"| {p['concurrency']} | {p['requests']} | {f('outputTokensPerSecond', '.1f')} | "
                         f"{f('avgTtftSeconds', '.3f')} ({f('p99TtftSeconds', '.3f')}) | {f('avgTpotSeconds', '.2f', 1e3)} | "
                         f"{f('avgLatencySeconds', '.2f')} | {f('sustainedConcurrency', '.1f')} | {f('clientCpu', '.2f')} | "
                         f"{p.get('label') or '-'}{'' if p.get('valid') else ' (invalid: ' + str(p.get('reason')) + ')'} |")  # fmt: skip
        for row in rec.get("llamaBench") or []:
            lines.append(
                f"\nllama-bench {row.get('modelType')} ngl {row.get('nGpuLayers')} {row.get('backends')}: "
                f"{row.get('test')} {row.get('avgTokensPerSecond', 0):.2f} ± {row.get('stddevTokensPerSecond', 0):.2f} t/s"
            )
        lines.append(f"\nserver held {rec.get('serverHeldSeconds')} s, measured load {rec.get('measuredSeconds')} s, "
                     f"duty cycle {rec.get('dutyCycle')}; props {rec.get('props')}\n")  # fmt: skip
    if summary.get("harness"):
        lines.append("### harness ceiling\n\n```\n" + summary["harness"].strip() + "\n```")
    return "\n".join(lines)


def device(args: argparse.Namespace) -> int:
    if args.tiny:
        args.work = args.work or Path("/tmp/slgpu-tiny")
    else:
        args.work = args.work or Path("/tmp/slgpu")
        os.environ.setdefault("SERVELAB_CACHE", str(args.work / "cache"))
    st = Stages(args)
    st.log(
        f"work {args.work}, cache {os.environ.get('SERVELAB_CACHE', '~/.cache/servelab')}, budget {args.budget}s"
    )
    st.stage("setup", 30, setup, st)
    if args.only_harness:  # the client's ceiling alone: no build, no model
        st.stage("harness", args.harness_estimate, harness, st)
        st.save()
        args.out.mkdir(parents=True, exist_ok=True)
        shutil.copy2(st.summary_path, args.out / "summary.json")
        print(markdown(st.summary))
        return 0
    proc = None if (st.done / "build").is_file() else start_build(st)
    st.stage("model", 150, make_model, st)
    st.stage("convert", 150, convert, st)
    if proc is not None or not (st.done / "build").is_file():
        st.stage("build", 0, finish_build, st, proc)
    if (st.done / "build").is_file() or args.tiny:
        for q in QUANTS:
            st.stage(f"quantize-{q}", 90, quantize, st, q)
        for q in QUANTS:
            if (st.done / f"quantize-{q}").is_file():
                st.stage(f"sweep-{q}", args.sweep_estimate, sweep, st, q)
        if not args.no_harness:
            st.stage("harness", args.harness_estimate, harness, st)
        if args.capped and (st.done / "quantize-IQ4_XS").is_file():
            st.stage("sweep-IQ4_XS-np1", 75, sweep, st, "IQ4_XS", True)
    st.save()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy2(st.summary_path, out / "summary.json")
    (out / "summary.md").write_text(markdown(st.summary) + "\n")
    with tarfile.open(out / "logs.tar.gz", "w:gz") as tar:
        tar.add(st.logs, arcname="logs")
        runs = st.work / "runs"
        if runs.is_dir():
            tar.add(runs, arcname="runs", filter=lambda m: None if m.name.endswith(".gguf") else m)
    print(markdown(st.summary))
    st.log(
        f"deferred: {st.deferred or 'nothing'}; failures: {list((st.summary.get('failures') or {}).keys())}"
    )
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("prepare", help="here: write .gpu/ and .whl/ (what the GPU machine needs)")
    d = sub.add_parser("device", help="there: build, model, quantize, sweep, harness (resumable)")
    d.add_argument("--out", type=Path, required=True)
    d.add_argument("--work", type=Path, default=None)
    d.add_argument("--budget", type=float, default=540, help="seconds this call may use")
    d.add_argument("--tiny", action="store_true", help="CPU rehearsal: 2-layer model, the cached CPU build")
    d.add_argument("--port", type=int, default=8080)
    d.add_argument("--slots", type=int, default=64, help="llamacpp.parallelSlots (-np)")
    d.add_argument("--slot-context", type=int, default=2304, help="context per slot (-c = slots x this)")
    d.add_argument("--parallel", type=int, nargs="+", default=[1, 4, 16, 64])
    d.add_argument("--number", type=int, nargs="+", default=[3, 8, 32, 64])
    d.add_argument("--prompt", type=int, default=1024)
    d.add_argument("--output", type=int, default=1024)
    d.add_argument("--point-timeout", type=int, default=300, help="spec.load.pointTimeoutSeconds")
    d.add_argument("--sweep-estimate", type=float, default=240)
    d.add_argument("--harness-estimate", type=float, default=150)
    d.add_argument("--harness-concurrency", type=int, nargs="+", default=[1, 8, 32, 256])
    d.add_argument("--no-harness", action="store_true")
    d.add_argument("--only-harness", action="store_true", help="set up, then run the harness alone")
    d.add_argument("--harness-shards", type=int, nargs="+", default=[],
                   help="bench/harness.py --shards: evalscope with k client processes per point too")  # fmt: skip
    d.add_argument("--server-arg", action="append", default=[],
                   help="engine.extraArgs (repeat; e.g. --server-arg=--no-cache-idle-slots, see docs/measurement.md)")  # fmt: skip
    d.add_argument(
        "--capped", action="store_true", help="last, if time is left: IQ4_XS with one slot at c=1, 4"
    )
    args = ap.parse_args()
    if args.cmd == "prepare":
        prepare()
        return 0
    return device(args)


if __name__ == "__main__":
    raise SystemExit(main())
