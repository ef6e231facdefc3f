"""The zero-work OpenAI-compatible server (hack/zeroserver, Go standard library only), for the harness
bench and tests.

`ZeroServer()` builds the binary once (`hack/build-zeroserver.sh`, keyed by its source's hash under
`cache_root()/bin`), starts `zeroserver serve` on a free port and stops it on exit:

    with ZeroServer(tpot=0.005, ttft=0.05, slots=2) as srv:
        srv.url            # http://127.0.0.1:PORT (/v1/chat/completions, /v1/models, /metrics, /health)
        srv.cpu_seconds()  # CPU the server used so far (user + sys, all threads)

With no delays it streams the requested tokens as fast as the client reads them (ignore_eos implied);
with `ttft`/`tpot` it paces them (token i due at start + ttft + i*tpot), so the server, not the client,
sets the pace; `slots` caps the requests it serves at a time (the others wait, like llama-server's
slots). `reference_load(url, c, n)` runs the binary's own compiled client (the server's ceiling).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
from pathlib import Path
from types import TracebackType

from servelab.paths import repo_path


def ensure() -> Path:
    """The zeroserver binary (built when its source changed or the cache is cold; needs Go)."""
    out = subprocess.run([str(repo_path("hack", "build-zeroserver.sh"))], check=True, capture_output=True,
                         text=True)  # fmt: skip
    return Path(out.stdout.strip().splitlines()[-1])


def proc_cpu_seconds(pid: int) -> float:
    """user + sys CPU seconds of a live process (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class ZeroServer:
    def __init__(
        self,
        model: str = "zero",
        ttft: float = 0.0,
        tpot: float = 0.0,
        slots: int = 0,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.args = ["serve", "-addr", f"{host}:{port}", "-model", model, "-ttft", f"{ttft}s",
                     "-tpot", f"{tpot}s", "-slots", str(slots)]  # fmt: skip
        self.model = model
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""

    def __enter__(self) -> ZeroServer:
        binary = ensure()
        self.proc = subprocess.Popen([str(binary), *self.args], stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        if not line.startswith("listening on "):
            self.stop()
            raise RuntimeError(f"zeroserver did not start: {line!r}")
        self.url = line.removeprefix("listening on ")
        deadline = time.monotonic() + 10
        while True:
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def cpu_seconds(self) -> float:
        return proc_cpu_seconds(self.pid)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def reference_load(url: str, concurrency: int, number: int, max_tokens: int = 256,
                   prompt_words: int = 128, model: str = "zero") -> dict[str, float]:  # fmt: skip
    """The compiled reference client's figures against `url` (outputTokensPerSecond, avgTtftSeconds...)."""
    out = subprocess.run(
        [str(ensure()), "load", "-url", url, "-model", model, "-c", str(concurrency), "-n", str(number),
         "-max-tokens", str(max_tokens), "-prompt-words", str(prompt_words)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result
