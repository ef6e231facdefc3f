"""One client process for a whole sweep: a load generator imported once, each point run inside it.

Starting a load generator is most of what a short point costs (evalscope 1.14.1: its imports, the
tokenizer and the event loop take seconds per process on a busy 2-core machine; a GPU server is held all
that time). A `PointSession` starts the generator's process once per sweep (`python -m
servelab.loadgen.session <generator>`) and sends it each point's command line (the same argv the
generator renders for a process of its own, so both ways run the same thing); the process runs the point
in-process and answers with its exit code. The perf worker keeps everything around a point (the engine's
/metrics before and after, the client's CPU during it: the session's pid is sampled like a point's
process, only the point's own window counts) as it does for a process per point.

Run as `python -m servelab.loadgen.session GENERATOR [TOKENIZER]`. Protocol (one JSON object per line):
the session says `{"ready": true}` once warm; the worker writes `{"argv": [...], "log": PATH}`, the session
runs the point with its stdout and stderr going to PATH and answers `{"rc": N}` on its own stdout.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import subprocess
import sys
import time
from pathlib import Path

from servelab.loadgen.headroom import ProcessMonitor
from servelab.workers.common import Ran, redact


class SessionDied(RuntimeError):
    """The session process exited or stopped answering; the worker falls back to a process per point."""


class PointSession:
    """The worker's end: one generator process, its CPU sampled for as long as it lives."""

    def __init__(self, argv: list[str], env: dict[str, str], log: Path) -> None:
        log.parent.mkdir(parents=True, exist_ok=True)
        self._log = log.open("a")
        self.proc = subprocess.Popen(argv, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self._log, text=True, bufsize=1)  # fmt: skip
        self.monitor = ProcessMonitor(self.proc.pid).start()
        self.points = 0
        self._ready = False

    def ready(self, timeout: float | None = None) -> bool:
        """Wait until the generator is imported and the tokenizer loaded (its first line); False when it
        did not say so within timeout (or died)."""
        if self._ready:
            return True
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready else ""
        self._ready = '"ready"' in line
        return self._ready

    def run(self, cmd: list[str], log: Path, timeout: float | None = None) -> Ran:
        """Run one point's command in the session; its output goes to `log` (secrets redacted after)."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        if not self.ready(timeout):
            raise SessionDied("the session process did not start")
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(redact("$ (session) " + " ".join(map(str, cmd))) + "\n")
        started = time.monotonic()
        try:
            self.proc.stdin.write(json.dumps({"argv": [str(c) for c in cmd], "log": str(log)}) + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError) as exc:
            raise SessionDied(f"the session process is gone ({exc})") from None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready else ""
        if not ready:  # a point over its time limit: the session is killed with it (as a process would be)
            self.close()
            rc = -9
        else:
            try:
                rc = int(json.loads(line)["rc"])
            except (ValueError, KeyError, TypeError):
                raise SessionDied(f"the session process ended without an answer: {line!r}") from None
        self.monitor.sample()
        self.points += 1
        output = redact(log.read_text(errors="replace"))
        log.write_text(output)
        return Ran([redact(str(c)) for c in cmd], rc, output, time.monotonic() - started)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(OSError):
                assert self.proc.stdin is not None
                self.proc.stdin.close()
            try:
                self.proc.wait(timeout=2)  # its interpreter's teardown is not worth waiting for
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.monitor.stop()
        self._log.close()


def serve(generator: str, tokenizer: str | None = None) -> int:
    """The session's end: import the generator once, then run each point sent on stdin."""
    from servelab import loadgen

    gen = loadgen.get(generator)
    answer = os.fdopen(os.dup(1), "w", buffering=1)  # replies; fds 1 and 2 follow each point's log
    started = time.monotonic()
    gen.warm_session(tokenizer)
    print(f"{generator} session ready in {time.monotonic() - started:.1f}s", file=sys.stderr, flush=True)
    answer.write(json.dumps({"ready": True}) + "\n")
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        saved = os.dup(1), os.dup(2)
        fd = os.open(request["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        try:
            rc = gen.run_in_process(list(request["argv"]))
        except SystemExit as exc:
            rc = exc.code if isinstance(exc.code, int) else 1
        except Exception as exc:  # the point failed; the session lives on for the next one
            import traceback

            traceback.print_exc()
            print(f"point failed in the session: {exc!r}", file=sys.stderr)
            rc = 1
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for f in (*saved, fd):
                os.close(f)
        answer.write(json.dumps({"rc": rc}) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(serve(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None))
