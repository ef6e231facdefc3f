"""Helpers for the e2e tests: run a worker in its environment, a real llama-server, local text."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from servelab.toolchain import envs


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def run_worker(env_name: str, args: Sequence[str], timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """`python -m servelab worker ...` inside a worker environment, as a pod would run it."""
    cmd = envs.worker_command(env_name, "worker", *map(str, args))
    return subprocess.run(cmd, env=envs.worker_environ(), capture_output=True, text=True, timeout=timeout)


class LlamaServer:
    """A real llama-server process on a free port, with --metrics."""

    def __init__(self, bin_dir: Path, model: Path, alias: str, log: Path, *, slots: int = 4) -> None:
        self.port = free_port()
        self.alias = alias
        self.base = f"http://127.0.0.1:{self.port}"
        cmd = [
            str(bin_dir / "llama-server"),
            "-m",
            str(model),
            "--alias",
            alias,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "-c",
            str(1024 * slots),
            "-np",
            str(slots),
            "-t",
            "2",
            "--metrics",
        ]
        self.log = log
        self._fh = log.open("w")
        self.proc = subprocess.Popen(cmd, stdout=self._fh, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"llama-server exited {self.proc.returncode}:\n{self.log.read_text()[-3000:]}"
                )
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(self.base + "/health", timeout=2) as resp,
            ):
                if resp.status == 200:
                    return
            time.sleep(0.3)
        raise TimeoutError(f"llama-server not ready in {timeout}s:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._fh.close()


def stdlib_text(names: Sequence[str]) -> str:
    """Local text to calibrate and evaluate on (Python standard-library sources; nothing downloaded)."""
    import sysconfig

    stdlib = Path(sysconfig.get_paths()["stdlib"])
    return "\n".join((stdlib / n).read_text(encoding="utf-8") for n in names)
