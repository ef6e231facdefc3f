"""Check an SGLang server command line against SGLang's own arguments (run in the sglang-args env).

    python -m servelab_dev.argcheck.sglang -- python3 -m sglang.launch_server --model-path /m --tp 2
    python -m servelab_dev.argcheck.sglang -- sglang serve /m --port 30000

prints one JSON object `{"ok": bool, "error": str | null, "form": "launch_server" | "serve",
"parsed": {field: value, ...}}` (`parsed`: only the values that differ from SGLang's defaults) and
exits 0 when the arguments parse, 1 when they do not, 2 when sglang cannot be imported.

It does what `sglang.srt.server_args.prepare_server_args` (SGLang 0.5.23) does up to, not including,
resolution: an argparse parser filled by `ServerArgs.add_cli_args`, `parse_args`, then
`ServerArgs.from_cli_args`. Resolution (`ServerArgs.resolve_once`) inspects the model and the GPUs and
is not run. For `sglang serve`, a positional model path is turned into `--model-path` and
`--model-type` is dropped, as `sglang.cli.serve` does before dispatching to the LLM backend.
SGLang cannot serve on these CPU machines (see images/sglang-args/requirements.txt), but its
argument definitions import without a GPU.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from servelab_dev import argcheck
from servelab_dev.argcheck import jsonable

LAUNCH_MODULES = ("sglang.launch_server",)


class ArgsError(Exception):
    """SGLang's parser rejected the arguments."""


def split_command(argv: Sequence[str]) -> tuple[str, list[str]]:
    """("launch_server" | "serve", the arguments after the program) for the supported spellings."""
    args = list(argv)
    if args and args[0].rsplit("/", 1)[-1] == "sglang":
        args = args[1:]
        if args[:1] == ["serve"]:
            return "serve", _serve_argv(args[1:])
        raise ArgsError(f"not an SGLang server command: sglang {' '.join(args[:1])}")
    if args and args[0].rsplit("/", 1)[-1].startswith("python"):
        args = args[1:]
    if len(args) >= 2 and args[0] == "-m" and args[1] in LAUNCH_MODULES:
        return "launch_server", args[2:]
    if not args or args[0].startswith("-"):
        return "launch_server", args
    raise ArgsError(f"not an SGLang server command: {' '.join(argv[:3])}")


def _serve_argv(args: list[str]) -> list[str]:
    """`sglang serve [MODEL] [--model-type T] ...` -> the argv its LLM backend parses."""
    out: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--model-type":
            i += 2
            continue
        if arg.startswith("--model-type="):
            i += 1
            continue
        out.append(arg)
        i += 1
    if out and not out[0].startswith("-"):
        out = ["--model-path", out[0], *out[1:]]
    return out


def check(argv: Sequence[str]) -> dict[str, Any]:
    """Parse `argv` (a whole command or just the options) the way SGLang would before resolving."""
    import msgspec  # type: ignore[import-not-found]
    from sglang.srt.server_args import ServerArgs  # type: ignore[import-not-found]

    class RaisingParser(argparse.ArgumentParser):
        def error(self, message: str) -> Any:  # argparse would print usage and exit 2
            raise ArgsError(message)

    try:
        form, rest = split_command(argv)
    except ArgsError as exc:
        return {"ok": False, "error": str(exc), "form": None, "parsed": {}}
    parser = RaisingParser(prog="sglang serve")
    ServerArgs.add_cli_args(parser)
    try:
        ns = parser.parse_args(rest)
        server_args = ServerArgs.from_cli_args(ns)
        defaults = vars(parser.parse_args(["--model-path", str(getattr(ns, "model_path", "") or "x")]))
    except (ArgsError, ValueError, TypeError) as exc:
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}", "form": form, "parsed": {}}
    fields = msgspec.structs.asdict(server_args)
    parsed = {k: jsonable(v) for k, v in fields.items() if k in vars(ns) and defaults.get(k) != v}
    if "model_path" in fields:
        parsed["model_path"] = fields["model_path"]
    return {"ok": True, "error": None, "form": form, "parsed": parsed}


def main(argv: Sequence[str] | None = None) -> int:
    return argcheck.main("SGLang", "sglang.srt.server_args", check, argv)


if __name__ == "__main__":
    sys.exit(main())
