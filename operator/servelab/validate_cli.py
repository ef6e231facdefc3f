"""`servelab validate -f FILE|DIR`: check manifests exactly as the apiserver would, without a cluster.

Every QuantJob and ServeBenchmark in the given files and directories (recursively: *.yaml, *.yml,
*.json; `-` reads standard input) goes through the CRD's schema and CEL rules with the apiserver's
strictness (see servelab.api.validate). One line per problem, naming the file and line, the resource
(Kind/name) and the field:

    examples/bad.yaml:14: ServeBenchmark/qwen3-4b: spec.resources.memory: must be a Kubernetes quantity ...

Exit status 0 when everything is valid, 1 otherwise (2: usage), so it can gate a GitOps sync in CI.
Documents of other APIs (a ConfigMap next to a benchmark) are not servelab's to judge: they are
counted (listed with -v); a document that looks like a servelab resource but is not one (a misspelt
kind or apiVersion) is a problem. `${VAR}` references are checked as they are written, as the
apiserver would receive them (`servelab run` substitutes them when it runs, then checks again).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TextIO

from servelab.manifests import ManifestProblem, check_manifests


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-f", "--filename", action="append", required=True, type=Path,
                        help="manifest file or directory, or - for standard input (repeatable)")  # fmt: skip
    parser.add_argument("-v", "--verbose", action="store_true", help="also list documents of other APIs")


def print_problems(problems: Iterable[ManifestProblem], out: TextIO) -> int:
    count = 0
    for problem in problems:
        print(problem, file=out)
        count += 1
    return count


def run(args: argparse.Namespace) -> int:
    scan = check_manifests(*args.filename)
    for warning in scan.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    count = print_problems(scan.problems, sys.stdout)
    if args.verbose:
        for other in scan.others:
            print(f"{other}: not a servelab resource, not checked", file=sys.stderr)
    resources = f"{len(scan.resources)} servelab resource(s) in {scan.files} file(s)"
    others = f"; {len(scan.others)} document(s) of other APIs not checked" if scan.others else ""
    if count:
        print(f"{count} problem(s); {resources}{others}", file=sys.stderr)
        return 1
    if not scan.resources:
        print(f"no QuantJob or ServeBenchmark found{others}", file=sys.stderr)
        return 1
    print(f"valid: {resources}{others}", file=sys.stderr)
    return 0
