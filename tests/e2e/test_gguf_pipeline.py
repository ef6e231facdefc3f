"""The GGUF experiment in miniature, with real parts only.

tiny Qwen3 (random weights, local tokenizer) -> `servelab worker gguf` (f16 GGUF, imatrix, IQ4_XS and
Q4_K_M variants, perplexity and KL divergence) -> a real llama-server with --metrics ->
`servelab worker perf` (evalscope perf 1.14.1, two points) -> `servelab worker eval` (evalscope eval
on local QA/MCQ files) -> `servelab worker depth`. Plus the failure paths: a dead server and a server
that answers every request with HTTP 500 give invalid points that keep their data.
"""

from __future__ import annotations

import csv
import http.server
import json
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_support import LlamaServer, free_port, run_worker, stdlib_text

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(5400)]

PROMPT_TOKENS = 128
MAX_TOKENS = 32
PARALLEL = [1, 4]
NUMBER = [4, 8]


def _result(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


@pytest.fixture(scope="module")
def gguf_run(
    tiny_model: Path, llamacpp_bin: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    work = tmp_path_factory.mktemp("gguf")
    calib = work / "calibration.txt"
    calib.write_text(stdlib_text(["textwrap.py", "difflib.py"]))
    evaltxt = work / "eval.txt"
    evaltxt.write_text(stdlib_text(["statistics.py", "fractions.py"]))
    out = work / "out"
    proc = run_worker(
        "llamacpp",
        [
            "gguf",
            "--hf-dir",
            tiny_model,
            "--out",
            out,
            "--types",
            "IQ4_XS+imatrix",
            "Q4_K_M",
            "Q4_K_M+imatrix",
            "--imatrix-text",
            calib,
            "--eval-text",
            evaltxt,
            "--leave-output-tensor",
            "--ctx",
            "256",
            "--chunks",
            "16",
            "--threads",
            "2",
            "--result",
            f"file:{work / 'published.json'}",
        ],
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return _result(work / "published.json")


def test_gguf_variants(gguf_run: dict[str, Any]) -> None:
    variants = {v["name"]: v for v in gguf_run["variants"]}
    assert list(variants) == ["F16", "IQ4_XS+imatrix", "Q4_K_M", "Q4_K_M+imatrix"]
    base = variants["F16"]
    assert Path(base["path"]).is_file()
    assert base["sizeBytes"] == Path(base["path"]).stat().st_size
    assert base["durationSeconds"] > 0
    assert Path(gguf_run["imatrix"]["path"]).is_file()
    # random weights: perplexity sits near the vocabulary size (4096)
    assert 1000 < base["perplexity"] < 20000
    assert base["perplexityError"] > 0
    for name in ("IQ4_XS+imatrix", "Q4_K_M", "Q4_K_M+imatrix"):
        v = variants[name]
        assert Path(v["path"]).is_file()
        assert v["sizeBytes"] == Path(v["path"]).stat().st_size
        # 4-bit weights with an f16 output tensor: smaller than f16, not absurdly so
        assert 0.2 * base["sizeBytes"] < v["sizeBytes"] < 0.8 * base["sizeBytes"]
        assert v["durationSeconds"] > 0
        assert abs(v["perplexity"] / base["perplexity"] - 1) < 0.1
        assert 0 < v["klDivergence"] < 0.1
    assert variants["IQ4_XS+imatrix"]["sizeBytes"] < variants["Q4_K_M"]["sizeBytes"]


@pytest.fixture(scope="module")
def served(gguf_run: dict[str, Any], server_factory: type[LlamaServer]) -> LlamaServer:
    path = next(Path(v["path"]) for v in gguf_run["variants"] if v["name"] == "IQ4_XS+imatrix")
    server = server_factory(path, "tiny-iq4xs")  # type: ignore[call-arg]
    server.wait_ready()
    return server


@pytest.fixture(scope="module")
def perf_run(
    served: LlamaServer, tiny_model: Path, evalscope_env: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[dict[str, Any], Path]:
    out = tmp_path_factory.mktemp("perf")
    proc = run_worker(
        "evalscope",
        [
            "perf",
            "--url",
            served.base,
            "--model",
            served.alias,
            "--tokenizer-path",
            tiny_model,
            "--parallel",
            *map(str, PARALLEL),
            "--number",
            *map(str, NUMBER),
            "--prompt-tokens",
            str(PROMPT_TOKENS),
            "--max-tokens",
            str(MAX_TOKENS),
            "--out",
            out,
        ],
    )
    print(proc.stdout)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return _result(out / "result.json"), out


def test_perf_sweep(perf_run: tuple[dict[str, Any], Path]) -> None:
    result, out = perf_run
    assert result["engine"] == "llamacpp"
    assert result["valid"] is True
    assert [(p["concurrency"], p["requests"]) for p in result["points"]] == list(
        zip(PARALLEL, NUMBER, strict=True)
    )
    for p in result["points"]:
        assert p["valid"] is True, p.get("reason")
        assert p["successRate"] == 1.0 and p["succeeded"] == p["requests"] and p["failed"] == 0
        assert p["avgOutputTokens"] == MAX_TOKENS
        assert p["outputTokensPerSecond"] > 0 and p["totalTokensPerSecond"] > p["outputTokensPerSecond"]
        assert p["rps"] > 0
        assert 0 < p["avgTtftSeconds"] < p["avgLatencySeconds"] <= p["p99LatencySeconds"]
        assert 0 < p["avgTpotSeconds"] <= p["p99TpotSeconds"]
        # the prompt was sized with the HF tokenizer; the server's GGUF tokenizer counts the same
        assert abs(p["avgInputTokens"] - PROMPT_TOKENS) <= 1
        # throughput figures are consistent with each other
        assert p["outputTokensPerSecond"] == pytest.approx(p["rps"] * MAX_TOKENS, rel=1e-6)
        (path,) = (out / "points").glob(f"*-p{p['concurrency']}-n{p['requests']}.json")  # <index>-p<c>-n<n>
        detail = json.loads(path.read_text())
        # evalscope's own summary agrees with the figures recomputed from its database
        # (a point shorter than the CPU sampler's window says so instead of guessing the client's CPU)
        assert [w for w in detail["warnings"] if not w.startswith("client CPU not measured")] == []
        # the server counted what the client counted
        server = p["server"]
        assert server["generationTokens"] == detail["sumOutputTokens"] == p["requests"] * MAX_TOKENS
        assert server["promptTokens"] == detail["sumPromptTokens"]
        assert server["outputTokensPerSecond"] == pytest.approx(p["outputTokensPerSecond"], rel=1e-6)
        db = Path(p["artifacts"]) / "benchmark_data.db"
        with sqlite3.connect(db) as con:
            assert con.execute("select count(*), sum(success) from result").fetchone() == (p["requests"],) * 2


def test_eval_local_sets(served: LlamaServer, evalscope_env: Path, tmp_path: Path) -> None:
    qa = tmp_path / "qa"
    qa.mkdir()
    rows = [
        {"query": "What is the capital of France?", "response": "Paris"},
        {"query": "How many legs does a spider have?", "response": "Eight"},
        {"query": "What colour is the sky on a clear day?", "response": "Blue"},
        {"query": "Name a prime number between 10 and 15.", "response": "11 or 13"},
        {"query": "Which planet is called the red planet?", "response": "Mars"},
    ]
    (qa / "example.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    mcq = tmp_path / "mcq"
    mcq.mkdir()
    with (mcq / "example_val.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "question", "A", "B", "C", "D", "answer"])
        w.writerow([1, "2 + 2 = ?", "3", "4", "5", "6", "B"])
        w.writerow([2, "Water freezes at (Celsius)?", "0", "10", "50", "100", "A"])
        w.writerow([3, "The largest ocean?", "Arctic", "Indian", "Atlantic", "Pacific", "D"])
    dataset_args = {
        "general_qa": {"local_path": str(qa), "subset_list": ["example"], "metric_list": ["Rouge"]},
        "general_mcq": {"local_path": str(mcq), "subset_list": ["example"]},
    }
    out = tmp_path / "out"
    proc = run_worker(
        "evalscope",
        [
            "eval",
            "--api-url",
            served.base + "/v1",
            "--model",
            served.alias,
            "--datasets",
            "general_qa",
            "general_mcq",
            "--dataset-args",
            json.dumps(dataset_args),
            "--generation-config",
            json.dumps({"max_tokens": 16, "temperature": 0.0}),
            "--out",
            out,
        ],
    )
    print(proc.stdout)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = _result(out / "result.json")
    assert result["missingDatasets"] == []
    by_set: dict[str, list[dict[str, Any]]] = {}
    for s in result["scores"]:
        by_set.setdefault(s["dataset"], []).append(s)
        assert 0.0 <= s["score"] <= 1.0
    assert {s["num"] for s in by_set["general_qa"]} == {len(rows)}
    assert any("rouge" in s["metric"].lower() for s in by_set["general_qa"])
    assert [s["num"] for s in by_set["general_mcq"]] == [3]
    assert "acc" in by_set["general_mcq"][0]["metric"]


def test_depth_sweep(served: LlamaServer, tiny_model: Path, evalscope_env: Path, tmp_path: Path) -> None:
    proc = run_worker(
        "evalscope",
        [
            "depth",
            "--url",
            served.base,
            "--model",
            served.alias,
            "--tokenizer-path",
            tiny_model,
            "--depths",
            "0",
            "512",
            "--prompt-tokens",
            "64",
            "--gen-tokens",
            "16",
            "--out",
            tmp_path,
        ],
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    points = _result(tmp_path / "result.json")["points"]
    assert [p["depth"] for p in points] == [0, 512]
    for p in points:
        assert p["ppTokensPerSecond"] > 0 and p["tgTokensPerSecond"] > 0 and p["ttftSeconds"] > 0
    raw = json.loads((tmp_path / "depth-requests.json").read_text())
    for r in raw:
        assert r["usage"]["completion_tokens"] == 16
        assert abs(r["usage"]["prompt_tokens"] - (r["depth"] + 64)) <= 16  # + the chat template's tokens


def _failing_perf(url: str, model: str, tiny_model: Path, out: Path) -> tuple[int, dict[str, Any], str]:
    proc = run_worker(
        "evalscope",
        [
            "perf",
            "--url",
            url,
            "--model",
            model,
            "--tokenizer-path",
            tiny_model,
            "--parallel",
            "1",
            "--number",
            "2",
            "--prompt-tokens",
            "32",
            "--max-tokens",
            "8",
            "--request-timeout",
            "30",
            "--connect-timeout",
            "5",
            "--out",
            out,
        ],
    )
    return proc.returncode, _result(out / "result.json"), proc.stdout + proc.stderr


def test_perf_dead_server_point_is_invalid(tiny_model: Path, evalscope_env: Path, tmp_path: Path) -> None:
    rc, result, log = _failing_perf(f"http://127.0.0.1:{free_port()}", "tiny", tiny_model, tmp_path)
    assert rc == 1, log
    assert result["valid"] is False
    [point] = result["points"]
    assert point["valid"] is False
    assert "unreachable" in point["reason"]
    assert point["successRate"] == 0.0 and point["succeeded"] == 0 and point["failed"] == 2
    # the data is kept: evalscope's per-request database records both failures
    db = Path(point["artifacts"]) / "benchmark_data.db"
    with sqlite3.connect(db) as con:
        assert con.execute("select count(*), sum(success) from result").fetchone() == (2, 0)


class _ErrorHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/v1/models":
            body = json.dumps({"object": "list", "data": [{"id": "tiny", "object": "model"}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        else:
            self.send_error(404)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        body = b'{"error": {"message": "engine exploded", "code": 500}}'
        self.send_response(500)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def error_server() -> Iterator[str]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _ErrorHandler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_perf_error_server_point_is_invalid(
    error_server: str, tiny_model: Path, evalscope_env: Path, tmp_path: Path
) -> None:
    rc, result, log = _failing_perf(error_server, "tiny", tiny_model, tmp_path)
    assert rc == 1, log
    [point] = result["points"]
    assert point["valid"] is False
    assert "success rate 0.000 (0/2)" in point["reason"]
    assert "unreachable" not in point["reason"]  # the model list was fine
    assert point["failed"] == 2 and point.get("server") is None  # no /metrics on this server
    db = Path(point["artifacts"]) / "benchmark_data.db"
    with sqlite3.connect(db) as con:
        assert con.execute("select count(*), sum(success) from result").fetchone() == (2, 0)


def test_perf_wrong_model_name_is_invalid(
    served: LlamaServer, tiny_model: Path, evalscope_env: Path, tmp_path: Path
) -> None:
    rc, result, log = _failing_perf(served.base, "not-the-served-model", tiny_model, tmp_path)
    assert rc == 1, log
    [point] = result["points"]
    assert point["valid"] is False
    assert "do not include 'not-the-served-model'" in point["reason"]
