"""`servelab operator`: run the operator (kopf, standalone single replica by default)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import random


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-n", "--namespace", action="append", default=[], help="namespace to watch (repeatable)"
    )
    parser.add_argument("-A", "--all-namespaces", action="store_true", help="watch every namespace")
    parser.add_argument("--peering", default=None, help="use kopf peering NAME instead of --standalone")
    parser.add_argument(
        "--priority",
        type=int,
        default=None,
        help="peering priority (default: random; of several replicas the highest acts, the others wait)",
    )
    parser.add_argument("--metrics-port", type=int, default=None, help="serve /metrics here (default 8080)")
    parser.add_argument(
        "--local-pods",
        action="store_true",
        help="label every pod servelab.dev/executor=local, for `servelab pods` on the local cluster",
    )
    parser.add_argument("--verbose", action="store_true")


def run(args: argparse.Namespace) -> int:
    if args.local_pods:
        os.environ["SERVELAB_EXTRA_POD_LABELS"] = '{"servelab.dev/executor": "local"}'
    if args.metrics_port is not None:
        os.environ["SERVELAB_METRICS_PORT"] = str(args.metrics_port)
    import kopf

    from servelab.controller import handlers  # noqa: F401  (registers the handlers)
    from servelab.controller.settings import Settings

    namespaces = args.namespace or Settings.from_env().namespaces
    clusterwide = args.all_namespaces or not namespaces
    # the child watches: cluster-wide, or one set per watched namespace (read by the handlers at startup)
    os.environ["SERVELAB_WATCH_NAMESPACES"] = "*" if clusterwide else ",".join(namespaces)
    priority = args.priority if args.priority is not None else random.randint(1, 2**31 - 1)
    kopf.configure(verbose=args.verbose)
    if not args.verbose:  # one line per watch event of every resource is noise (and CPU) at scale
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    asyncio.run(kopf.operator(
        standalone=args.peering is None, peering_name=args.peering, priority=priority,
        clusterwide=clusterwide, namespaces=namespaces,
    ))  # fmt: skip
    return 0
