"""Parsers of the perf/gguf workers, on real outputs captured from evalscope 1.14.1 and llama.cpp.

tests/data/evalscope-1.14.1/ holds two real `evalscope perf` point directories (JSON files and the
per-request SQLite database) captured by running `servelab worker perf` against llama-server with the
tiny model: `ok/parallel_4_number_8` (all succeeded) and `failed/parallel_1_number_2` (a server that
answered HTTP 500). tests/data/llamacpp/ holds a real `/metrics` scrape and llama-perplexity outputs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from servelab.workers import engine_metrics, perf
from servelab.workers.common import percentile
from servelab.workers.gguf import parse_kld, parse_perplexity
from servelab.workers.perfparse import (
    cross_check,
    figures_from_db,
    figures_from_json,
    find_point_dir,
    normalize_summary,
    parse_point_dir,
)

pytestmark = pytest.mark.unit

DATA = Path(__file__).resolve().parents[1] / "data"
ES = DATA / "evalscope-1.14.1"
OK = ES / "ok" / "parallel_4_number_8"
FAILED = ES / "failed" / "parallel_1_number_2"
LLAMA = DATA / "llamacpp"


def test_db_figures_match_evalscope_summary() -> None:
    f = figures_from_db(OK / "benchmark_data.db")
    summary = json.loads((OK / "benchmark_summary.json").read_text())
    assert (f.total, f.succeeded, f.failed) == (8, 8, 0)
    assert f.success_rate == 1.0
    assert f.output_token_counts == [32] * 8 and f.avg_output_tokens == 32
    # evalscope's own (rounded, milliseconds) summary agrees with the recomputation
    assert cross_check(f, summary) == []
    assert f.avg_ttft_seconds == pytest.approx(summary["Avg TTFT (ms)"] / 1000, rel=0.01, abs=1e-4)
    assert f.avg_tpot_seconds == pytest.approx(summary["Avg TPOT (ms)"] / 1000, rel=0.02, abs=1e-5)
    assert f.output_tokens_per_second == pytest.approx(summary["Output Throughput (tok/s)"], rel=0.01)
    assert f.rps == pytest.approx(summary["Req Throughput (req/s)"], rel=0.01, abs=1e-3)
    assert f.sum_output_tokens == 8 * 32


def test_db_percentiles_match_evalscope_percentile_file() -> None:
    f = figures_from_db(OK / "benchmark_data.db")
    rows = json.loads((OK / "benchmark_percentile.json").read_text())
    p99 = next(r for r in rows if r["Percentiles"] == "99%")
    assert f.p99_latency_seconds == pytest.approx(p99["Latency (s)"], abs=1e-4)
    assert f.p99_ttft_seconds == pytest.approx(p99["TTFT (ms)"] / 1000, abs=1e-4)
    assert f.p99_tpot_seconds == pytest.approx(p99["TPOT (ms)"] / 1000, abs=1e-4)


def test_json_fallback_agrees_with_db() -> None:
    db = figures_from_db(OK / "benchmark_data.db")
    js = figures_from_json(
        json.loads((OK / "benchmark_summary.json").read_text()),
        json.loads((OK / "benchmark_percentile.json").read_text()),
    )
    assert js.source == "summary" and (js.total, js.succeeded) == (8, 8)
    for name in (
        "avg_latency_seconds",
        "avg_ttft_seconds",
        "output_tokens_per_second",
        "p99_latency_seconds",
    ):
        assert getattr(js, name) == pytest.approx(getattr(db, name), rel=0.02, abs=1e-3), name


def test_parse_point_dir_without_db_uses_summary(tmp_path: Path) -> None:
    point = tmp_path / "perf" / "parallel_4_number_8"
    shutil.copytree(OK, point)
    (point / "benchmark_data.db").unlink()
    assert find_point_dir(tmp_path, 4, 8) == point
    f = parse_point_dir(point)
    assert f.source == "summary" and f.succeeded == 8
    assert any("benchmark_data.db missing" in w for w in f.warnings)


def test_failed_point_keeps_its_rows() -> None:
    f = parse_point_dir(FAILED)
    assert (f.total, f.succeeded, f.failed) == (2, 0, 2)
    assert f.avg_latency_seconds is None and f.output_tokens_per_second == 0
    summary = json.loads((FAILED / "benchmark_summary.json").read_text())
    # evalscope writes -1 for what it cannot compute; the alias table turns that into None
    assert normalize_summary(summary)["avg_latency_seconds"] is None


def _args(**kw: object) -> argparse.Namespace:
    base = {"min_success_rate": 1.0, "no_ignore_eos": False, "max_tokens": 32}
    base.update(kw)
    return argparse.Namespace(**base)


def test_validity_rules() -> None:
    ok = figures_from_db(OK / "benchmark_data.db")
    assert perf.judge(ok, 8, _args(), None, 0) == []
    assert "mean output tokens 32.0 != requested 64" in perf.judge(ok, 8, _args(max_tokens=64), None, 0)[0]
    assert perf.judge(ok, 8, _args(max_tokens=64, no_ignore_eos=True), None, 0) == []
    assert "success rate 0.800 (8/10)" in perf.judge(ok, 10, _args(), None, 0)[0]
    assert perf.judge(ok, 10, _args(min_success_rate=0.75), None, 0) == []
    assert perf.judge(ok, 8, _args(), "served model(s) ['x'] do not include 'y'", 0) == [
        "served model(s) ['x'] do not include 'y'"
    ]
    assert perf.judge(None, 8, _args(), None, 2) == ["evalscope produced no results (rc=2)"]
    failed = parse_point_dir(FAILED)
    assert perf.judge(failed, 2, _args(), None, 0) == ["success rate 0.000 (0/2) below 1"]


def test_a_point_where_no_request_finished_has_no_label() -> None:
    assert perf.labelled(parse_point_dir(FAILED), "ok", None) == (None, None)
    assert perf.labelled(None, "ok", None) == (None, None)
    ok = figures_from_db(OK / "benchmark_data.db")
    assert perf.labelled(ok, "server-capped", "llama-server -np 1") == ("server-capped", "llama-server -np 1")


def test_old_summary_keys_are_seconds() -> None:
    # evalscope 1.0 - 1.6 names and units (seconds)
    old = {
        "Time taken for tests (s)": 10.0,
        "Number of concurrency": 2,
        "Total requests": 4,
        "Succeed requests": 3,
        "Failed requests": 1,
        "Average latency (s)": 1.5,
        "Average time to first token (s)": 0.25,
        "Average time per output token (s)": 0.01,
        "Output token throughput (tok/s)": 100.0,
    }
    s = normalize_summary(old)
    assert (s["total"], s["succeeded"], s["failed"]) == (4, 3, 1)
    assert s["avg_ttft_seconds"] == 0.25 and s["avg_tpot_seconds"] == 0.01
    # 1.7-1.9 names, milliseconds
    mid = normalize_summary({"TTFT (ms)": 250.0, "TPOT (ms)": 10.0, "Success Requests": 3})
    assert mid["avg_ttft_seconds"] == pytest.approx(0.25) and mid["avg_tpot_seconds"] == pytest.approx(0.01)


def test_nearest_rank_percentile() -> None:
    data = [float(i) for i in range(1, 101)]
    assert percentile(data, 99) == 99.0
    assert percentile(data, 50) == 50.0
    assert percentile(data, 100) == 100.0
    assert percentile([3.0], 99) == 3.0
    assert percentile([], 99) is None


def test_llamacpp_metrics_deltas() -> None:
    before = engine_metrics.parse_prometheus((LLAMA / "metrics-before.txt").read_text())
    after = engine_metrics.parse_prometheus((LLAMA / "metrics-after.txt").read_text())
    assert "llamacpp:tokens_predicted_total" in before
    d = engine_metrics.server_deltas(before, after, 2.0)
    assert d is not None
    gen = after["llamacpp:tokens_predicted_total"] - before["llamacpp:tokens_predicted_total"]
    assert d.generation_tokens == gen and gen > 0
    assert d.output_tokens_per_second == gen / 2.0
    assert d.requests is None  # llama-server exports no request counter
    assert engine_metrics.server_deltas(None, after, 2.0) is None


def test_vllm_style_metrics_sum_labels() -> None:
    text = """# HELP vllm:request_success_total x
