"""How close a load point's client was to its own limit, and what the server said of its concurrency.

Client side (measured for every generator the same way, while its process runs):

- **CPU**: the generator process tree's user+sys CPU seconds (``/proc/<pid>/stat``, children that
  exited included) sampled every 50 ms on the same clock as the generators' request timestamps
  (``time.perf_counter``: CLOCK_MONOTONIC on Linux), between the first and the last sample inside the
  point (its first request start to its last completion), over that span. 1.0 is one core: an asyncio
  client (both generators are one) cannot use more. Points shorter than 0.5 s of samples get none.
- **Busy**: the busiest thread's running time plus the time it was runnable but waiting for a CPU
  (``/proc/<pid>/task/<tid>/schedstat``, nanoseconds), over the same span: the share of the point
  during which the client's event loop had work to do. A client starved by other processes on its
  machine is as bound as one using its whole core.
- **Scheduling delay** (closed loop, no ``--rate``): at concurrency c, the first c requests are due
  when the point starts and request k > c is due when the (k-c)-th earliest completion frees its
  slot; the delay is its recorded start minus that. The generators record a request's start just
  before they send it and its completion when they have read its last event, so the delay is the
  client's own turnaround (parsing, bookkeeping, event-loop backlog). Its share of the concurrency
  (sum of delays / (c x duration)) is the slot-time the client left unused.
- **Ceiling**: the point's output tok/s over the generator's calibrated per-process ceiling at that
  concurrency (``servelab/data/loadgen-ceilings.json``, measured by ``bench/harness.py`` against a zero-work server on the
  machine named there; a faster client machine has a higher ceiling, so this is an indication).

Server side: the engine's stated concurrency limit (``EngineAdapter.concurrency_limit``), the
concurrency it sustained (Little's law over the streaming phase: request throughput x mean(latency -
TTFT), the mean number of requests being generated at once; the TTFT part holds queueing and prefill),
and its queue gauges sampled during the point.

A point is labelled, first match wins: ``client-bound`` (busy >= 0.9, or scheduling delay >= 10% of
the slot-time, or — where CPU could not be measured — throughput >= 90% of the ceiling),
``server-capped`` (the server serves fewer requests at a time than the point's concurrency: its
stated limit is below it and the sustained concurrency stays within it, or its queue gauge shows
waiting requests while fewer than the concurrency run), ``ok``. ``saturated`` is set over a sweep
(`label_sweep`): more concurrency, sustained by the server, no more throughput.
"""

from __future__ import annotations

import itertools
import json
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

BUSY_BOUND = 0.9  # share of the point the client was running or waiting to run
DELAY_BOUND = 0.10  # share of the slot-time lost to the client's scheduling delay
CEILING_BOUND = 0.9  # share of the calibrated ceiling (only decides where CPU was not measured)
SATURATION_GAIN = 0.10  # less throughput gain than this for >= 1.5x concurrency: saturated
SATURATION_LOSS = -0.25  # ... but a bigger fall is not a plateau: noise or a collapse, left to the reader
CEILINGS = Path(__file__).resolve().parent.parent / "data" / "loadgen-ceilings.json"


# --- the client process ------------------------------------------------------------------------------


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as fh:
                out += [int(c) for c in fh.read().split()]
    except OSError:
        pass
    return out


def _tree(pid: int) -> list[int]:
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        todo += _children(p)
    return pids


