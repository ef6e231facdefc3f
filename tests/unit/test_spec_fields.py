"""Issue 9's fields, each shown doing what docs/api.md says: Hub files and revisions reach the engines,
Hub models and data sets reach the quantize workers, the load fields reach evalscope perf, minTokens is
forced to maxTokens only with ignore_eos, llama.cpp's speculative flags are the pinned release's. (What
cannot work is refused: tests/catalogue.py; that every field matters: test_field_coverage.py.)"""

from __future__ import annotations

import argparse
import gzip
import json
from pathlib import Path
from typing import Any

import pytest

from servelab import loadgen
from servelab.api.common import DataSource, HuggingFaceDataset
from servelab.api.engine import Engine
from servelab.api.quantjob import QuantJobSpec
from servelab.api.servebenchmark import ServeBenchmarkSpec
from servelab.engines import ServedModel, get
from servelab.loadgen import PointShape
from servelab.plan import compile_benchmark, compile_quantjob, data_location, served_model
from servelab.workers import hub, perf
from servelab.workers.common import WorkerError

pytestmark = pytest.mark.unit

HUB_GGUF = ServedModel("org/m-GGUF", from_hub=True, hub_file="m-Q4_K_M.gguf")


def opt(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


def render(engine: dict[str, Any], model: ServedModel) -> list[str]:
    spec = Engine.model_validate(engine)
    return get(spec.name).launch(spec, model, host="0.0.0.0", port=8080).command


# ---- model.huggingFace.file / revision --------------------------------------------------------------------
def test_llamacpp_serves_one_file_of_a_hub_repository() -> None:
    argv = render({"name": "llamacpp"}, HUB_GGUF)
    assert argv[:5] == ["llama-server", "--hf-repo", "org/m-GGUF", "--hf-file", "m-Q4_K_M.gguf"]
    assert "-m" not in argv
    assert render({"name": "llamacpp"}, ServedModel("/models/m.gguf"))[:3] == [
        "llama-server",
        "-m",
        "/models/m.gguf",
    ]


def test_vllm_and_sglang_pin_the_revision() -> None:
    pinned = ServedModel("org/m", from_hub=True, revision="v1.0")
    assert opt(render({"name": "vllm"}, pinned), "--revision") == "v1.0"
    assert opt(render({"name": "sglang"}, pinned), "--revision") == "v1.0"
    assert "--revision" not in render({"name": "vllm"}, ServedModel("org/m", from_hub=True))


def test_a_spec_model_becomes_the_served_model() -> None:
    spec = ServeBenchmarkSpec.model_validate({
        "model": {"huggingFace": {"id": "org/m-GGUF", "file": "m.gguf"}}, "engine": {"name": "llamacpp"},
        "load": {"parallel": [1], "number": [1]}})  # fmt: skip
    assert spec.model is not None
    assert served_model(spec.model) == ServedModel("org/m-GGUF", from_hub=True, hub_file="m.gguf")
    assert served_model(spec.model.model_copy(update={"hugging_face": None, "path": "/m"})).from_hub is False


def test_llamacpp_speculative_flags_of_the_pinned_release() -> None:
    """--draft-max/--draft-min were removed from llama-server (its --help: "use --spec-draft-n-max")."""
    draft = render({"name": "llamacpp", "speculative": {"method": "draft-model", "model": "/d.gguf", "draftMax": 8,
                                                       "draftMin": 2}}, HUB_GGUF)  # fmt: skip
    assert (opt(draft, "--spec-type"), opt(draft, "-md")) == ("draft-simple", "/d.gguf")
    assert (opt(draft, "--spec-draft-n-max"), opt(draft, "--spec-draft-n-min")) == ("8", "2")
    assert "--draft-max" not in draft and "--draft-min" not in draft
    mtp = render({"name": "llamacpp", "speculative": {"method": "mtp", "numSpeculativeTokens": 3}}, HUB_GGUF)
    assert (
        opt(mtp, "--spec-type") == "draft-mtp" and opt(mtp, "--spec-draft-n-max") == "3" and "-md" not in mtp
    )
    ngram = render({"name": "llamacpp", "speculative": {"method": "ngram", "draftMax": 16}}, HUB_GGUF)
    assert opt(ngram, "--spec-type") == "ngram-mod" and opt(ngram, "--spec-ngram-mod-n-max") == "16"


# ---- Hub models and data sets of a QuantJob ---------------------------------------------------------------
def quantjob(**over: Any) -> QuantJobSpec:
    body = {"model": {"huggingFace": {"id": "org/m", "revision": "abc123"}}, "method": "gguf",
            "gguf": {"variants": [{"type": "Q4_K_M"}]}, "output": {"path": "/out"},
            "calibration": {"source": {"huggingFace": {"id": "org/d", "subset": "s", "split": "test",
                                                        "column": "text"}}}}  # fmt: skip
    return QuantJobSpec.model_validate({**body, **over})


def test_quantize_workers_download_the_hub_model_at_its_revision() -> None:
    (gguf,) = compile_quantjob(quantjob(), "org/m", "/out", "/art").steps
    assert (opt(gguf.argv, "--hf-repo"), opt(gguf.argv, "--revision")) == ("org/m", "abc123")
    assert "--hf-dir" not in gguf.argv and opt(gguf.argv, "--imatrix-text") == "hf:org/d:s@test#text"
    gptq = quantjob(method="gptq", gguf=None, model={"huggingFace": {"id": "org/m"}})
    (step,) = compile_quantjob(gptq, "org/m", "/out", "/art").steps
    assert (
        opt(step.argv, "--hf-repo") == "org/m"
        and "--revision" not in step.argv
        and "--model" not in step.argv
    )
    local = quantjob(model={"path": "/models/m"})
    (step,) = compile_quantjob(local, "/models/m", "/out", "/art").steps
    assert opt(step.argv, "--hf-dir") == "/models/m" and "--hf-repo" not in step.argv


def test_hub_data_locations_round_trip() -> None:
    for ds, ref in (
        (HuggingFaceDataset(id="org/d"), hub.HubData("org/d", "train")),
        (HuggingFaceDataset(id="d", subset="wikitext-2-raw-v1", split="test", column="text"),
         hub.HubData("d", "test", "wikitext-2-raw-v1", "text")),
    ):  # fmt: skip
        assert hub.parse_data(data_location(DataSource(hugging_face=ds))) == ref
    assert hub.parse_data("/data/c.txt") is None
    with pytest.raises(WorkerError, match="not a Hub data location"):
        hub.parse_data("hf:org/d")


README = """---
configs:
- config_name: wikitext-2-raw-v1
  data_files:
  - split: test
    path: wikitext-2-raw-v1/test-*
  - split: train
    path: wikitext-2-raw-v1/train-*
- config_name: other
  default: true
  data_files: other/*.jsonl
---
# a data set
"""


def test_data_files_are_found_as_datasets_finds_them() -> None:
    files = ["README.md", ".gitattributes", "wikitext-2-raw-v1/test-00000-of-00001.parquet",
             "wikitext-2-raw-v1/train-00000-of-00002.parquet", "wikitext-2-raw-v1/train-00001-of-00002.parquet",
             "other/a.jsonl", "other/b.jsonl"]  # fmt: skip
    assert hub.select_files(files, "test", "wikitext-2-raw-v1", README) == [files[2]]
    assert hub.select_files(files, "train", "wikitext-2-raw-v1", README) == files[3:5]
    assert hub.select_files(files, "train", None, README) == ["other/a.jsonl", "other/b.jsonl"]  # the default
    with pytest.raises(WorkerError, match="split 'validation' is not among"):
        hub.select_files(files, "validation", "wikitext-2-raw-v1", README)
    with pytest.raises(WorkerError, match="subset 'x' is not among"):
        hub.select_files(files, "test", "x", README)
    # no README configs: split names in file and directory names, a directory per subset
    plain = ["data/train-00000-of-00001.parquet", "data/validation.jsonl", "wiki.test.raw", "en/test/0000.parquet",
             "de/test/0000.parquet"]  # fmt: skip
    assert hub.select_files(plain, "validation", None, None) == ["data/validation.jsonl"]
    assert hub.select_files(plain, "test", "en", None) == ["en/test/0000.parquet"]
    assert hub.select_files(plain, "test", None, None) == ["de/test/0000.parquet", "en/test/0000.parquet",
                                                           "wiki.test.raw"]  # fmt: skip
    # no split names at all: everything is train
    assert hub.select_files(["a.jsonl", "b.txt", "x.py"], "train", None, None) == ["a.jsonl", "b.txt"]
    assert hub.select_files(["a.jsonl"], "test", None, None) == []


def test_rows_and_their_text(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_text(
        '{"text": "one"}\n\n{"messages": [{"role": "user", "content": "hi"}]}\n'
    )
    (tmp_path / "b.json").write_text(json.dumps({"data": [{"question": "q?"}, "plain"]}))
    (tmp_path / "c.csv").write_text("prompt,answer\nwhy,because\n")
    (tmp_path / "d.txt.gz").write_bytes(gzip.compress(b" = Title = \n\nbody\n"))
    rows = [r for name in ("a.jsonl", "b.json", "c.csv", "d.txt.gz") for r in hub.read_rows(tmp_path / name)]
    assert [hub.row_text(r, None) for r in rows] == [
        "one",
        "hi",
        "q?",
        "plain",
        "why",
        " = Title = ",
        "",
        "body",
    ]
    assert hub.row_text({"body": "x", "text": "y"}, "body") == "x"
    with pytest.raises(WorkerError, match="no column 'body'"):
        hub.row_text({"text": "y"}, "body")
    # a path is used as it is (no Hub access)
    assert hub.resolve_text(str(tmp_path / "a.jsonl")) == tmp_path / "a.jsonl"
    assert hub.resolve_rows("/data/c.jsonl") == Path("/data/c.jsonl")


# ---- spec.load: dataset, datasetPath, endpoint, stream; minTokens -----------------------------------------
def perf_argv(load: dict[str, Any]) -> list[str]:
    spec = ServeBenchmarkSpec.model_validate({"model": {"path": "/m"}, "engine": {"name": "vllm"},
                                              "load": {"parallel": [4], "number": [8], **load}})  # fmt: skip
    plan = compile_benchmark(spec, ServedModel("/m"), artifacts="/a", server_url=lambda p: f"http://s:{p}")
    return plan.steps[0].argv


def point(argv: list[str], tmp_path: Path) -> tuple[list[str], PointShape]:
    parser = argparse.ArgumentParser()
    perf.add_arguments(parser)
    worker = argv[3 : argv.index("--wait-ready")] if "--wait-ready" in argv else argv[3:]
    args = parser.parse_args([*worker, "--out", str(tmp_path), "--evalscope", "/bin/evalscope"])
    shape = perf.point_shape(args, "vllm")
    return loadgen.get("evalscope", "/bin/evalscope").point_command(shape, 4, 8, 0, tmp_path), shape


def test_the_load_fields_reach_evalscope_perf(tmp_path: Path) -> None:
    default, shape = point(perf_argv({}), tmp_path)
    assert opt(default, "--dataset") == "random" and "--dataset-path" not in default and "--stream" in default
    assert shape.url == "http://s:8000/v1/chat/completions"
    argv = perf_argv({"dataset": "custom", "datasetPath": "/prompts.txt", "endpoint": "completions",
                      "stream": False, "minPromptLength": 1, "maxPromptLength": 4096})  # fmt: skip
    assert (opt(argv, "--dataset"), opt(argv, "--dataset-path"), opt(argv, "--endpoint")) == (
        "custom", "/prompts.txt", "completions")  # fmt: skip
    cmd, shape = point(argv, tmp_path)
    assert (opt(cmd, "--dataset"), opt(cmd, "--dataset-path"), opt(cmd, "--url")) == (
        "custom", "/prompts.txt", "http://s:8000/v1/completions")  # fmt: skip
    assert "--no-stream" in cmd and "--stream" not in cmd


def test_min_tokens_is_max_tokens_only_with_ignore_eos(tmp_path: Path) -> None:
    _, forced = point(perf_argv({"maxTokens": 32}), tmp_path)
    assert (forced.min_tokens, forced.ignore_eos) == (32, True)
    cmd, free = point(perf_argv({"maxTokens": 32, "ignoreEos": False}), tmp_path)
    assert (free.min_tokens, free.ignore_eos) == (0, False) and "--min-tokens" not in cmd
    _, asked = point(perf_argv({"maxTokens": 32, "minTokens": 8, "ignoreEos": False}), tmp_path)
    assert asked.min_tokens == 8
