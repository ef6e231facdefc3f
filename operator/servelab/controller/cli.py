"""`servelab operator`: run the operator (kopf, standalone single replica by default)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import random
import time


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


def _libc() -> object | None:
    import ctypes
    import ctypes.util

    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


def trim_memory_periodically(interval: float = 60.0) -> bool:
    """Every `interval` seconds hand the heap's free pages back to the system (glibc `malloc_trim`): a
    burst of creations leaves freed memory that glibc otherwise keeps resident. A daemon thread; a few
    milliseconds per call. False where this is not glibc."""
    import threading

    libc = _libc()
    trim = getattr(libc, "malloc_trim", None)
    if trim is None:
        return False

    def loop() -> None:
        while True:
            time.sleep(interval)
            trim(0)

    threading.Thread(target=loop, name="malloc-trim", daemon=True).start()
    return True


def fewer_malloc_arenas(arenas: int = 2) -> bool:
    """Cap glibc's malloc arenas (M_ARENA_MAX) before the API thread pool starts: each thread that
    allocates otherwise gets an arena of its own (up to 8 per core), and their fragmentation is resident
    memory that grows with the number of live resources (docs/scale.md). MALLOC_ARENA_MAX in the
    environment wins. False where this is not glibc."""
    if os.environ.get("MALLOC_ARENA_MAX"):
        return False
    mallopt = getattr(_libc(), "mallopt", None)
    return bool(mallopt(-8, arenas)) if mallopt is not None else False  # M_ARENA_MAX is -8 in malloc.h


def run(args: argparse.Namespace) -> int:
    fewer_malloc_arenas()
    trim_memory_periodically()
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
