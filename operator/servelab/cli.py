"""The `servelab` command line: one entry point, one sub-command per job.

Only the chosen sub-command's module is imported, so `servelab worker ...` runs inside a worker
image's environment (evalscope, llama.cpp, llm-compressor) without kopf or the Kubernetes client.
Each module exposes `add_arguments(parser)` and `run(args) -> int`.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

COMMANDS: dict[str, tuple[str, str]] = {
    "crds": ("servelab.api.crdgen", "generate crds/*.yaml, the chart's CRDs and docs/api.md from the models"),
    "cluster": ("servelab.localcluster", "start, stop or inspect the local test control plane"),
    "worker": ("servelab.workers.cli", "run one worker step (what the images run in pods)"),
    "run": ("servelab.local.cli", "run a manifest's experiments locally as processes"),
    "operator": ("servelab.controller.cli", "run the operator against the current kubeconfig's cluster"),
    "pods": (
        "servelab.localexec",
        "local cluster only: run the operator's pods as processes on this machine",
    ),
    "demo": ("servelab.local.demo", "the main job: a tiny model's GGUF quantize-serve-load-eval comparison"),
}


def _usage() -> str:
    lines = ["usage: servelab <command> [options]", "", "commands:"]
    lines += [f"  {name:<10} {help_}" for name, (_, help_) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        print(_usage(), file=sys.stdout if argv[:1] in (["-h"], ["--help"]) else sys.stderr)
        return 0 if argv[:1] in (["-h"], ["--help"]) else 2
    name = argv[0]
    module = importlib.import_module(COMMANDS[name][0])
    parser = argparse.ArgumentParser(prog=f"servelab {name}", description=COMMANDS[name][1])
    module.add_arguments(parser)
    args = parser.parse_args(argv[1:])
    rc: int = module.run(args)
    return rc


if __name__ == "__main__":
    sys.exit(main())
