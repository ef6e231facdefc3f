"""Small helpers the workers share: running tools with logs and timing, percentiles, HTTP probes."""

from __future__ import annotations

import json
import math
import os
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The API key of the server under test, from its Secret (the pod's env; never an argument, a log line or a
# published result): every client a worker runs sends it.
API_KEY_ENV = "SERVELAB_API_KEY"


def api_key() -> str | None:
    return os.environ.get(API_KEY_ENV) or None


def auth_headers() -> dict[str, str]:
    key = api_key()
    return {"Authorization": f"Bearer {key}"} if key else {}


def redact(text: str) -> str:
    """The text with the API key (if any) masked: for logs and published messages."""
    key = api_key()
    return text.replace(key, "***") if key and len(key) >= 4 else text


class WorkerError(RuntimeError):
    """A worker step failed in a way that leaves no result to publish."""


@dataclass
class Ran:
    cmd: list[str]
    returncode: int
    output: str
    seconds: float


def run_logged(
    cmd: Sequence[str],
    log: Path,
    *,
    env: Mapping[str, str] | None = None,
    check: bool = True,
    timeout: float | None = None,
) -> Ran:
    """Run `cmd`, write its combined output to `log`, return it with the wall time."""
    log.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    proc = subprocess.run(
        list(map(str, cmd)),
        env=dict(env) if env is not None else None,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        timeout=timeout,
    )
    seconds = time.monotonic() - started
    output = redact(proc.stdout)
    log.write_text(redact("$ " + " ".join(map(str, cmd))) + "\n" + output)
    if check and proc.returncode != 0:
        tail = "\n".join(output.splitlines()[-30:])
        raise WorkerError(f"{Path(str(cmd[0])).name} failed (rc={proc.returncode}); see {log}\n{tail}")
    return Ran([redact(str(c)) for c in cmd], proc.returncode, output, seconds)


def percentile(values: Sequence[float], pct: float) -> float | None:
    """Nearest-rank percentile as evalscope 1.14 computes it: sorted[ceil(n * pct / 100) - 1]."""
    if not values:
        return None
    data = sorted(values)
    if pct >= 100:
        return data[-1]
    return data[max(0, math.ceil(len(data) * pct / 100) - 1)]


def mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def finite(value: Any) -> float | None:
    """A float, or None for missing / negative sentinels (-1) / NaN."""
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    if math.isnan(f) or math.isinf(f) or f < 0:
        return None
    return f


def http_get(url: str, timeout: float = 10.0) -> tuple[int, bytes]:
    """GET a URL; (status, body), with status 0 when the server could not be reached."""
    try:
        with urllib.request.urlopen(
            urllib.request.Request(url, headers=auth_headers()), timeout=timeout
        ) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (urllib.error.URLError, OSError):
        return 0, b""


def served_models(base_url: str, timeout: float = 10.0) -> list[str] | None:
    """Model ids from `<base>/v1/models`, or None when the endpoint is unreachable or not JSON."""
    status, body = http_get(base_url.rstrip("/") + "/v1/models", timeout)
    if status != 200:
        return None
    try:
        data = json.loads(body)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    # Ollama answers `"data": null` until its first model is created
    ids = [str(m.get("id")) for m in data.get("data") or [] if isinstance(m, dict)]
    # llama-server also lists aliases under "models"
    ids += [str(m.get("name") or m.get("model")) for m in data.get("models") or [] if isinstance(m, dict)]
    return ids


def server_root(url: str) -> str:
    """`http://h:p/v1/chat/completions` -> `http://h:p` (where /metrics, /health, /v1/models live)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def chat_url(url: str) -> str:
    url = url.rstrip("/")
    if url.endswith("/chat/completions"):
        return url
    if url.endswith("/v1"):
        return url + "/chat/completions"
    return url + "/v1/chat/completions"


def warm_up(url: str, model: str, count: int, timeout: float) -> int:
    """Send `count` short chat requests (first-request costs stay out of the first point); return the
    number that succeeded. Failures are only counted: the points themselves report them."""
    import urllib.error
    import urllib.request

    body = json.dumps(
        {"model": model, "messages": [{"role": "user", "content": "warm up"}], "max_tokens": 8}
    ).encode()
    ok = 0
    for _ in range(max(count, 0)):
        req = urllib.request.Request(
            url, data=body, headers={"Content-Type": "application/json", **auth_headers()}
        )
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                resp.read()
                ok += 1
        except (urllib.error.URLError, OSError, ValueError):
            continue
    return ok


def wait_ready(root: str, timeout: float, lists_model: bool = True) -> float:
    """Poll `<root>/v1/models` until the server answers it and, where the server lists the model it
    serves (`lists_model`), until it lists one (a server still loading, an endpoint starting up; Ollama
    answers with an empty list before its model is created; `transformers serve` lists its Hub cache,
    not its model, so only its answer counts), at most `timeout` seconds; return the seconds waited."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        served = served_models(root, 5.0)
        if served is not None and (served or not lists_model):
            break
        time.sleep(1.0)
    return time.monotonic() - started
