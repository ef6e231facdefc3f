"""A QuantJob's Hugging Face Hub inputs, offline: a model repository and data sets from a local HF cache.

The cache has the Hub's own layout (`models--org--name/{refs/main,snapshots/REV/...}`,
`datasets--org--name/...`), built from the tiny model and from local text; the workers run with
HF_HUB_OFFLINE=1 and HF_HOME pointing at it, exactly as a pod whose cache volume already holds them (in a
cluster the quantize Job is online and fills that volume). `servelab worker gguf --hf-repo` converts the
cached repository; `hf:` data locations become the files llama-imatrix / llama-perplexity and
llm-compressor read (jsonl in the llamacpp environment, parquet through pyarrow in the llmcompressor one).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from e2e_support import stdlib_text

from servelab.toolchain import envs

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]

REV = "0123456789abcdef0123456789abcdef01234567"


def cached_repo(home: Path, kind: str, repo_id: str) -> Path:
    """The snapshot directory of `repo_id` in an HF cache at `home` (refs/main names it)."""
    folder = home / "hub" / f"{kind}s--{repo_id.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True, exist_ok=True)
    (folder / "refs" / "main").write_text(REV)
    snapshot = folder / "snapshots" / REV
    snapshot.mkdir(parents=True, exist_ok=True)
    return snapshot


@pytest.fixture(scope="module")
def hf_home(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("hf-home")
    model = cached_repo(home, "model", "servelab/tiny-qwen3")
    for f in tiny_model.iterdir():
        if f.is_file():
            shutil.copy(f, model / f.name)
    data = cached_repo(home, "dataset", "servelab/stdlib-text")
    (data / "README.md").write_text(
        "---\nconfigs:\n- config_name: code\n  data_files:\n  - split: train\n    path: code/train.jsonl\n"
        "  - split: test\n    path: code/test.jsonl\n---\n"
    )
    (data / "code").mkdir()
    for split, names in (("train", ["textwrap.py", "difflib.py"]), ("test", ["statistics.py"])):
        lines = stdlib_text(names).splitlines()
        rows = ["\n".join(lines[i : i + 20]) for i in range(0, len(lines), 20)]
        (data / "code" / f"{split}.jsonl").write_text(
            "".join(json.dumps({"content": r}) + "\n" for r in rows)
        )
    return home


def offline(home: Path) -> dict[str, str]:
    return envs.worker_environ(HF_HOME=str(home), HF_HUB_OFFLINE="1")


def test_gguf_worker_converts_a_cached_hub_model_with_hub_data(hf_home: Path, llamacpp_bin: Path,
                                                                tmp_path: Path) -> None:  # fmt: skip
    out = tmp_path / "out"
    cmd = envs.worker_command(
        "llamacpp", "worker", "gguf", "--hf-repo", "servelab/tiny-qwen3", "--revision", "main", "--out", str(out),
        "--types", "Q8_0+imatrix", "--imatrix-text", "hf:servelab/stdlib-text:code@train#content",
        "--eval-text", "hf:servelab/stdlib-text:code@test", "--ctx", "128", "--chunks", "4", "--imatrix-chunks",
        "4", "--no-kld", "--threads", "2", "--result", f"file:{tmp_path / 'result.json'}",
    )  # fmt: skip
    proc = subprocess.run(cmd, env=offline(hf_home), capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads((tmp_path / "result.json").read_text())
    names = [v["name"] for v in result["variants"]]
    assert names == ["F16", "Q8_0+imatrix"] and all(v["perplexity"] for v in result["variants"])
    assert "data set servelab/stdlib-text (code) split train" in proc.stdout  # resolved, not read as a path
    converted = (out / "logs" / "convert.log").read_text()
    assert str(hf_home / "hub" / "models--servelab--tiny-qwen3" / "snapshots" / REV) in converted


def test_a_missing_hub_model_fails_naming_it(hf_home: Path, tmp_path: Path) -> None:
    cmd = envs.worker_command("llamacpp", "worker", "gguf", "--hf-repo", "servelab/absent", "--out", str(tmp_path),
                              "--types", "Q8_0")  # fmt: skip
    proc = subprocess.run(cmd, env=offline(hf_home), capture_output=True, text=True, timeout=600)
    assert proc.returncode != 0 and "cannot download model servelab/absent" in proc.stderr


def test_parquet_data_sets_in_the_llmcompressor_environment(tmp_path: Path) -> None:
    home = tmp_path / "hf"
    data = cached_repo(home, "dataset", "servelab/parquet")
    (data / "data").mkdir()
    script = (
        "import sys, pyarrow as pa, pyarrow.parquet as pq\n"
        "for split, n in (('train', 40), ('validation', 3)):\n"
        "    t = pa.table({'body': [f'{split} row {i}' for i in range(n)], 'n': list(range(n))})\n"
        "    pq.write_table(t, f'{sys.argv[1]}/data/{split}-00000-of-00001.parquet')\n"
        "from servelab.workers import hub\n"
        "rows = hub.resolve_rows('hf:servelab/parquet@train', limit=5)\n"
        "text = hub.resolve_text('hf:servelab/parquet@validation#body')\n"
        "import json; print('RESULT' + json.dumps([rows.read_text(), text.read_text()]))\n"
    )
    python = str(envs.env_python("llmcompressor"))
    proc = subprocess.run([python, "-c", script, str(data)], env=offline(home), capture_output=True, text=True,
                          timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT"))
    rows, text = json.loads(line.removeprefix("RESULT"))
    assert [json.loads(r) for r in rows.splitlines()] == [
        {"body": f"train row {i}", "n": i} for i in range(5)
    ]
    assert text.splitlines()[:3] == ["validation row 0", "validation row 1", "validation row 2"]
