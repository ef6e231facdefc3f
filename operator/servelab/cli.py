"""The `servelab` command line: one entry point, one sub-command per job.

Only the chosen sub-command's module is imported, so `servelab worker ...` runs inside a worker
image's environment (evalscope, llama.cpp, llm-compressor) without kopf or the Kubernetes client.
Each module exposes `add_arguments(parser)` and `run(args) -> int`.

The test bench's commands (`cluster`, `pods`, `demo`) are not part of this package: the dev
distribution (`servelab-dev`, devtools/, installed by `make setup`) contributes them as
`servelab.commands` entry points, found by name when one is asked for. Without it they print where
they come from and exit 2. This package never imports the dev package.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from importlib.metadata import entry_points
from types import ModuleType

ENTRY_POINT_GROUP = "servelab.commands"

COMMANDS: dict[str, tuple[str, str]] = {
    "crds": ("servelab.api.crdgen", "generate crds/*.yaml, the chart's CRDs and docs/api.md from the models"),
    "worker": ("servelab.workers.cli", "run one worker step (what the images run in pods)"),
    "run": ("servelab.local.cli", "run a manifest's experiments locally as processes"),
    "validate": ("servelab.validate_cli", "check manifests as the apiserver would, without a cluster"),
    "operator": ("servelab.controller.cli", "run the operator against the current kubeconfig's cluster"),
    "gate": ("servelab.gate", "wait for a resource's verdict: exit 0 passed, 1 gate failed, 2 run failed"),
    "baseline": ("servelab.baseline", "save a finished ServeBenchmark's result as a baseline (a ConfigMap)"),
    "report": ("servelab.reporting.cli", "compare runs: tables, Markdown, one HTML page, llm-d report JSON"),
}

#: Commands the dev distribution contributes (entry points of group ENTRY_POINT_GROUP): name -> help.
DEV_COMMANDS: dict[str, str] = {
    "cluster": "start, stop or inspect the local test control plane",
    "pods": "local cluster only: run the operator's pods as processes on this machine",
    "demo": "the main job: a tiny model's GGUF quantize-serve-load-eval comparison",
}
DEV_MISSING = "servelab {name}: this command comes with the dev package (servelab-dev, devtools/), installed by `make setup`"


def _usage() -> str:
    lines = ["usage: servelab <command> [options]", "", "commands:"]
    lines += [f"  {name:<10} {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += [f"  {name:<10} {help_} (dev package)" for name, help_ in DEV_COMMANDS.items()]
    return "\n".join(lines)


def dev_command(name: str) -> ModuleType | None:
    """The module an installed distribution registers for `name` in ENTRY_POINT_GROUP, if any."""
    for ep in entry_points(group=ENTRY_POINT_GROUP, name=name):
        module = ep.load()
        if isinstance(module, ModuleType):
            return module
    return None


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    known = argv[:1] and (argv[0] in COMMANDS or argv[0] in DEV_COMMANDS)
    if not known:
        help_asked = argv[:1] in (["-h"], ["--help"])
        print(_usage(), file=sys.stdout if help_asked else sys.stderr)
        return 0 if help_asked else 2
    name = argv[0]
    if name in COMMANDS:
        module: ModuleType | None = importlib.import_module(COMMANDS[name][0])
        description = COMMANDS[name][1]
    else:
        module = dev_command(name)
        description = DEV_COMMANDS[name]
        if module is None:
            print(DEV_MISSING.format(name=name), file=sys.stderr)
            return 2
    assert module is not None
    parser = argparse.ArgumentParser(prog=f"servelab {name}", description=description)
    module.add_arguments(parser)
    args = parser.parse_args(argv[1:])
    rc: int = module.run(args)
    return rc


if __name__ == "__main__":
    sys.exit(main())
