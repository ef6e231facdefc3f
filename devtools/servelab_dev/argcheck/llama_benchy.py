"""Check llama-benchy arguments (what `servelab worker benchy` runs) against llama-benchy's own parser,
inside the evalscope environment (llama-benchy 0.3.5 is pinned there):

    python -m servelab_dev.argcheck.llama_benchy -- --base-url http://server:8080/v1 --model m --depth 0 8192

prints `{ok, error, form, parsed}`: `parsed` is llama-benchy's BenchmarkConfig (its `from_args`, which
reads sys.argv) with the values servelab set. With --model given it contacts nothing.
"""

from __future__ import annotations

import contextlib
import io
import sys
from collections.abc import Sequence
from typing import Any

from servelab_dev import argcheck
from servelab_dev.argcheck import jsonable


def check(argv: Sequence[str]) -> dict[str, Any]:
    from llama_benchy.config import BenchmarkConfig  # type: ignore[import-not-found]

    saved = sys.argv
    sys.argv = ["llama-benchy", *argv]
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            config = BenchmarkConfig.from_args()
    except SystemExit as exc:  # argparse's error (exit 2), or llama-benchy's own exit
        return {"ok": False, "error": f"exit {exc.code}: {err.getvalue().strip()[-500:]}", "form": "llama-benchy",
                "parsed": {}}  # fmt: skip
    finally:
        sys.argv = saved
    return {"ok": True, "error": None, "form": "llama-benchy", "parsed": jsonable(config.model_dump())}


def main(argv: Sequence[str] | None = None) -> int:
    return argcheck.main("llama-benchy", "llama_benchy", check, argv)


if __name__ == "__main__":
    sys.exit(main())
