"""Check a `transformers serve` command line against Transformers' own CLI (run inside the transformers env).

    python -m servelab_dev.argcheck.transformers -- transformers serve /models/x --continuous-batching ...

prints one JSON object `{"ok": bool, "error": str | null, "form": "serve", "parsed": {param: value, ...}}`
(`parsed` holds only the values that differ from the defaults) and exits 0 when the arguments parse,
1 when they do not, 2 when transformers itself cannot be imported.

The parser is transformers 5.23's: the `transformers` Typer app (`transformers.cli.transformers.app`),
turned into its click command; the `serve` subcommand's context is made from the arguments, which
parses and converts every option (types, choices) without calling `Serve` (which would load a model).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from servelab_dev import argcheck
from servelab_dev.argcheck import jsonable


def check(argv: Sequence[str]) -> dict[str, Any]:
    import click
    import typer.main  # type: ignore[import-not-found]
    from transformers.cli.transformers import app  # type: ignore[import-not-found]

    args = list(argv)
    if args and args[0].rsplit("/", 1)[-1] == "transformers":
        args = args[1:]
    if not args or args[0] != "serve":
        return {"ok": False, "error": f"not a transformers serve command: {' '.join(argv[:3])}", "form": None,
                "parsed": {}}  # fmt: skip
    group = app if isinstance(app, click.Group) else typer.main.get_command(app)
    assert isinstance(group, click.Group), type(group)
    serve = group.get_command(click.Context(group), "serve")
    assert serve is not None
    try:
        defaults = serve.make_context("serve", [], resilient_parsing=False).params
        ctx = serve.make_context("serve", args[1:])
    except click.ClickException as exc:
        return {"ok": False, "error": f"{type(exc).__name__}: {exc.format_message()}", "form": "serve",
                "parsed": {}}  # fmt: skip
    parsed = {k: jsonable(v) for k, v in ctx.params.items() if defaults.get(k) != v}
    return {"ok": True, "error": None, "form": "serve", "parsed": parsed}


def main(argv: Sequence[str] | None = None) -> int:
    return argcheck.main("Transformers", "transformers.cli.transformers", check, argv)


if __name__ == "__main__":
    sys.exit(main())
