"""The `servelab` command line: one entry point, one sub-command per job.

Sub-commands register themselves lazily so that `servelab crds` does not import kopf and
`servelab worker ...` does not import the Kubernetes client.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# name -> (module, help). Each module exposes `add_arguments(parser)` and `run(args) -> int`.
COMMANDS: dict[str, tuple[str, str]] = {
    "crds": ("servelab.api.crdgen", "generate crds/*.yaml, the chart's CRDs and docs/api.md from the models"),
    "cluster": ("servelab.localcluster", "start, stop or inspect the local test control plane"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="servelab", description=__doc__)
    subs = parser.add_subparsers(dest="command", required=True)
    for name, (module, help_) in COMMANDS.items():
        sub = subs.add_parser(name, help=help_)
        sub.set_defaults(_module=module)
        importlib.import_module(module).add_arguments(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    rc: int = importlib.import_module(args._module).run(args)
    return rc


if __name__ == "__main__":
    sys.exit(main())
