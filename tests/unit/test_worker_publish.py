"""Result sinks: the local file and the ConfigMap written through the Kubernetes REST API.

The ConfigMap sink is exercised against a small in-process HTTP server that keeps ConfigMaps the way
the API server does (create -> 201, read -> 200/404, replace with a resourceVersion check -> 200/409),
so the test checks the requests the sink makes: paths, bearer token, owner reference, conflict retry.
"""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from servelab.workers.publish import (
    ConfigMapSink,
    FileSink,
    PublishError,
    owner_ref_from_env,
    sink_from_spec,
)

pytestmark = pytest.mark.unit

OWNER = {"apiVersion": "servelab.dev/v1alpha1", "kind": "ServeBenchmark", "name": "b1", "uid": "u-1"}


class FakeApi:
    def __init__(self) -> None:
        self.store: dict[str, dict[str, Any]] = {}
        self.requests: list[tuple[str, str, str | None]] = []
        self.conflicts_left = 0
        self.version = 0


def _handler(api: FakeApi) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def _send(self, code: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _body(self) -> dict[str, Any]:
            data: dict[str, Any] = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            return data

        def do_GET(self) -> None:
            api.requests.append(("GET", self.path, self.headers.get("Authorization")))
            name = self.path.rsplit("/", 1)[1]
            if name in api.store:
                self._send(200, api.store[name])
            else:
                self._send(404, {"kind": "Status", "code": 404})

        def do_POST(self) -> None:
            api.requests.append(("POST", self.path, self.headers.get("Authorization")))
            body = self._body()
            api.version += 1
            body["metadata"]["resourceVersion"] = str(api.version)
            api.store[body["metadata"]["name"]] = body
            self._send(201, body)

        def do_PUT(self) -> None:
            api.requests.append(("PUT", self.path, self.headers.get("Authorization")))
            body = self._body()
            name = self.path.rsplit("/", 1)[1]
            current = api.store[name]
            if (
                api.conflicts_left > 0
                or body["metadata"].get("resourceVersion") != current["metadata"]["resourceVersion"]
            ):
                api.conflicts_left -= 1
                api.version += 1  # someone else wrote meanwhile
                current["metadata"]["resourceVersion"] = str(api.version)
                self._send(409, {"kind": "Status", "code": 409})
                return
            api.version += 1
            body["metadata"]["resourceVersion"] = str(api.version)
            api.store[name] = body
            self._send(200, body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def fake_api() -> Iterator[tuple[FakeApi, str]]:
    api = FakeApi()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(api))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield api, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_file_sink_writes_json_atomically(tmp_path: Path) -> None:
    sink = FileSink(tmp_path / "sub" / "result.json")
    sink.publish({"kind": "perf", "points": [{"concurrency": 1}]})
    assert json.loads((tmp_path / "sub" / "result.json").read_text()) == {
        "kind": "perf",
        "points": [{"concurrency": 1}],
    }
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["result.json"]
    assert sink.describe() == f"file:{tmp_path / 'sub' / 'result.json'}"


def test_sink_from_spec_selection(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SERVELAB_RESULT_SINK", raising=False)
    assert isinstance(sink_from_spec(None, tmp_path / "r.json"), FileSink)
    monkeypatch.setenv("SERVELAB_RESULT_SINK", f"file:{tmp_path / 'env.json'}")
    sink = sink_from_spec(None, tmp_path / "r.json")
    assert isinstance(sink, FileSink) and sink.path == tmp_path / "env.json"
    with pytest.raises(PublishError, match="NAMESPACE/NAME/KEY"):
        sink_from_spec("configmap:ns/name")
    with pytest.raises(PublishError, match="unknown result sink"):
        sink_from_spec("s3://bucket/key")
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(PublishError, match="not in a cluster"):
        sink_from_spec("configmap:ns/name/key")


def test_owner_ref_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SERVELAB_OWNER_REF", json.dumps(OWNER))
    ref = owner_ref_from_env()
    assert ref is not None and ref["uid"] == "u-1" and ref["controller"] is True
    monkeypatch.setenv("SERVELAB_OWNER_REF", json.dumps({"kind": "X"}))
    with pytest.raises(PublishError, match="lacks"):
        owner_ref_from_env()


def test_configmap_sink_creates_then_replaces(fake_api: tuple[FakeApi, str]) -> None:
    api, url = fake_api
    sink = ConfigMapSink("team-a", "b1-result", "perf.json", OWNER, api_server=url, token="tok")
    sink.publish({"points": [1]})
    cm = api.store["b1-result"]
    assert cm["metadata"]["namespace"] == "team-a"
    assert cm["metadata"]["ownerReferences"] == [OWNER]
    assert json.loads(cm["data"]["perf.json"]) == {"points": [1]}
    assert [r[:2] for r in api.requests] == [
        ("GET", "/api/v1/namespaces/team-a/configmaps/b1-result"),
        ("POST", "/api/v1/namespaces/team-a/configmaps"),
    ]
    assert {r[2] for r in api.requests} == {"Bearer tok"}
    # a second key keeps the first; a conflict is retried with the fresh resourceVersion
    api.conflicts_left = 1
    other = ConfigMapSink("team-a", "b1-result", "eval.json", OWNER, api_server=url, token="tok")
    other.publish({"scores": []})
    data = api.store["b1-result"]["data"]
    assert set(data) == {"perf.json", "eval.json"}
    assert [r[0] for r in api.requests[2:]] == ["GET", "PUT", "GET", "PUT"]


def test_configmap_sink_refuses_oversized_results(fake_api: tuple[FakeApi, str]) -> None:
    _api, url = fake_api
    sink = ConfigMapSink("ns", "n", "k", None, api_server=url, token="t")
    with pytest.raises(PublishError, match="over the"):
        sink.publish({"blob": "x" * (1024 * 1024)})


def test_a_failed_llama_bench_publishes_why(tmp_path: Path) -> None:
    """A worker step that fails publishes its reason (llama-bench published nothing, so status said only
    "job failed"); the core's failure message then carries it."""
    import subprocess
    import sys

    from servelab import status as st

    fake = tmp_path / "llama-bench"
    fake.write_text("#!/bin/sh\necho 'error: failed to load model /m.gguf' >&2\nexit 3\n")
    fake.chmod(0o755)
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "servelab", "worker", "llamabench", "--model", "/m.gguf",
                           "--program", str(fake), "--out", str(out)], capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == 1 and "llama-bench failed: llama-bench exited 3" in proc.stderr
    result = json.loads((out / "result.json").read_text())
    assert result["kind"] == "bench" and "failed to load model /m.gguf" in result["reason"]
    reason, message = st.step_failure("bench", "llama-bench", result, "job failed")
    assert reason == "LoadFailed" and "failed to load model /m.gguf" in message


def test_publish_outcome_publishes_the_result_or_the_reason(tmp_path: Path) -> None:
    from servelab.workers.common import WorkerError
    from servelab.workers.publish import FileSink, publish_outcome

    sink = FileSink(tmp_path / "r.json")
    assert publish_outcome("x", sink, lambda: {"kind": "x", "rows": [1]}, (WorkerError,), "x") == {
        "kind": "x", "rows": [1]}  # fmt: skip
    assert json.loads((tmp_path / "r.json").read_text())["rows"] == [1]

    def boom() -> dict[str, object]:
        raise WorkerError("no arguments")

    assert publish_outcome("x", sink, boom, (WorkerError,), "x") is None
    assert json.loads((tmp_path / "r.json").read_text()) == {"kind": "x", "reason": "no arguments"}

    def other() -> dict[str, object]:
        raise KeyError("a bug is not a reason: it propagates")

    with pytest.raises(KeyError):
        publish_outcome("x", sink, other, (WorkerError,), "x")
