"""`servelab worker depth`: prompt-processing and generation speed at growing context depths.

For each depth d, one streamed chat request with d + p prompt tokens and g output tokens
(`max_tokens = g`, `ignore_eos`). Time to first token gives prompt processing speed
(prompt tokens the server reports / TTFT: nothing is cached, so every prompt token is processed),
the rest of the stream gives generation speed ((g - 1) / (latency - TTFT)). Every request gets its
own random token sequence, so the server's prompt cache cannot help. Uses only the standard library
plus the tokenizer (transformers, present in the evalscope environment) to size prompts in tokens.
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from servelab.api.results import DepthPointResult
from servelab.workers.common import WorkerError, auth_headers, chat_url, mean, warm_up


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", required=True, help="server base URL or chat URL")
    p.add_argument("--model", required=True, help="served model name")
    p.add_argument("--tokenizer-path", type=Path, required=True, help="local tokenizer directory")
    p.add_argument("--depths", type=int, nargs="+", required=True, help="context depths in tokens")
    p.add_argument("--prompt-tokens", type=int, default=128, help="new prompt tokens (p)")
    p.add_argument("--gen-tokens", type=int, default=32, help="generated tokens (g)")
    p.add_argument("--repetitions", type=int, default=1, help="requests per depth (averaged)")
    p.add_argument("--seed", type=int, default=None, help="random seed (default: time-based)")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds per request")
    p.add_argument("--out", type=Path, required=True, help="output directory")
    p.add_argument("--result", default=None, help="result sink: file:PATH or configmap:NS/NAME/KEY")


class PromptMaker:
    """Random prompts of a given token length, from the model's own tokenizer."""

    def __init__(self, tokenizer_path: Path, seed: int) -> None:
        from transformers import AutoTokenizer  # type: ignore[import-not-found]

        self.tok = AutoTokenizer.from_pretrained(str(tokenizer_path))
        special = set(self.tok.all_special_ids)
        self.allowed = [i for i in range(len(self.tok)) if i not in special]
        self.rng = random.Random(seed)

    def make(self, n_tokens: int) -> str:
        ids = [self.rng.choice(self.allowed) for _ in range(n_tokens)]
        text: str = self.tok.decode(ids)
        # decoding and re-encoding may merge tokens: top up, then cut to length
        for _ in range(8):
            again = self.tok.encode(text, add_special_tokens=False)
            if len(again) >= n_tokens:
                cut: str = self.tok.decode(again[:n_tokens])
                return cut
            text += self.tok.decode([self.rng.choice(self.allowed) for _ in range(n_tokens - len(again))])
        return text


def stream_chat(url: str, body: dict[str, Any], timeout: float) -> dict[str, Any]:
    """POST a streamed chat completion; return TTFT, latency, usage and content chunks seen."""
    parts = urlsplit(url)
    conn_cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    conn = conn_cls(parts.netloc, timeout=timeout)
    started = time.perf_counter()
    ttft: float | None = None
    usage: dict[str, Any] = {}
    chunks = 0
    try:
        conn.request(
            "POST",
            parts.path,
            body=json.dumps(body),
            headers={"Content-Type": "application/json", "Connection": "close", **auth_headers()},
        )
        resp = conn.getresponse()
        if resp.status != 200:
            raise WorkerError(f"HTTP {resp.status}: {resp.read()[:300]!r}")
        for raw in resp:
            line = raw.decode(errors="replace").strip()
            if not line.startswith("data:"):
                continue
            payload = line[5:].strip()
            if payload == "[DONE]":
                break
            event = json.loads(payload)
            for choice in event.get("choices") or []:
                delta = choice.get("delta") or {}
                if delta.get("content") or delta.get("reasoning_content"):
                    if ttft is None:
                        ttft = time.perf_counter() - started
                    chunks += 1
            if event.get("usage"):
                usage = event["usage"]
    finally:
        conn.close()
    return {"ttft": ttft, "latency": time.perf_counter() - started, "usage": usage, "chunks": chunks}


def run_depths(args: argparse.Namespace) -> dict[str, Any]:
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    seed = args.seed if args.seed is not None else time.time_ns() % 2**32
    maker = PromptMaker(args.tokenizer_path, seed)
    url = chat_url(args.url)
    warm_up(url, args.model, 1, args.timeout)  # the first request of a fresh server is slow
    rows: list[DepthPointResult] = []
    raw: list[dict[str, Any]] = []
    errors: list[str] = []
    for depth in args.depths:
        pps, tgs, ttfts = [], [], []
        for rep in range(args.repetitions):
            prompt = maker.make(depth + args.prompt_tokens)
            body = {
                "model": args.model,
                "messages": [{"role": "user", "content": prompt}],
                "max_tokens": args.gen_tokens,
                "min_tokens": args.gen_tokens,
                "ignore_eos": True,
                "temperature": 0.0,
                "stream": True,
                "stream_options": {"include_usage": True},
            }
            try:
                r = stream_chat(url, body, args.timeout)
            except (WorkerError, OSError, ValueError) as exc:  # e.g. over the slot's context: keep going
                errors.append(f"depth {depth} rep {rep}: {exc}")
                raw.append({"depth": depth, "rep": rep, "error": str(exc)})
                continue
            raw.append({"depth": depth, "rep": rep, **r})
            ttft, latency = r["ttft"], r["latency"]
            prompt_n = int(r["usage"].get("prompt_tokens") or depth + args.prompt_tokens)
            gen_n = int(r["usage"].get("completion_tokens") or r["chunks"])
            if ttft:
                ttfts.append(ttft)
                pps.append(prompt_n / ttft)
                if gen_n > 1 and latency > ttft:
                    tgs.append((gen_n - 1) / (latency - ttft))
        rows.append(
            DepthPointResult(
                depth=depth,
                prompt_tokens=args.prompt_tokens,
                gen_tokens=args.gen_tokens,
                pp_tokens_per_second=mean(pps),
                tg_tokens_per_second=mean(tgs),
                ttft_seconds=mean(ttfts),
            )
        )
    (out / "depth-requests.json").write_text(json.dumps(raw, indent=2) + "\n")
    return {
        "kind": "depth",
        "model": args.model,
        "url": url,
        "seed": seed,
        "points": [r.to_wire() for r in rows],
        "errors": errors,
        "artifacts": str(out),
    }


def run(args: argparse.Namespace) -> int:
    from servelab.workers.publish import sink_from_spec

    sink = sink_from_spec(args.result, default_file=args.out / "result.json")
    result = run_depths(args)
    sink.publish(result)
    for p in result["points"]:
        if p.get("ttftSeconds") is None:
            print(f"d={p['depth']:>6} failed")
            continue
        print(
            f"d={p['depth']:>6} pp={p.get('ppTokensPerSecond') or 0:10.1f} tok/s "
            f"tg={p.get('tgTokensPerSecond') or 0:8.1f} tok/s ttft={p['ttftSeconds']:.3f}s"
        )
    for e in result["errors"]:
        print(f"error: {e}")
    print(f"published {len(result['points'])} depth points to {sink.describe()}")
    return (
        0 if not result["errors"] and all(p.get("ttftSeconds") is not None for p in result["points"]) else 1
    )
