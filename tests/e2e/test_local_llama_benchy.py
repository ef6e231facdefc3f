"""spec.llamaBenchy end to end through the local executor: `servelab run` serves the tiny GGUF with
llama-server and runs write-up 003's context-depth harness, llama-benchy 0.3.5 (pinned in the evalscope
environment), against it: its rows in status and its table (t/s, peak t/s, ttfr, est_ppt, e2e_ttft) in
servelab run's output. spec.contextSweep (servelab's own depth client) runs against the same server in the
same run, so the two can be compared on one server."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from e2e_support import servelab_run

pytestmark = pytest.mark.e2e


def test_llama_benchy_depth_sweep_beside_the_depth_client(tmp_path: Path) -> None:
    import pydoc_data.topics

    from servelab.toolchain import envs, llamacpp
    from servelab_dev.tinymodel import ensure_tiny_gguf, ensure_tiny_model

    envs.ensure_env("evalscope")
    llamacpp.ensure_llamacpp()
    gguf, tokenizer = ensure_tiny_gguf(), ensure_tiny_model()
    book = tmp_path / "book.txt"  # llama-benchy's prompts come from a book: local text, nothing downloaded
    book.write_text("\n\n".join(pydoc_data.topics.topics.values()), encoding="utf-8")
    doc = {"apiVersion": "servelab.dev/v1alpha1", "kind": "ServeBenchmark", "metadata": {"name": "tiny-benchy"},
           "spec": {"model": {"path": str(gguf), "tokenizer": str(tokenizer)},
                    "engine": {"name": "llamacpp", "maxModelLen": 1024},
                    # the tiny model cannot say "Paris": llama-benchy's coherence check is skipped
                    "llamaBenchy": {"depths": [0, 64], "promptTokens": [32], "genTokens": [8], "runs": 2,
                                    "coherenceCheck": False, "corpusPath": str(book)},
                    "contextSweep": {"depths": [0, 64], "promptTokens": 32, "genTokens": 8, "runs": 2},
                    "timeouts": {"serverReadySeconds": 120}}}  # fmt: skip
    proc, runs = servelab_run(tmp_path, doc, timeout=900)
    d = runs / "servebenchmark-tiny-benchy"
    status = yaml.safe_load((d / "status.yaml").read_text())["status"]
    assert status["phase"] == "Succeeded"
    rows = status["llamaBenchy"]
    assert [(r["test"], r["kind"], r["depth"]) for r in rows] == [
        ("pp32", "pp", 0), ("tg8", "tg", 0), ("pp32 @ d64", "pp", 64), ("tg8 @ d64", "tg", 64)]  # fmt: skip
    for r in rows:
        assert r["tokensPerSecond"]["mean"] > 0 and r["version"] == "0.3.5"
        if r["kind"] == "pp":
            assert 0 < r["estPptSeconds"]["mean"] <= r["e2eTtftSeconds"]["mean"]
        else:
            assert r["peakTokensPerSecond"]["mean"] > 0
    report = json.loads(next(d.rglob("llama-benchy.json")).read_text())
    # every run of every test measured: --exit-on-first-fail, and a connection per request to llama-server
    assert all(len(b["pp_throughput"]["values"]) == 2 for b in report["benchmarks"])
    # the write-up's table in servelab run's output, beside the depth client's
    header = next(ln for ln in proc.stdout.splitlines() if "est_ppt (ms)" in ln)
    assert [c.strip() for c in header.strip("|").split("|")] == [
        "model", "test", "t/s", "peak t/s", "ttfr (ms)", "est_ppt (ms)", "e2e_ttft (ms)"]  # fmt: skip
    assert "pp32 @ d64" in proc.stdout and "tg8 @ d64" in proc.stdout
    # the depth client on the same server: its rows reach status too; every request it sent generated exactly
    # genTokens (ignore_eos + min_tokens, counted by the server), which llama-benchy does not ask for (it
    # sends max_tokens only: a model that stops early gives tg over fewer tokens)
    assert [r["depth"] for r in status["depth"]] == [0, 64]
    sent = json.loads(next(d.rglob("depth-requests.json")).read_text())
    assert [r["usage"]["completion_tokens"] for r in sent] == [8, 8, 8, 8]
    # servelab report: the same table for the run
    rep = subprocess.run([sys.executable, "-m", "servelab", "report", "--runs-dir", str(runs)],
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert rep.returncode == 0, rep.stderr[-2000:]
    assert "llama-benchy 0.3.5: tiny-benchy" in rep.stdout and "pp32 @ d64" in rep.stdout


def test_the_depth_client_measures_a_model_that_stops_at_once(tmp_path: Path) -> None:
    """What the depth client adds, shown on one server: llama-server with the tiny model's end tokens
    biased (+100, so every completion ends at its first token unless the request ignores EOS). The depth
    client sends ignore_eos and min_tokens and measures pp and tg at every depth (the server generated every
    token it asked for); llama-benchy sends max_tokens only, gets no content token, and measures nothing
    (only ttfr): its step fails, saying so."""
    import pydoc_data.topics

    from servelab.toolchain import envs, llamacpp
    from servelab_dev.tinymodel import ensure_tiny_gguf, ensure_tiny_model

    envs.ensure_env("evalscope")
    llamacpp.ensure_llamacpp()
    gguf, tokenizer = ensure_tiny_gguf(), ensure_tiny_model()
    eos = json.loads((tokenizer / "generation_config.json").read_text())["eos_token_id"]
    bias = [a for t in eos for a in ("--logit-bias", f"{t}+100")]
    book = tmp_path / "book.txt"
    book.write_text("\n\n".join(pydoc_data.topics.topics.values()), encoding="utf-8")
    doc = {"apiVersion": "servelab.dev/v1alpha1", "kind": "ServeBenchmark", "metadata": {"name": "tiny-eos"},
           "spec": {"model": {"path": str(gguf), "tokenizer": str(tokenizer)},
                    "engine": {"name": "llamacpp", "maxModelLen": 1024, "extraArgs": bias},
                    "contextSweep": {"depths": [0, 64], "promptTokens": 32, "genTokens": 8, "runs": 2},
                    "llamaBenchy": {"depths": [0, 64], "promptTokens": [32], "genTokens": [8], "runs": 2,
                                    "coherenceCheck": False, "corpusPath": str(book)},
                    "timeouts": {"serverReadySeconds": 120}}}  # fmt: skip
    f = tmp_path / "m.yaml"
    f.write_text(yaml.safe_dump(doc))
    runs = tmp_path / "runs"
    proc = subprocess.run([sys.executable, "-m", "servelab", "run", "-f", str(f), "--runs-dir", str(runs)],
                          capture_output=True, text=True, timeout=900)  # fmt: skip
    assert proc.returncode == 1, proc.stdout[-4000:] + proc.stderr[-2000:]
    d = runs / "servebenchmark-tiny-eos"
    status = yaml.safe_load((d / "status.yaml").read_text())["status"]
    assert status["phase"] == "Failed" and "llama-benchy measured nothing" in status["message"]
    # the depth client: pp and tg at both depths, every request generated the 8 tokens it asked for
    assert [(r["depth"], r["ppTokensPerSecond"] > 0, r["tgTokensPerSecond"] > 0) for r in status["depth"]] == [
        (0, True, True), (64, True, True)]  # fmt: skip
    sent = json.loads(next(d.rglob("depth-requests.json")).read_text())
    assert [r["usage"]["completion_tokens"] for r in sent] == [8, 8, 8, 8]
    # llama-benchy on the same server: every test ran, none got a token to time pp or tg by
    report = json.loads(next(d.rglob("llama-benchy.json")).read_text())
    assert [b["context_size"] for b in report["benchmarks"]] == [0, 64]
    for b in report["benchmarks"]:
        assert b["pp_throughput"] is None and b["tg_throughput"] is None and b["e2e_ttft"] is None
        assert len(b["ttfr"]["values"]) == 2
    assert not status.get("llamaBenchy")