# TYPE vllm:request_success_total counter
vllm:request_success_total{engine="0",finished_reason="length",model_name="tiny"} 7.0
vllm:request_success_total{engine="0",finished_reason="stop",model_name="tiny"} 1.0
vllm:generation_tokens_total{engine="0",model_name="tiny"} 256.0
vllm:time_to_first_token_seconds_sum{engine="0",model_name="tiny"} 0.8
vllm:time_to_first_token_seconds_count{engine="0",model_name="tiny"} 8.0
"""
    after = engine_metrics.parse_prometheus(text)
    assert after["vllm:request_success_total"] == 8.0
    d = engine_metrics.server_deltas({}, after, 4.0)
    assert d is not None
    assert (d.requests, d.generation_tokens, d.output_tokens_per_second) == (8.0, 256.0, 64.0)
    assert d.avg_ttft_seconds == pytest.approx(0.1)


def test_perplexity_outputs() -> None:
    plain = (LLAMA / "perplexity-f16.log").read_text()
    ppl, err = parse_perplexity(plain)
    assert ppl is not None and err is not None and 1000 < ppl < 20000 and err > 0
    assert parse_kld(plain) is None
    kl = (LLAMA / "perplexity-kld.log").read_text()
    ppl_q, _ = parse_perplexity(kl)
    kld = parse_kld(kl)
    assert ppl_q is not None and kld is not None and 0 < kld < 0.1
    assert parse_perplexity("no numbers here") == (None, None)


def test_evalscope_db_schema_is_what_we_read() -> None:
    with sqlite3.connect(OK / "benchmark_data.db") as con:
        cols = [r[1] for r in con.execute("pragma table_info(result)")]
    for col in (
        "start_time",
        "completed_time",
        "success",
        "latency",
        "first_chunk_latency",
        "completion_tokens",
    ):
        assert col in cols


@contextlib.contextmanager
def models_server(bodies: list[bytes]) -> Iterator[str]:
    """A server whose /v1/models answers each body in turn, then the last one for ever; its root URL."""
    import http.server
    import threading

    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = bodies.pop(0) if len(bodies) > 1 else bodies[0]
            self.send_response(200)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a: object) -> None:
            pass

    srv = http.server.HTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}"
    finally:
        srv.shutdown()


def test_a_server_is_ready_for_load_once_it_lists_a_model() -> None:
    """Ollama answers /v1/models with `"data": null` until `ollama create` has made its model: the sweep's
    client, started before the server, must not begin measuring then (its model check would fail)."""
    from servelab.workers.common import served_models, wait_ready

    bodies = [b'{"object": "list", "data": null}'] * 3 + [
        b'{"object": "list", "data": [{"id": "tiny:latest"}]}'
    ]
    with models_server(bodies) as root:
        assert served_models(root) == []  # null is no model, not a crash
        waited = wait_ready(root, 30)
        assert 1.5 <= waited < 30 and served_models(root) == ["tiny:latest"]


def test_wait_ready_for_a_server_that_does_not_list_its_model() -> None:
    """`transformers serve` lists its Hub cache, not the model it is pinned to (often an empty list):
    its first answer is ready; waiting for a listed model would hold the sweep until the timeout (CI hit
    that: 900 s). A server that lists its model is still waited for while its list is empty."""
    from servelab.workers.common import wait_ready

    with models_server([b'{"object": "list", "data": []}']) as root:
        assert wait_ready(root, 30, lists_model=False) < 1.0
        assert wait_ready(root, 2.5, lists_model=True) >= 2.5
