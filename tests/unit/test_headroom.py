"""Client headroom and server concurrency of a load point (servelab.loadgen.headroom), the vllm-bench
generator's command and parser (on a real `vllm bench serve` 0.32 result captured against the
zero-work server: tests/data/vllm-bench-0.32.0), and the engines' concurrency-limit readings."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from servelab import loadgen
from servelab.api.results import LoadPointResult
from servelab.api.servebenchmark import ServeBenchmarkSpec
from servelab.engines import get
from servelab.engines.base import flag_value
from servelab.loadgen import PointShape, headroom
from servelab.loadgen.headroom import Headroom, ProcessMonitor, client_bound, label_sweep, schedule_delays
from servelab.loadgen.vllm_bench import VllmBench, figures_from_result
from servelab.workers import perf

pytestmark = pytest.mark.unit

VB = Path(__file__).resolve().parents[1] / "data" / "vllm-bench-0.32.0"


def test_schedule_delay_is_start_minus_when_a_slot_freed() -> None:
    # concurrency 2: requests 0, 1 due at t=0; request 2 when the first completion (t=1.0) freed a slot,
    # request 3 at the second completion (t=1.2)
    timings = [(0.0, 1.0), (0.01, 1.2), (1.05, 2.0), (1.2, 2.1)]
    assert schedule_delays(timings, 2) == pytest.approx([0.0, 0.01, 0.05, 0.0])
    assert schedule_delays([], 2) == []


def test_the_ceiling_table_is_shipped_and_interpolated() -> None:
    data = headroom.ceilings()
    assert set(data["generators"]) == set(loadgen.GENERATORS)  # every generator is calibrated
    assert data["machine"] and data["shape"] == {"promptTokens": 128, "outputTokens": 256, "ignoreEos": True}
    points = {p["concurrency"]: p["outputTokensPerSecond"] for p in data["generators"]["evalscope"]["points"]}
    lo, hi = min(points), max(points)
    assert headroom.ceiling("evalscope", lo) == points[lo]
    assert headroom.ceiling("evalscope", hi * 4) == points[hi]  # the nearest measured one outside
    mid = headroom.ceiling("evalscope", 16)
    assert mid is not None and min(points[8], points[32]) <= mid <= max(points[8], points[32])
    assert loadgen.get("vllm-bench").ceiling(1) == headroom.ceiling("vllm-bench", 1)
    assert headroom.ceiling("nope", 1) is None


def test_client_bound_rules() -> None:
    assert client_bound(Headroom(client_cpu=0.3, client_busy=0.4, schedule_loss=0.01)) is None
    why = client_bound(Headroom(client_cpu=0.85, client_busy=0.97))
    assert (
        why is not None
        and "client busy 0.97 of the point (its busiest thread running or waiting for a CPU; "
        "process CPU 0.85 core)"
        in why
    )
    why = client_bound(Headroom(client_cpu=0.2, client_busy=0.3, schedule_delay=0.012, schedule_loss=0.15))
    assert why is not None and "12.0 ms late on average (15% of the slot-time unused)" in why
    # the ceiling decides only where CPU could not be measured
    assert client_bound(Headroom(client_busy=0.2, ceiling_fraction=0.95)) is None
    why = client_bound(Headroom(ceiling_fraction=0.95))
    assert why is not None and "95% of the generator's calibrated ceiling" in why


def test_server_capped_by_slots_and_by_queue() -> None:
    h = Headroom(
        sustained=0.98, server_limit=1, server_flag="llama-server -np 1 (total_slots 1)", waiting_max=3
    )
    assert perf.label(h, 1, True) == ("ok", None)  # at the limit, nothing waits
    lab, why = perf.label(h, 4, True)
    assert lab == "server-capped" and why is not None
    assert why.startswith("the server runs 1 request(s) at a time (llama-server -np 1 (total_slots 1)): "
                          "sustained 0.98 of 4, up to 3 waiting")  # fmt: skip
    # a stated limit the server exceeded is not a cap
    assert perf.label(Headroom(sustained=3.9, server_limit=1, server_flag="x"), 4, False)[0] == "ok"
    # no stated limit, but the queue gauge shows requests waiting while fewer than the concurrency run
    lab, why = perf.label(Headroom(sustained=5.0, running_max=6, waiting_max=10), 16, True)
    assert lab == "server-capped" and why is not None and "ran at most 6 request(s) at a time" in why
    # client-bound wins over everything
    bound = Headroom(client_cpu=1.0, client_busy=1.0, sustained=0.9, server_limit=1, server_flag="x")
    assert perf.label(bound, 4, True)[0] == "client-bound"


def _point(c: int, tps: float, sustained: float | None, label: str = "ok") -> LoadPointResult:
    return LoadPointResult(concurrency=c, requests=4 * c, success_rate=1.0, output_tokens_per_second=tps,
                           sustained_concurrency=sustained, label=label)  # type: ignore[arg-type]  # fmt: skip


def test_saturation_is_a_sweep_verdict() -> None:
    points = [_point(1, 100, 1.0), _point(2, 190, 2.0), _point(4, 200, 3.9), _point(8, 204, 7.8),
              _point(16, 205, 2.0, "server-capped")]  # fmt: skip
    label_sweep(points)
    assert [p.label for p in points] == ["ok", "ok", "saturated", "saturated", "server-capped"]
    assert (
        points[2].label_reason is not None
        and "200 tok/s at concurrency 4 vs 190 at 2 (+5%)" in points[2].label_reason
    )
    points[3].output_tokens_per_second = 400  # idempotent, and it goes back when the figures change
    label_sweep(points)
    assert [p.label for p in points][:4] == ["ok", "ok", "saturated", "ok"]
    # a fall is not a plateau (the demo's noisy 2-core machine: 67 -> 20 tok/s from c=1 to c=2)
    noisy = [_point(1, 67, 0.8), _point(2, 20, 1.9)]
    label_sweep(noisy)
    assert [p.label for p in noisy] == ["ok", "ok"]


def test_process_monitor_measures_a_busy_child() -> None:
    spin = "import time\nt = time.time()\nwhile time.time() - t < 1.5: pass"
    child = subprocess.Popen([sys.executable, "-c", spin])
    monitor = ProcessMonitor(child.pid, interval=0.02).start()
    t0 = time.perf_counter()
    child.wait()
    t1 = time.perf_counter()
    monitor.stop()
    used = monitor.window(t0 + 0.2, t1 - 0.1)
    assert used is not None
    span, cpu, busiest = used
    assert 0.5 <= span <= t1 - t0
    # a spinning thread runs or waits for a CPU the whole time, whatever else the machine runs
    assert busiest / span > 0.8 and cpu / span > 0.1
    assert monitor.window(t0 + 0.2, t0 + 0.4) is None  # too short to mean anything
    assert monitor.window(t1 + 10, t1 + 11) is None  # not on the sampled clock


def test_vllm_bench_command_matches_the_evalscope_recipe(tmp_path: Path) -> None:
    shape = PointShape(url="http://h:8080/v1/chat/completions", model="tiny", tokenizer="/tok", prompt_tokens=160,
                       min_prompt_tokens=96, prefix_length=8, max_tokens=64, min_tokens=64, ignore_eos=True,
                       headers=["Connection=close"], api_key="sekrit")  # fmt: skip
    gen = VllmBench("/x/vllm")
    cmd = gen.point_command(shape, 4, 32, 100, tmp_path)
    assert cmd[:3] == ["/x/vllm", "bench", "serve"]
    for f, v in [("--base-url", "http://h:8080"), ("--endpoint", "/v1/chat/completions"), ("--backend", "openai-chat"),
                 ("--random-input-len", "128"), ("--random-range-ratio", "0.250000"), ("--random-prefix-len", "8"),
                 ("--random-output-len", "64"), ("--num-prompts", "32"), ("--max-concurrency", "4"), ("--seed", "100"),
                 ("--extra-body", '{"min_tokens": 64}'), ("--header", "Connection=close"),
                 ("--result-dir", str(tmp_path / "vllm-bench" / "parallel_4_number_32"))]:  # fmt: skip
        assert flag_value(cmd, f) == v, f
    assert "--ignore-eos" in cmd and "--save-detailed" in cmd and "--request-rate" not in cmd
    assert "sekrit" not in " ".join(cmd) and gen.environment(shape) == {"OPENAI_API_KEY": "sekrit"}
    # without a working `vllm` script the module is run by this interpreter
    assert VllmBench().command()[:2] in ([sys.executable, "-c"], [VllmBench().command()[0], "bench"])


def test_vllm_bench_result_gives_the_same_figures() -> None:
    data = json.loads((VB / "parallel_2_number_4" / "result.json").read_text())
    f = figures_from_result(data)
    assert (f.total, f.succeeded, f.failed) == (4, 4, 0)
    assert f.output_token_counts == [8] * 4 and f.sum_output_tokens == data["total_output_tokens"]
    assert f.avg_ttft_seconds == pytest.approx(data["mean_ttft_ms"] / 1000, rel=1e-6)
    assert f.avg_tpot_seconds == pytest.approx(data["mean_tpot_ms"] / 1000, rel=1e-6)
    assert f.avg_latency_seconds == pytest.approx(data["mean_e2el_ms"] / 1000, rel=1e-6)
    # servelab's duration (first start to last completion) is within vllm's own (task creation to gather)
    assert f.duration_seconds is not None and f.duration_seconds <= data["duration"]
    assert f.output_tokens_per_second == pytest.approx(data["output_throughput"], rel=0.1)
    assert len(f.timings) == 4 and f.warnings == []
    fig, where, warnings = VllmBench().parse_point(VB.parent / "vllm-bench-0.32.0-out", 2, 4)
    assert fig is None and where is None and warnings == []


def test_vllm_bench_counts_failed_requests() -> None:
    data = {"start_times": [1.0, 1.1], "ttfts": [0.1, 0.0], "latencies": [0.5, 0.0], "output_lens": [8, 0],
            "input_lens": [16, 16], "errors": ["", "Traceback...\nConnectionRefusedError: refused"]}  # fmt: skip
    f = figures_from_result(data)
    assert (f.succeeded, f.failed) == (1, 1)
    assert f.warnings == ["1 request(s) failed: ConnectionRefusedError: refused"]


class _Props(BaseHTTPRequestHandler):
    bodies: dict[str, Any] = {}

    def do_GET(self) -> None:
        body = self.bodies.get(self.path)
        self.send_response(200 if body is not None else 404)
        self.end_headers()
        self.wfile.write(json.dumps(body).encode() if body is not None else b"")

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def stating_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Props)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_engines_name_their_concurrency_limit(stating_server: str) -> None:
    llama, vllm, sglang = get("llamacpp"), get("vllm"), get("sglang")
    _Props.bodies = {"/props": {"total_slots": 1, "default_generation_settings": {}},
                     "/get_server_info": {"internal_states": [{"max_running_requests": 48}]}}  # fmt: skip
    assert llama.concurrency_limit(stating_server, ["llama-server", "-m", "x", "-np", "1"]) == (
        1, "llama-server -np 1 (total_slots 1)")  # fmt: skip
    assert llama.concurrency_limit(stating_server, None) == (1, "llama-server's default -np (auto: 4 slots) "
                                                             "(total_slots 1)")  # fmt: skip
    assert llama.concurrency_limit(None, ["llama-server", "--parallel=8"]) == (8, "llama-server -np 8")
    assert llama.concurrency_limit(None, ["llama-server"]) == (
        4,
        "llama-server's default -np (auto: 4 slots)",
    )
    assert vllm.concurrency_limit(stating_server, ["vllm", "serve", "m", "--max-num-seqs", "64"]) == (
        64, "vllm --max-num-seqs 64")  # fmt: skip
    assert vllm.concurrency_limit(None, ["vllm", "serve", "m"])[0] is None
    assert sglang.concurrency_limit(stating_server, ["python3", "-m", "sglang.launch_server"]) == (
        48, "SGLang's default --max-running-requests (max_running_requests 48)")  # fmt: skip
    assert sglang.concurrency_limit(None, ["x", "--max-running-requests", "16"]) == (
        16, "sglang --max-running-requests 16")  # fmt: skip
    _Props.bodies = {}
    assert llama.concurrency_limit(stating_server, ["llama-server", "-np", "2"]) == (2, "llama-server -np 2")


def test_plan_passes_the_server_command_and_the_client_bound_switch() -> None:
    from servelab.engines import ServedModel
    from servelab.plan import compile_benchmark

    spec = ServeBenchmarkSpec.model_validate({
        "model": {"path": "/m.gguf"}, "engine": {"name": "llamacpp", "llamacpp": {"parallelSlots": 1}},
        "load": {"parallel": [1, 2], "number": [2, 4], "generator": "vllm-bench", "allowClientBound": True},
    })  # fmt: skip
    plan = compile_benchmark(
        spec, ServedModel("/m.gguf"), artifacts="/a", server_url=lambda p: f"http://h:{p}"
    )
    step = next(s for s in plan.steps if s.result == "points")
    assert step.image == "vllm-cpu" and "--allow-client-bound" in step.argv
    command = json.loads(flag_value(step.argv, "--server-command") or "[]")
    assert command[0] == "llama-server" and flag_value(command, "-np") == "1"


def test_status_and_the_run_table_carry_the_labels() -> None:
    from servelab import report
    from servelab import status as st
    from servelab.api.servebenchmark import ServeBenchmarkStatus

    s = ServeBenchmarkStatus()
    capped = _point(4, 99, 1.0, "server-capped")
    capped.label_reason = "the server runs 1 request(s) at a time (llama-server -np 1 (total_slots 1))"
    st.fold_points(s, [_point(1, 100, 1.0)], 3)
    st.fold_points(s, [_point(2, 101, 2.0), capped], 3)
    assert [p.label for p in s.results] == ["ok", "saturated", "server-capped"]
    table = report.load_table(s)
    assert "| Client CPU | Sust. conc. |         Label |" in table
    assert "c=2 saturated: 101 tok/s at concurrency 2 vs 100 at 1 (+1%)" in table
    assert (
        "c=4 server-capped: the server runs 1 request(s) at a time (llama-server -np 1 (total_slots 1))"
        in table
    )