def _usage(pid: int) -> tuple[float, dict[int, float]] | None:
    """CPU seconds of a live process (threads and reaped children included), and each live thread's
    running + runnable-but-waiting seconds (schedstat, nanosecond counters)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    cpu = sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")  # utime stime cutime cstime
    threads: dict[int, float] = {}
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/schedstat") as fh:
                ran, waited = fh.read().split()[:2]
            threads[int(task)] = (int(ran) + int(waited)) / 1e9
    except (OSError, ValueError):
        pass
    return cpu, threads


MIN_WINDOW = 0.5  # seconds of samples inside a point for its client figures to mean something


class ProcessMonitor:
    """Samples a process tree's CPU and its threads' demand on `time.perf_counter`'s clock."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        self.pid = pid
        self.interval = interval
        # (t, CPU seconds of the tree, {thread id: running + waiting seconds})
        self.samples: list[tuple[float, float, dict[int, float]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.supported = os.path.isdir(f"/proc/{pid}")

    def sample(self) -> None:
        cpu, threads, seen = 0.0, {}, False
        for p in _tree(self.pid):
            u = _usage(p)
            if u is not None:
                seen = True
                cpu += u[0]
                threads.update(u[1])
        if seen:
            if self.samples:  # a child that exits un-reaped drops out of the sum: never go back
                cpu = max(cpu, self.samples[-1][1])
            self.samples.append((time.perf_counter(), cpu, threads))

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def start(self) -> ProcessMonitor:
        if self.supported:
            self.sample()
            self._thread.start()
        return self

    def stop(self) -> None:
        if self.supported and self._thread.is_alive():
            self._stop.set()
            self._thread.join()

    def window(self, t0: float, t1: float) -> tuple[float, float, float] | None:
        """(seconds, CPU seconds, the busiest thread's running + waiting seconds) between the first sample
        at or after t0 and the last at or before t1; None when they span less than MIN_WINDOW (a point
        too short, or not on the sampled clock). Only samples inside the point count: the generator's
        start-up (imports, tokenizer, prompts) never leaks into it."""
        inside = [x for x in self.samples if t0 <= x[0] <= t1]
        if len(inside) < 2 or inside[-1][0] - inside[0][0] < MIN_WINDOW:
            return None
        (ta, ca, tha), (tb, cb, thb) = inside[0], inside[-1]
        busiest = max((thb[t] - tha[t] for t in thb.keys() & tha.keys()), default=0.0)
        return tb - ta, max(cb - ca, 0.0), max(busiest, 0.0)


# --- scheduling delay ---------------------------------------------------------------------------------


def schedule_delays(timings: Sequence[tuple[float, float]], parallel: int) -> list[float]:
    """Per request (in start order): its start minus when it was due in a closed loop at `parallel`
    (the point's first start for the first `parallel`, else the (k-parallel)-th completion)."""
    if not timings or parallel < 1:
        return []
    starts = sorted(t[0] for t in timings)
    ends = sorted(t[1] for t in timings)
    first = starts[0]
    return [max(0.0, s - (first if k < parallel else ends[k - parallel])) for k, s in enumerate(starts)]


# --- calibrated ceilings ------------------------------------------------------------------------------


@cache
def ceilings() -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads(CEILINGS.read_text())
    except (OSError, ValueError):
        return {}
    return data


def ceiling(generator: str, concurrency: int) -> float | None:
    """The generator's calibrated output tok/s per client process at this concurrency (log-linear
    between the measured concurrencies, the nearest one outside them)."""
    import math

    points = sorted(
        (int(p["concurrency"]), float(p["outputTokensPerSecond"]))
        for p in ceilings().get("generators", {}).get(generator, {}).get("points", [])
        if p.get("outputTokensPerSecond")
    )
    if not points:
        return None
    if concurrency <= points[0][0]:
        return points[0][1]
    if concurrency >= points[-1][0]:
        return points[-1][1]
    for (ca, ta), (cb, tb) in itertools.pairwise(points):
        if ca <= concurrency <= cb:
            f = (math.log(concurrency) - math.log(ca)) / (math.log(cb) - math.log(ca))
            return ta + f * (tb - ta)
    return None


# --- the figures of one point -------------------------------------------------------------------------


@dataclass
class Headroom:
    """What one point records of its client and its server (seconds, cores, requests)."""

    client_cpu: float | None = None
    client_busy: float | None = None
    schedule_delay: float | None = None  # mean
    schedule_delay_p99: float | None = None
    schedule_loss: float | None = None  # share of the slot-time
    ceiling_fraction: float | None = None
    sustained: float | None = None
    server_limit: int | None = None
    server_flag: str | None = None
    running_max: float | None = None
    waiting_max: float | None = None
    notes: list[str] = field(default_factory=list)


def client_bound(h: Headroom) -> str | None:
    """Why the client was the bottleneck, or None."""
    why = []
    if h.client_busy is not None and h.client_busy >= BUSY_BOUND:
        why.append(f"client busy {h.client_busy:.2f} of the point (its busiest thread running or waiting "
                   f"for a CPU; process CPU {h.client_cpu or 0:.2f} core)")  # fmt: skip
    if h.schedule_loss is not None and h.schedule_loss >= DELAY_BOUND:
        why.append(f"requests went out {1000 * (h.schedule_delay or 0):.1f} ms late on average"
                   f" ({h.schedule_loss:.0%} of the slot-time unused)")  # fmt: skip
    if h.client_busy is None and h.ceiling_fraction is not None and h.ceiling_fraction >= CEILING_BOUND:
        why.append(f"throughput at {h.ceiling_fraction:.0%} of the generator's calibrated ceiling")
    return "; ".join(why) or None


def server_capped(h: Headroom, parallel: int, waits: bool) -> str | None:
    """Why the server, not the load, set this point's concurrency, or None."""
    sustained = f"sustained {h.sustained:.2f}" if h.sustained is not None else "sustained ?"
    held = h.sustained is None or (h.server_limit is not None and h.sustained <= h.server_limit * 1.2 + 0.3)
    if h.server_limit is not None and h.server_limit < parallel and held:
        queue = f", up to {h.waiting_max:g} waiting in its queue" if h.waiting_max else ""
        return (f"the server runs {h.server_limit} request(s) at a time ({h.server_flag}): {sustained} of "
                f"{parallel}{queue}; the others wait in the server, so TTFT grows with concurrency "
                f"and throughput stays flat")  # fmt: skip
    if waits and h.waiting_max and h.running_max is not None and h.running_max < parallel:
        return (f"the server ran at most {h.running_max:g} request(s) at a time ({h.server_flag or 'its scheduler'}"
                f": slots or KV cache): {sustained} of {parallel}, up to {h.waiting_max:g} waiting")  # fmt: skip
    return None


def label_sweep(points: list[Any]) -> None:
    """Relabel `ok` points `saturated` (and back) over a sweep: a point with >= 1.5x the concurrency of
    the last valid point below it, sustained by the server (>= 0.8 of it), whose output throughput
    changes by -25%..+10% (a plateau; a bigger fall is noise or a collapse, not saturation). `points`
    are LoadPointResult (label, labelReason set in place)."""
    # an unstable point (its repetitions disagree) is noise, not a trend: neither judged nor a reference
    ordered = sorted((p for p in points if p.output_tokens_per_second and not getattr(p, "unstable", None)),
                     key=lambda p: p.concurrency)  # fmt: skip
    for i, p in enumerate(ordered):
        if p.label not in ("ok", "saturated"):
            continue
        below = [q for q in ordered[:i] if q.concurrency < p.concurrency and q.valid
                 and q.label in ("ok", "saturated")]  # fmt: skip
        q = below[-1] if below else None
        label, reason = "ok", None
        if q is not None and p.concurrency >= 1.5 * q.concurrency and q.output_tokens_per_second:
            gain = p.output_tokens_per_second / q.output_tokens_per_second - 1
            took = p.sustained_concurrency is None or p.sustained_concurrency >= 0.8 * p.concurrency
            if SATURATION_LOSS <= gain < SATURATION_GAIN and took:
                label = "saturated"
                reason = (f"{p.output_tokens_per_second:.0f} tok/s at concurrency {p.concurrency} vs "
                          f"{q.output_tokens_per_second:.0f} at {q.concurrency} ({gain:+.0%}); the server ran "
                          f"{'them all' if p.sustained_concurrency is None else f'{p.sustained_concurrency:.1f}'}"
                          " at once, so more concurrency only lengthens each request")  # fmt: skip
        p.label, p.label_reason = label, reason


# --- client shards ------------------------------------------------------------------------------------

SHARD_TARGET = 0.5  # the share of a client process's calibrated ceiling a point is planned to use
MAX_SHARDS = 64


def split(total: int, k: int) -> list[int]:
    """`total` in k near-equal shares, the larger first (9 in 4: 3 2 2 2)."""
    return [total // k + (1 if j < total % k else 0) for j in range(k)]


def available_cpus() -> int:
    """CPUs this process may run on: its CPU affinity, capped by its cgroup's CPU quota (cgroup v2
    `cpu.max`, what a pod's CPU limit becomes) where one is set."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cpus = min(cpus, max(1, int(int(quota) // int(period))))
    except (OSError, ValueError):
        pass
    return max(cpus, 1)


def choose_shards(
    generator: str, parallel: int, number: int, requested: int, expected_tps: float | None, cpus: int
) -> tuple[int, str]:
    """How many client processes run one point, and why. `requested` > 0 is the spec's count (at most
    one per request slot and per request). 0 is automatic: the fewest processes whose calibrated ceilings
    (`ceiling`, per process at its share of the concurrency) keep the expected output tok/s at or below
    SHARD_TARGET of their sum, at most one per available CPU; `expected_tps` is the sweep's last measured
    point scaled linearly to this concurrency (an upper bound: throughput grows sublinearly), None
    before the first point (one process)."""
    top = max(1, min(parallel, number, MAX_SHARDS))
    if requested > 0:
        k = min(requested, top)
        why = f"{k} client process(es) as the spec asks" + (f" (of {requested}: one per request slot)"
                                                            if k < requested else "")  # fmt: skip
        return k, why
    if expected_tps is None:
        return 1, "one client process: no point measured yet to size the load"
    cap = max(1, min(top, cpus))
    for k in range(1, cap + 1):
        ceilings_ = [ceiling(generator, p) for p in split(parallel, k)]
        if any(c is None for c in ceilings_):
            return 1, f"one client process: {generator} has no calibrated ceiling"
        room = SHARD_TARGET * sum(c for c in ceilings_ if c is not None)
        if expected_tps <= room:
            return k, (f"{k} client process(es): expected {expected_tps:.0f} out tok/s <= {SHARD_TARGET:.0%} of "
                       f"their calibrated ceiling ({room / SHARD_TARGET:.0f})")  # fmt: skip
    return cap, (f"{cap} client process(es), one per available CPU: expected {expected_tps:.0f} out tok/s is more "
                 f"than {SHARD_TARGET:.0%} of what they can send; the point may be client-bound")  # fmt: skip


def combine_headroom(merged: Headroom, parts: list[Headroom], parallels: list[int], generator: str,
                     tps: float | None) -> Headroom:  # fmt: skip
    """A sharded point's client side from its shards' (`parts`, each measured like a point of its own):
    CPU adds up, busy is the busiest shard's (one bound shard bounds the point), the scheduling delay is
    the mean of the shards' (each shard is its own closed loop) and its loss the worst shard's, and the
    ceiling is the sum of the shards' calibrated ceilings. `merged` holds the server side, measured over all requests."""
    h = merged
    cpus = [p.client_cpu for p in parts]
    if parts and all(c is not None for c in cpus):
        h.client_cpu = round(sum(c for c in cpus if c is not None), 3)
        h.client_busy = max(p.client_busy or 0.0 for p in parts)
    delays = [(p.schedule_delay, p.schedule_loss) for p in parts if p.schedule_delay is not None]
    if delays:
        h.schedule_delay = round(sum(d for d, _ in delays) / len(delays), 6)
        h.schedule_delay_p99 = max((p.schedule_delay_p99 or 0.0) for p in parts)
        losses = [x for _, x in delays if x is not None]
        h.schedule_loss = round(max(losses), 4) if losses else None
    tops = [ceiling(generator, p) for p in parallels]
    if tps and all(t for t in tops):
        h.ceiling_fraction = round(tps / sum(t for t in tops if t), 3)
    else:
        h.ceiling_fraction = None
    h.notes += [f"shard {i + 1}: {n}" for i, p in enumerate(parts) for n in p.notes]
    return h
