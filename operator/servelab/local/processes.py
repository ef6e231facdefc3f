"""Process plumbing of the local executor: spawning and stopping process groups, readiness polling,
variable expansion, and where local programs come from (worker environments, engine builds)."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

from servelab.plan import WorkerStep

_VAR = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


class StepFailed(RuntimeError):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def expand(value: str, env: Mapping[str, str]) -> str:
    """Expand ${VAR} (manifests) and $(VAR) (Kubernetes-style, like the kubelet) from env."""
    value = _VAR.sub(lambda m: env.get(m.group(1), m.group(0)), value)
    return os.path.expandvars(value)


@dataclass
class Processes:
    """Every process this run started, each in its own process group; stop() ends them all."""

    started: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def spawn(self, argv: list[str], env: Mapping[str, str], log: Path) -> subprocess.Popen[bytes]:
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as out:
            proc = subprocess.Popen(
                argv, env=dict(env), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.started.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
        if proc.poll() is None:
            with suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                with suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        # the group may hold children that outlived their parent (engine workers)
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)

    def stop_all(self) -> None:
        for proc in reversed(self.started):
            self.stop(proc, grace=5.0)


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float, log: Path) -> float:
    """Poll the health endpoint until 200; fail early when the server process exits."""
    t0 = time.monotonic()
    while True:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise StepFailed(
                "ServerFailed", f"server exited with code {proc.returncode} before ready:\n{tail}"
            )
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                if resp.status == 200:
                    return time.monotonic() - t0
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            pass
        if time.monotonic() - t0 > timeout:
            raise StepFailed("ServerNotReady", f"{url} not ready within {timeout:.0f}s")
        time.sleep(0.5)


class Toolchain:
    """Where local processes come from: worker environments and engine programs."""

    def worker_argv(self, step: WorkerStep) -> tuple[list[str], dict[str, str]]:
        from servelab.toolchain import envs

        return envs.worker_command(step.image, *step.argv[1:]), envs.worker_environ(None, **step.env)

    def server_argv(self, engine: str, command: list[str]) -> tuple[list[str], dict[str, str]]:
        """This machine's build of the engine's server command (the adapter's `local_command`)."""
        from servelab.engines import NoLocalBuild, get

        try:
            return get(engine).local_command(command)
        except NoLocalBuild as exc:
            raise StepFailed("ServerFailed", str(exc)) from None
