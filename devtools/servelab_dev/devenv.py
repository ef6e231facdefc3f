"""Running servelab_dev's own modules inside a worker environment.

Worker environments get servelab from the checkout's `operator/` on PYTHONPATH
(`servelab.toolchain.envs.worker_environ`), never this package. The few dev modules that run there
(`python -m servelab_dev.tinymodel --out DIR` in the llamacpp environment,
`python -m servelab_dev.argcheck.vllm` / `.sglang` in the engines' environments) also need
`devtools/` on PYTHONPATH: `dev_environ()` adds it, for those uses only.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from servelab.toolchain.envs import env_python, worker_environ

#: devtools/, the source root of servelab_dev
SOURCE_ROOT = Path(__file__).resolve().parents[1]


def dev_environ(base: Mapping[str, str] | None = None, **extra: str) -> dict[str, str]:
    """`worker_environ()` with devtools/ on PYTHONPATH too (after operator/)."""
    env = worker_environ(base, **extra)
    parts = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    if str(SOURCE_ROOT) not in parts:
        parts.insert(1 if parts else 0, str(SOURCE_ROOT))
    env["PYTHONPATH"] = os.pathsep.join(parts)
    return env


def dev_module_command(env_name: str, module: str, *args: str) -> list[str]:
    """`python -m MODULE ARGS...` in worker environment `env_name` (run it with `dev_environ()`)."""
    return [str(env_python(env_name)), "-m", module, *args]
