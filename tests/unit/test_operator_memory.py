"""The operator's memory settings (docs/scale.md): glibc's malloc arenas capped and free heap pages handed
back, each in a fresh interpreter (mallopt must run before threads allocate)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

CODE = """
import ctypes, ctypes.util, threading
from servelab.controller.cli import fewer_malloc_arenas, trim_memory_periodically
print(fewer_malloc_arenas(), trim_memory_periodically(0.05))
print(any(t.name == "malloc-trim" for t in threading.enumerate()))
"""


def run(env: dict[str, str]) -> list[str]:
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, env=env, check=True)
    return out.stdout.split()


@pytest.mark.skipif(sys.platform != "linux", reason="glibc's malloc (Linux)")
def test_arenas_capped_and_the_heap_trimmed() -> None:
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    assert run(env) == ["True", "True", "True"]
    # an operator's own MALLOC_ARENA_MAX wins: servelab does not override it
    assert run({**env, "MALLOC_ARENA_MAX": "4"})[0] == "False"
