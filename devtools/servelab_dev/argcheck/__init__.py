"""Engine argument checkers: `servelab_dev.argcheck.vllm` and `servelab_dev.argcheck.sglang` check a
rendered server command line with that engine's own parser, inside the engine's worker environment
(run them with `servelab_dev.devenv.dev_environ()`).

This module is what they share: JSON-safe values and the command-line wrapper that checks one engine
command and prints `{ok, error, form, parsed}`."""

from __future__ import annotations

import argparse
import importlib
import json
from collections.abc import Callable, Sequence
from typing import Any


def jsonable(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple | set):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    return str(value)


def main(engine: str, module: str, check: Callable[[Sequence[str]], dict[str, Any]],
         argv: Sequence[str] | None) -> int:  # fmt: skip
    parser = argparse.ArgumentParser(
        prog=f"python -m servelab_dev.argcheck.{engine.lower()}",
        description=f"Check a {engine} server command line with {engine}'s own parser; prints JSON.",
    )
    parser.add_argument(
        "command", nargs=argparse.REMAINDER, help=f"-- then the {engine} command or its options"
    )
    ns = parser.parse_args(argv)
    command = ns.command[1:] if ns.command[:1] == ["--"] else ns.command
    try:
        importlib.import_module(module)
    except Exception as exc:  # not the engine's environment, or a broken one
        print(json.dumps({"ok": False, "error": f"cannot import {module}: {type(exc).__name__}: {exc}"}))
        return 2
    result = check(command)
    print(json.dumps(result, sort_keys=True))
    return 0 if result["ok"] else 1
