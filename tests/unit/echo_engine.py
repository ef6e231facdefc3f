"""A test-only engine, `echo`: everything servelab needs to know about an engine, in one module.

Registered by `SERVELAB_ENGINE_MODULES=tests/unit/echo_engine.py` (tests/unit/test_engine_plugin.py
does that in a subprocess). Its server is this file run as a script: a stdlib HTTP server with the
OpenAI-ish endpoints servelab uses (/health, /v1/models, /v1/chat/completions, /metrics) that answers
every chat with its greeting and the last user message.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from pydantic import Field

from servelab.api.base import ApiModel
from servelab.engines.base import EngineAdapter, MetricNames, ServedModel, flag

if TYPE_CHECKING:
    from servelab.api.engine import Engine


class EchoOptions(ApiModel):
    """Echo-only options (`engine.echo`, with engine.name: echo)."""

    greeting: str = Field("echo:", max_length=64, description="--greeting: prefix of every reply.")


class Echo(EngineAdapter):
    name = "echo"
    title = "Echo"
    default_port = 18777
    default_image = "python:3.11-slim"
    needs_shm = False
    metric_names = MetricNames(
        prompt_tokens=("echo:prompt_tokens_total",),
        generation_tokens=("echo:generation_tokens_total",),
        requests=("echo:requests_total",),
    )
    model_formats = ("echo",)
    programs = ("echo-server",)
    owned_flags = ("--host", "--port", "--model", "--name")
    options = EchoOptions

    def args(self, engine: Engine, model: ServedModel, host: str, port: int) -> list[str]:
        opts = self.options_of(engine, EchoOptions)
        a = ["echo-server", "--model", model.location]
        flag(a, "--name", engine.served_model_name)
        flag(a, "--greeting", opts.greeting)
        a += ["--host", host, "--port", str(port)]
        return a + list(engine.extra_args)

    def local_command(self, command: list[str]) -> tuple[list[str], dict[str, str]]:
        return [sys.executable, os.path.abspath(__file__), *command[1:]], dict(os.environ)


ADAPTER = Echo


def serve(argv: list[str]) -> None:
    p = argparse.ArgumentParser(prog="echo-server")
    p.add_argument("--model", required=True)
    p.add_argument("--name", default=None)
    p.add_argument("--greeting", default="echo:")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=Echo.default_port)
    args, _ = p.parse_known_args(argv)
    served = args.name or args.model
    counts = {"requests": 0, "prompt": 0, "generation": 0}

    class Handler(BaseHTTPRequestHandler):
        def _send(self, status: int, body: bytes, kind: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            if self.path == "/health":
                self._send(200, b"{}")
            elif self.path == "/v1/models":
                self._send(
                    200, json.dumps({"object": "list", "data": [{"id": served, "object": "model"}]}).encode()
                )
            elif self.path == "/metrics":
                text = "".join(f"echo:{k}_total {v}\n" for k, v in
                               (("requests", counts["requests"]), ("prompt_tokens", counts["prompt"]),
                                ("generation_tokens", counts["generation"])))  # fmt: skip
                self._send(200, text.encode(), "text/plain; version=0.0.4")
            else:
                self._send(404, b"{}")

        def do_POST(self) -> None:
            body: dict[str, Any] = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            if self.path != "/v1/chat/completions" or body.get("model") != served:
                self._send(404, json.dumps({"error": f"no model {body.get('model')!r}"}).encode())
                return
            prompt = str(body["messages"][-1]["content"])
            reply = f"{args.greeting} {prompt}"
            counts["requests"] += 1
            counts["prompt"] += len(prompt.split())
            counts["generation"] += len(reply.split())
            choice = {"index": 0, "message": {"role": "assistant", "content": reply}, "finish_reason": "stop"}
            usage = {"prompt_tokens": len(prompt.split()), "completion_tokens": len(reply.split())}
            self._send(200, json.dumps({"object": "chat.completion", "model": served, "choices": [choice],
                                        "usage": usage}).encode())  # fmt: skip

        def log_message(self, format: str, *args: Any) -> None:
            pass

    ThreadingHTTPServer((args.host, args.port), Handler).serve_forever()


if __name__ == "__main__":
    serve(sys.argv[1:])
