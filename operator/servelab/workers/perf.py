"""`servelab worker perf`: an `evalscope perf` sweep against an OpenAI-compatible server.

Runs in the `evalscope` image/environment (evalscope 1.14.1). With `--resume` (what the plan renders)
one client process runs every point of the sweep (`servelab.loadgen.session`: evalscope imported once,
started while the server loads its weights), a partial result is published after each point, and a
restarted worker keeps the points its sink already holds (locally the result file, in a cluster the
result ConfigMap) and resumes at the first point without one. Without it (or for a generator without a session) one client
process runs per (parallel, number) pair. Either way the engine's `/metrics` is scraped before and after
each point, and the random data set's `--dataset-offset` advances by each point's request count (what
evalscope does inside one sweep) so no point reuses another's prompts from the server's cache.

Requests follow the reference recipe: `--dataset random`, prompt length fixed
(`--min-prompt-length = --max-prompt-length`, `--prefix-length 0`), `--max-tokens = --min-tokens`,
`--extra-args '{"ignore_eos": true}'`, a local tokenizer, `--no-timestamp`, and `--headers
Connection=close` for engines whose adapter says `connection_close` (llama-server closes streamed
connections that it advertised as keep-alive).

Every point records how close its client was to its own limit and what limited it (the generator
process's CPU and run-queue wait during the point, its scheduling delay, its throughput against the
generator's calibrated ceiling; the server's stated concurrency limit, the concurrency it sustained and
its queue gauges) and a label: ok / client-bound / server-capped (`servelab.loadgen.headroom`).

A point is invalid (kept, with a reason) when its client was bound (unless `--allow-client-bound`),
when its success rate is below `--min-success-rate`, when
ignore_eos was set and the mean output tokens differ from the requested count, when `/v1/models`
does not list the model, or when evalscope failed. The exit code is 1 when any point is invalid; the
result is published either way.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from servelab import engines, loadgen
from servelab.api.results import LatencyPercentiles, LoadPointResult, PointPercentiles
from servelab.engines import ENGINES
from servelab.loadgen import PointShape
from servelab.loadgen.headroom import (
    Headroom,
    ProcessMonitor,
    available_cpus,
    choose_shards,
    client_bound,
    combine_headroom,
    schedule_delays,
    server_capped,
    split,
)
from servelab.loadgen.session import PointSession, SessionDied
from servelab.workers import engine_metrics
from servelab.workers.common import (
    Ran,
    api_key,
    chat_url,
    percentile,
    redact,
    served_models,
    server_root,
    wait_ready,
    warm_up,
)
from servelab.workers.perfparse import PointFigures, combine_shards, merge_figures, point_spread


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", required=True, help="server base URL (http://h:p or http://h:p/v1) or chat URL")
    p.add_argument(
        "--model", required=True, help="served model name (sent as `model`, checked in /v1/models)"
    )
    p.add_argument("--tokenizer-path", required=True, type=Path, help="local tokenizer directory")
    p.add_argument("--parallel", type=int, nargs="+", required=True, help="concurrency of each point")
    p.add_argument("--number", type=int, nargs="+", required=True, help="requests of each point")
    p.add_argument("--prompt-tokens", type=int, default=128, help="prompt length in tokens (min = max)")
    p.add_argument("--max-tokens", type=int, default=64, help="output tokens (max = min)")
    p.add_argument(
        "--min-prompt-tokens", type=int, default=None, help="shortest prompt (default: --prompt-tokens)"
    )
    p.add_argument(
        "--prefix-length", type=int, default=0, help="shared prompt prefix in tokens (prefix cache)"
    )
    p.add_argument("--min-tokens", type=int, default=None,
                   help="--min-tokens sent (default: --max-tokens with ignore_eos, else none)")  # fmt: skip
    p.add_argument("--rate", type=float, default=None, help="requests per second (default: no pacing)")
    p.add_argument("--temperature", type=float, default=None, help="sampling temperature")
    p.add_argument("--no-ignore-eos", action="store_true", help="do not send ignore_eos")
    p.add_argument(
        "--dataset", default="random", help="prompts: random tokens, or an evalscope perf data set"
    )
    p.add_argument("--dataset-path", default=None, help="the data set's prompt file")
    p.add_argument("--endpoint", choices=["chat", "completions"], default="chat",
                   help="/v1/chat/completions (messages) or /v1/completions (prompt)")  # fmt: skip
    p.add_argument("--no-stream", action="store_true", help="ask for whole responses (no TTFT of its own)")
    p.add_argument("--min-success-rate", type=float, default=1.0, help="validity threshold, 0..1")
    p.add_argument(
        "--engine",
        default="auto",
        help=f"auto (detect), {', '.join(ENGINES)}, or any other name (an engine this worker does not know)",
    )
    p.add_argument("--header", action="append", default=[], metavar="K=V", help="extra request header")
    p.add_argument(
        "--metrics-url", default=None, help="engine metrics URL (default <server>/metrics; 'none')"
    )
    p.add_argument("--dataset-offset", type=int, default=0, help="random data set offset of the first point")
    p.add_argument(
        "--warmup-requests",
        type=int,
        default=1,
        help="short requests sent before the first point (not measured, not in its server deltas)",
    )
    p.add_argument("--request-timeout", type=int, default=600, help="seconds per request (total timeout)")
    p.add_argument("--connect-timeout", type=int, default=10, help="seconds to connect")
    p.add_argument("--out", type=Path, required=True, help="output directory (evalscope outputs, logs)")
    p.add_argument("--result", default=None, help="result sink: file:PATH or configmap:NS/NAME/KEY")
    p.add_argument(
        "--slo-ttft", type=float, default=None, help="per-request TTFT bound for goodput (seconds)"
    )
    p.add_argument(
        "--slo-tpot", type=float, default=None, help="per-request TPOT bound for goodput (seconds)"
    )
    p.add_argument(
        "--slo-e2e", type=float, default=None, help="per-request latency bound for goodput (seconds)"
    )
    p.add_argument("--generator", default=loadgen.DEFAULT, choices=sorted(loadgen.GENERATORS),
                   help="load generator (servelab.loadgen)")  # fmt: skip
    p.add_argument("--evalscope", default=None, help="the generator's executable (default: the image's)")
    p.add_argument("--wait-ready", type=float, default=0,
                   help="first wait up to this many seconds for the server's /v1/models to answer")  # fmt: skip
    p.add_argument("--server-command", default=None,
                   help="the server's command line (JSON list): where its concurrency limit is read from")  # fmt: skip
    p.add_argument("--allow-client-bound", action="store_true",
                   help="a point whose client was at its own limit stays valid (labelled client-bound)")  # fmt: skip
    p.add_argument("--repetitions", type=int, default=1,
                   help="run each point this many times (fresh prompts each); figures carry mean ± sd")  # fmt: skip
    p.add_argument("--max-relative-spread", type=float, default=0.1,
                   help="a repeated point whose tok/s, TTFT or TPOT sd exceeds this share of the mean is unstable")  # fmt: skip
    p.add_argument("--resume", action="store_true",
                   help="one client process for the whole sweep; publish after each point and, after a restart, keep the "
                        "points an interrupted run of the same sweep published (the result sink)")  # fmt: skip
    p.add_argument("--point-timeout", type=float, default=None,
                   help="seconds one point's client may run (each repetition); default: no limit")  # fmt: skip
    p.add_argument("--client-shards", type=int, default=1,
                   help="client processes per point, each at its share of the concurrency on disjoint prompts; "
                        "0: chosen per point from the generator's calibrated ceiling and the sweep's last point")  # fmt: skip
    p.add_argument("--warmup-only", action="store_true",
                   help="send the warm-up requests and publish how many succeeded; measure nothing")  # fmt: skip


def lists_its_model(engine: str) -> bool:
    """Whether the server's /v1/models lists the model it serves (`transformers serve` lists its Hub cache
    instead); an engine this worker does not know (auto, other) is taken to."""
    return engine not in ENGINES or engines.get(engine).lists_served_model


def detect_engine(root: str, snapshot: dict[str, float] | None) -> str:
    """The registered engine whose Prometheus sample names the snapshot has, else the one whose
    fingerprint path answers (llama-server's /props), else "other"."""
    adapters = [engines.get(n) for n in ENGINES]
    if snapshot:
        for adapter in adapters:
            if adapter.metric_names.all() & snapshot.keys():
                return adapter.name
    from servelab.workers.common import http_get

    for adapter in adapters:
        if adapter.fingerprint:
            path, marker = adapter.fingerprint
            status, body = http_get(root + path, 5.0)
            if status == 200 and marker in body:
                return adapter.name
    return "other"


def endpoint_url(args: argparse.Namespace) -> str:
    """The URL requests go to: the chat completions URL, or /v1/completions with --endpoint completions."""
    url = chat_url(args.url)
    return url.removesuffix("chat/completions") + "completions" if args.endpoint == "completions" else url


def point_shape(args: argparse.Namespace, engine: str) -> PointShape:
    headers = list(args.header)
    connection_close = engine in ENGINES and engines.get(engine).connection_close
    if connection_close and not any(h.lower().startswith("connection=") for h in headers):
        headers.append("Connection=close")
    return PointShape(
        url=endpoint_url(args), model=args.model, tokenizer=str(args.tokenizer_path),
        prompt_tokens=args.prompt_tokens,
        min_prompt_tokens=args.prompt_tokens if args.min_prompt_tokens is None else args.min_prompt_tokens,
        prefix_length=args.prefix_length, max_tokens=args.max_tokens,
        # min = max only where ignore_eos asks for exactly max_tokens outputs
        min_tokens=(0 if args.no_ignore_eos else args.max_tokens) if args.min_tokens is None else args.min_tokens,
        ignore_eos=not args.no_ignore_eos, rate=args.rate, temperature=args.temperature, headers=headers,
        dataset=args.dataset, dataset_path=args.dataset_path, stream=not args.no_stream,
        request_timeout=args.request_timeout, connect_timeout=args.connect_timeout, api_key=api_key(),
    )  # fmt: skip


def build_point_command(
    args: argparse.Namespace, parallel: int, number: int, offset: int, engine: str
) -> list[str]:
    generator = loadgen.get(args.generator, args.evalscope)
    return generator.point_command(point_shape(args, engine), parallel, number, offset, args.out)


def latency_percentiles(values: list[float]) -> LatencyPercentiles | None:
    if not values:
        return None
    return LatencyPercentiles(**{f"p{q}": percentile(values, q) for q in (50, 90, 95, 99)})


def goodput(
    figures: PointFigures, args: argparse.Namespace
) -> tuple[float | None, float | None, float | None]:
    """Share, requests/s and output tok/s of the requests meeting every per-request bound (DistServe's
    goodput; a bound on TTFT or TPOT counts a request without that measurement as missing it)."""
    bounds = (args.slo_ttft, args.slo_tpot, args.slo_e2e)
    if all(b is None for b in bounds) or not figures.total:
        return None, None, None
    good = [r for r in figures.requests
            if all(b is None or (v is not None and v <= b) for v, b in zip(r[:3], bounds, strict=True))]  # fmt: skip
    share = len(good) / figures.total
    if not figures.duration_seconds:
        return round(share, 6), None, None
    return (round(share, 6), len(good) / figures.duration_seconds,
            sum(r[3] for r in good) / figures.duration_seconds)  # fmt: skip


def run_monitored(
    cmd: list[str], log: Path, env: dict[str, str], timeout: float | None = None
) -> tuple[Ran, ProcessMonitor]:
    """Run a point's client like `run_logged`, sampling its process tree's CPU while it runs."""
    log.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with log.open("w") as fh:
        fh.write(redact("$ " + " ".join(map(str, cmd))) + "\n")
        fh.flush()
        proc = subprocess.Popen(list(map(str, cmd)), env=env, stdout=fh, stderr=subprocess.STDOUT)
        monitor = ProcessMonitor(proc.pid).start()
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = proc.wait()
        finally:
            monitor.sample()
            monitor.stop()
    output = redact(log.read_text(errors="replace"))
    log.write_text(output)
    return Ran([redact(str(c)) for c in cmd], rc, output, time.monotonic() - started), monitor


def measure_headroom(
    f: PointFigures | None,
    parallel: int,
    generator: loadgen.LoadGenerator,
    monitor: ProcessMonitor | None,
    gauges: engine_metrics.GaugeSampler | None,
    limit: tuple[int | None, str | None],
    paced: bool,
) -> Headroom:
    """The client's and the server's side of one point (`servelab.loadgen.headroom`)."""
    h = Headroom(server_limit=limit[0], server_flag=limit[1])
    if f is None or not f.timings:
        return h
    t0, t1 = min(s for s, _ in f.timings), max(e for _, e in f.timings)
    used = monitor.window(t0, t1) if monitor is not None else None
    if used is not None:
        span, cpu, busiest = used
        h.client_cpu, h.client_busy = round(cpu / span, 3), round(busiest / span, 3)
    elif monitor is not None and monitor.supported:
        h.notes.append(f"client CPU not measured: the point's {t1 - t0:.2f}s hold under 0.5s of samples")
    if not paced:  # with --rate requests are due on a random schedule the tools do not record
        delays = schedule_delays(f.timings, parallel)
        if delays:
            h.schedule_delay = round(sum(delays) / len(delays), 6)
            h.schedule_delay_p99 = percentile(delays, 99)
            if t1 > t0:
                h.schedule_loss = round(sum(delays) / (min(parallel, len(delays)) * (t1 - t0)), 4)
    top = generator.ceiling(parallel)
    if top and f.output_tokens_per_second:
        h.ceiling_fraction = round(f.output_tokens_per_second / top, 3)
    live = [r for r in f.requests if r[0] is not None and r[2] is not None]
    if live and f.duration_seconds:
        generating = sum(r[2] - r[0] for r in live if r[2] is not None and r[0] is not None) / len(live)
        h.sustained = round(f.succeeded / f.duration_seconds * generating, 3)
    if gauges is not None:
        h.running_max, h.waiting_max = gauges.window(t0, t1)
    return h


def label(h: Headroom, parallel: int, gauges: bool) -> tuple[str, str | None]:
    """ok / client-bound / server-capped, and the figures behind it (saturated is a sweep's verdict)."""
    why = client_bound(h)
    if why:
        return "client-bound", why
    why = server_capped(h, parallel, gauges)
    if why:
        return "server-capped", why
    return "ok", None


def labelled(figures: PointFigures | None, label: str, reason: str | None) -> tuple[str | None, str | None]:
    """A point's label and its reason; none when no request finished (nothing measured to label: a point
    whose every request timed out is not "ok")."""
    if figures is None or not figures.succeeded:
        return None, None
    return label, reason


def judge(
    figures: PointFigures | None,
    requested: int,
    args: argparse.Namespace,
    model_problem: str | None,
    evalscope_rc: int,
    bound: str | None = None,
) -> list[str]:
    """Reasons a point is invalid (empty: valid)."""
    reasons = []
    if model_problem:
        reasons.append(model_problem)
    if bound and not getattr(args, "allow_client_bound", False):
        reasons.append(f"client-bound: {bound} (spec.load.allowClientBound to keep it)")
    if figures is None:
        reasons.append(f"evalscope produced no results (rc={evalscope_rc})")
        return reasons
    rate = figures.succeeded / requested if requested else 0.0
    if rate < args.min_success_rate:
        reasons.append(
            f"success rate {rate:.3f} ({figures.succeeded}/{requested}) below {args.min_success_rate:g}"
        )
    if not args.no_ignore_eos and figures.succeeded:
        avg = figures.avg_output_tokens
        if avg is None or abs(avg - args.max_tokens) > 1e-9:
            reasons.append(f"mean output tokens {avg} != requested {args.max_tokens} with ignore_eos")
    if evalscope_rc != 0 and not reasons:
        reasons.append(f"evalscope exited with {evalscope_rc}")
    return reasons


@dataclass
class Rep:
    """One repetition of a point: what its client measured and what limited it."""

    figures: PointFigures | None
    point_dir: Path | None
    warnings: list[str]
    headroom: Headroom
    label: str
    reason: str | None
    ran: Ran
    monitor: ProcessMonitor
    gauges: engine_metrics.GaugeSampler | None


def worst(reps: list[Rep]) -> Rep:
    """The repetition whose limits speak for the point: the first client-bound one (its figures are the
    client's), else the first server-capped one, else the one whose client was busiest."""
    for wanted in ("client-bound", "server-capped"):
        for r in reps:
            if r.figures is not None and r.label == wanted:
                return r
    return max(reps, key=lambda r: (r.figures is not None, r.headroom.client_busy or 0.0))


def expected_load(points: list[LoadPointResult], parallel: int) -> float | None:
    """The output tok/s a point at `parallel` may need from its client: the sweep's last measured point
    scaled linearly by concurrency (an upper bound where the server saturates); None before the first."""
    done = [p for p in points if p.output_tokens_per_second]
    if not done:
        return None
    last = done[-1]
    assert last.output_tokens_per_second is not None
    return last.output_tokens_per_second * max(parallel / last.concurrency, 1.0)


class ShardSessions:
    """The client processes of a sharded point (`servelab.loadgen.session`, one per shard), started when a
    point first needs them and kept for the sweep's later points; none where the generator has no
    session (then each shard is a process of its own)."""

    def __init__(self, argv: list[str] | None, env: dict[str, str], logs: Path) -> None:
        self.argv, self.env, self.logs = argv, env, logs
        self.sessions: list[PointSession] = []

    def size(self, k: int) -> None:
        self.sessions = [s for s in self.sessions if s.alive()]
        while self.argv and len(self.sessions) < k:
            j = len(self.sessions)
            self.sessions.append(PointSession(self.argv, self.env, self.logs / f"client-shard-{j + 1}.log"))

    def get(self, j: int) -> PointSession | None:
        return self.sessions[j] if j < len(self.sessions) else None

    def close(self) -> None:
        for s in self.sessions:
            s.close()
        self.sessions = []


@dataclass
class ShardRun:
    parallel: int
    number: int
    out: Path
    ran: Ran
    monitor: ProcessMonitor


def run_shards(
    generator: loadgen.LoadGenerator, shape: PointShape, k: int, parallel: int, number: int, offset: int,
    out: Path, log: Path, pool: ShardSessions, env: dict[str, str], timeout: float | None,
) -> tuple[Ran, ProcessMonitor, list[ShardRun]]:  # fmt: skip
    """One point as k client processes at once: shard j runs its share of the concurrency and of the
    requests, on prompts from its own offset (disjoint from the others'), into out/shard-j. Returns the
    point's Ran (the first failing shard's exit code, the longest shard's time), the first shard's monitor,
    and every shard's run."""
    import threading

    parallels, numbers = split(parallel, k), split(number, k)
    starts = [offset + sum(numbers[:j]) for j in range(k)]
    runs: list[ShardRun | None] = [None] * k

    def one(j: int) -> None:
        sout = out / f"shard-{j + 1}"
        generator.prepare(sout, parallels[j], numbers[j])
        cmd = generator.point_command(shape, parallels[j], numbers[j], starts[j], sout)
        slog = log.with_name(f"{log.stem}-s{j + 1}{log.suffix}")
        session = pool.get(j)
        ran: Ran | None = None
        monitor: ProcessMonitor | None = None
        if session is not None:
            try:
                ran, monitor = session.run(cmd, slog, timeout), session.monitor
            except SessionDied as died:
                print(f"shard {j + 1}: {died}: a process of its own")
        if ran is None or monitor is None:
            ran, monitor = run_monitored(cmd, slog, env, timeout)
        runs[j] = ShardRun(parallels[j], numbers[j], sout, ran, monitor)

    threads = [threading.Thread(target=one, args=(j,)) for j in range(k)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done = [r for r in runs if r is not None]
    if len(done) < k:
        raise RuntimeError(f"{k - len(done)} of {k} client shards did not run")
    rc = next((r.ran.returncode for r in done if r.ran.returncode != 0), 0)
    ran = Ran(done[0].ran.cmd, rc, "\n".join(r.ran.output for r in done), max(r.ran.seconds for r in done))
    return ran, done[0].monitor, done


def parse_shards(
    generator: loadgen.LoadGenerator, runs: list[ShardRun], parallel: int,
    gauges: engine_metrics.GaugeSampler | None, limit: tuple[int | None, str | None], paced: bool,
) -> tuple[PointFigures | None, Path | None, list[str], Headroom]:  # fmt: skip
    """A sharded point's figures over all its shards' requests, and its headroom: the server side over
    all requests, the client side from each shard's process (`combine_headroom`)."""
    parsed = [generator.parse_point(r.out, r.parallel, r.number) for r in runs]
    warnings = [f"shard {j + 1}: {w}" for j, (_, _, ws) in enumerate(parsed) for w in ws]
    figures = [f for f, _, _ in parsed]
    missing = [j + 1 for j, f in enumerate(figures) if f is None]
    if missing:
        warnings.append(f"shard(s) {missing} produced no results: the point is not measured")
        return None, None, warnings, Headroom(server_limit=limit[0], server_flag=limit[1])
    shard_figures = [f for f in figures if f is not None]
    merged = combine_shards(shard_figures)
    room = measure_headroom(merged, parallel, generator, None, gauges, limit, True)
    parts = [measure_headroom(f, r.parallel, generator, r.monitor, None, (None, None), paced)
             for f, r in zip(shard_figures, runs, strict=True)]  # fmt: skip
    room = combine_headroom(room, parts, [r.parallel for r in runs], generator.name,
                            merged.output_tokens_per_second)  # fmt: skip
    return merged, runs[0].out.parent, warnings + merged.warnings, room


def run_sweep(
    args: argparse.Namespace,
    publish: Callable[[dict[str, Any]], None] | None = None,
    published: dict[str, Any] | None = None,
    session: PointSession | None = None,
) -> dict[str, Any]:
    """Every point of the sweep, in order. With --resume: one client process for the whole sweep (where
    the generator has one), a partial result published after each point, and the points an interrupted
    run of the same sweep published kept, not measured again (it resumes at the first without a result)."""
    if len(args.parallel) != len(args.number):
        raise SystemExit("--parallel and --number need the same number of values")
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    root = server_root(chat_url(args.url))
    metrics_url = None if args.metrics_url == "none" else (args.metrics_url or root + "/metrics")
    first = engine_metrics.scrape(metrics_url) if metrics_url else None
    engine = args.engine if args.engine != "auto" else detect_engine(root, first)
    served = served_models(root)
    if not lists_its_model(engine):
        model_problem: str | None = None  # its /v1/models does not list the model it serves
    elif served is None:
        model_problem = f"server unreachable or no model list at {root}/v1/models"
    elif args.model not in served:
        model_problem = f"served model(s) {served} do not include {args.model!r}"
    else:
        model_problem = None
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    generator = loadgen.get(args.generator, args.evalscope)
    command = json.loads(args.server_command) if args.server_command else None
    adapter = engines.get(engine) if engine in ENGINES else None
    limit = adapter.concurrency_limit(root, command) if adapter else (None, None)
    gauge_names = set(adapter.metric_names.running + adapter.metric_names.waiting) if adapter else set()
    sample_gauges = bool(metrics_url and first and gauge_names & first.keys())
    resume = bool(getattr(args, "resume", False))
    given = session
    key = sweep_key(args)
    # what an interrupted run of this sweep published (locally its result file, in a cluster its result
    # ConfigMap: what survives a new pod) is kept; a fresh run has no result yet (its executor clears it)
    done = published_points(published, key) if resume and published else []
    if done:
        print(f"resuming: {len(done)} of {len(args.parallel)} point(s) already measured, not repeated")
    todo = len(args.parallel) - len(done)
    session_argv = generator.session_command(str(args.tokenizer_path)) if resume and todo > 0 else None
    session_env = {**env, **generator.environment(point_shape(args, engine))}
    session_log = out / "logs" / "client-session.log"
    if session_argv and (session is None or not session.alive()):  # one client process for every point
        session = PointSession(session_argv, session_env, session_log)
    elif not session_argv and session is not None:
        session.close()
        session = None
    warmup_ok = (warm_up(chat_url(args.url), args.model, args.warmup_requests, args.connect_timeout + 60)
                 if todo > 0 else (published or {}).get("warmupRequestsOk"))  # fmt: skip
    points: list[LoadPointResult] = []
    details: list[dict[str, Any]] = []
    offset = args.dataset_offset
    cpus = available_cpus()
    pool = ShardSessions(session_argv, session_env, out / "logs")
    shape = point_shape(args, engine)
    repetitions = max(1, getattr(args, "repetitions", 1))
    point_timeout = getattr(args, "point_timeout", None)

    def sweep_result() -> dict[str, Any]:
        return {
            "kind": "perf",
            "model": args.model,
            "url": endpoint_url(args),
            "engine": engine,
            "generator": generator.name,
            "generatorVersion": generator.version,
            "promptTokens": args.prompt_tokens,
            "maxTokens": args.max_tokens,
            "ignoreEos": not args.no_ignore_eos,
            "valid": all(p.valid for p in points),
            "warmupRequestsOk": warmup_ok,
            "points": [p.to_wire() for p in points],
            "warnings": {
                f"p{d['concurrency']}-n{d['requests']}": d["warnings"] for d in details if d["warnings"]
            },
            "artifacts": str(out),
            "sweepKey": key,
            "clientProcesses": "per-sweep" if session_argv else "per-point",
        }

    for i, (parallel, number) in enumerate(zip(args.parallel, args.number, strict=True)):
        if i < len(done):  # finished before a restart: kept, not measured again
            points.append(LoadPointResult.model_validate(done[i]["point"]))
            details.append(done[i]["detail"])
            offset += number * repetitions
            continue
        expected = expected_load(points, parallel)
        shards, shard_why = choose_shards(generator.name, parallel, number,
                                          getattr(args, "client_shards", 1), expected, cpus)  # fmt: skip
        if shards > 1:
            print(f"point {i + 1}: {shard_why}", flush=True)
        before = engine_metrics.scrape(metrics_url) if metrics_url else None
        reps: list[Rep] = []
        for r in range(repetitions):  # the same point again, on fresh prompts (offset), one client each
            pout = out if len(args.parallel) == 1 else out / f"point-{i}"  # a sweep may repeat a pair
            rout = pout if repetitions == 1 else pout / f"rep-{r + 1}"
            suffix = "" if repetitions == 1 else f"-r{r + 1}"
            gauges = (
                engine_metrics.GaugeSampler(metrics_url).start() if sample_gauges and metrics_url else None
            )
            log = out / "logs" / f"perf-{i}-p{parallel}-n{number}{suffix}.log"
            try:
                if shards == 1:
                    generator.prepare(rout, parallel, number)
                    cmd = generator.point_command(shape, parallel, number, offset, rout)
                    if session is not None and not session.alive():  # killed at a point's time limit
                        session = PointSession(session_argv or [], session_env, session_log)
                    ran, monitor = None, None
                    if session is not None:
                        try:
                            ran, monitor = session.run(cmd, log, point_timeout), session.monitor
                        except SessionDied as died:
                            print(f"{died}: one client process per point from here on")
                            session.close()
                            session, session_argv = None, None
                    if ran is None or monitor is None:
                        ran, monitor = run_monitored(
                            cmd, log, {**env, **generator.environment(shape)}, point_timeout
                        )
                else:
                    pool.size(shards if session_argv else 0)
                    ran, monitor, shard_runs = run_shards(
                        generator, shape, shards, parallel, number, offset, rout, log, pool,
                        {**env, **generator.environment(shape)}, point_timeout,
                    )  # fmt: skip
            finally:
                if gauges is not None:
                    gauges.stop()
            offset += number
            if shards == 1:
                figs, pdir, warns = generator.parse_point(rout, parallel, number)
                room = measure_headroom(figs, parallel, generator, monitor, gauges, limit, bool(args.rate))
            else:
                figs, pdir, warns, room = parse_shards(
                    generator, shard_runs, parallel, gauges, limit, bool(args.rate)
                )
                warns.append(f"{shards} client processes ({shard_why})")
            lab, why = label(room, parallel, gauges is not None)
            reps.append(Rep(figs, pdir, warns + room.notes, room, lab, why, ran, monitor, gauges))
        after = engine_metrics.scrape(metrics_url) if metrics_url else None
        measured = [r.figures for r in reps if r.figures is not None]
        figures = merge_figures(measured) if measured else None
        chosen = worst(reps)
        headroom, monitor, gauges = chosen.headroom, chosen.monitor, chosen.gauges
        if repetitions > 1:
            sustained = [r.headroom.sustained for r in reps if r.headroom.sustained is not None]
            headroom.sustained = round(sum(sustained) / len(sustained), 3) if sustained else None
        warnings = [w for i, r in enumerate(reps)
                    for w in (r.warnings if repetitions == 1 else [f"repetition {i + 1}: {x}" for x in r.warnings])]  # fmt: skip
        if figures is not None and len(measured) < repetitions:
            warnings.append(f"{repetitions - len(measured)} of {repetitions} repetitions produced no results")
        rc = next((r.ran.returncode for r in reps if r.ran.returncode != 0), 0)
        if figures is not None and len(measured) < repetitions and rc == 0:
            rc = -1
        point_dir = chosen.point_dir or next((r.point_dir for r in reps if r.point_dir), None)
        spread, unstable_reason = (
            point_spread(measured, args.max_relative_spread) if repetitions > 1 and measured else (None, None)
        )
        point_label, label_reason = labelled(figures, chosen.label, chosen.reason)
        bound = label_reason if point_label == "client-bound" else None
        requested = number * repetitions
        reasons = judge(figures, requested, args, model_problem, rc, bound)
        f = figures or PointFigures(total=requested, failed=0)  # nothing was measured: no counts to report
        server = engine_metrics.server_deltas(before, after, f.duration_seconds)
        if server is not None and (headroom.running_max is not None or headroom.waiting_max is not None):
            server.running_max, server.waiting_max = headroom.running_max, headroom.waiting_max
        gen = server.generation_tokens if server is not None else None
        if (
            gen is not None
            and f.sum_output_tokens
            and abs(gen - f.sum_output_tokens) > 0.02 * f.sum_output_tokens
        ):
            warnings.append(f"server counted {gen:g} generated tokens, client {f.sum_output_tokens}")
        attainment, good_rps, good_tps = goodput(f, args) if figures is not None else (None, None, None)
        point = LoadPointResult(
            concurrency=parallel,
            requests=requested,
            succeeded=f.succeeded,
            failed=max(requested - f.succeeded, f.failed) if figures is not None else 0,
            success_rate=min(1.0, f.succeeded / requested) if requested else 0.0,
            duration_seconds=f.duration_seconds,
            rps=f.rps,
            avg_latency_seconds=f.avg_latency_seconds,
            p99_latency_seconds=f.p99_latency_seconds,
            output_tokens_per_second=f.output_tokens_per_second,
            total_tokens_per_second=f.total_tokens_per_second,
            avg_ttft_seconds=f.avg_ttft_seconds,
            p99_ttft_seconds=f.p99_ttft_seconds,
            avg_tpot_seconds=f.avg_tpot_seconds,
            p99_tpot_seconds=f.p99_tpot_seconds,
            avg_input_tokens=f.avg_input_tokens,
            avg_output_tokens=f.avg_output_tokens,
            percentiles=PointPercentiles(
                ttft_seconds=latency_percentiles(f.ttfts),
                tpot_seconds=latency_percentiles(f.tpots),
                latency_seconds=latency_percentiles(f.latencies),
            )
            if figures is not None and (f.ttfts or f.latencies)
            else None,
            slo_attainment=attainment,
            goodput_rps=good_rps,
            goodput_output_tokens_per_second=good_tps,
            server=server,
            label=point_label,  # type: ignore[arg-type]
            label_reason=label_reason,
            client_cpu=headroom.client_cpu,
            client_busy=headroom.client_busy,
            client_schedule_delay_seconds=headroom.schedule_delay,
            client_ceiling_fraction=headroom.ceiling_fraction,
            client_processes=shards if shards > 1 else None,
            sustained_concurrency=headroom.sustained,
            server_concurrency_limit=headroom.server_limit,
            server_concurrency_flag=headroom.server_flag,
            repetitions=repetitions if repetitions > 1 else None,
            spread=spread,
            unstable=(unstable_reason is not None) if spread is not None else None,
            unstable_reason=unstable_reason,
            valid=not reasons,
            reason="; ".join(reasons) or None,
            artifacts=str(point_dir) if point_dir else None,
        )
        points.append(point)
        detail = {
            "concurrency": parallel,
            "requests": number,
            "evalscopeRc": rc,
            "evalscopeSeconds": round(sum(r.ran.seconds for r in reps), 3),
            "repetitions": [
                {
                    "rc": r.ran.returncode,
                    "seconds": round(r.ran.seconds, 3),
                    "label": r.label,
                    "outputTokensPerSecond": r.figures.output_tokens_per_second if r.figures else None,
                    "avgTtftSeconds": r.figures.avg_ttft_seconds if r.figures else None,
                    "avgTpotSeconds": r.figures.avg_tpot_seconds if r.figures else None,
                    "clientCpu": r.headroom.client_cpu,
                    "clientBusy": r.headroom.client_busy,
                }
                for r in reps
            ],
            "client": {
                "cpu": headroom.client_cpu,
                "busy": headroom.client_busy,
                "scheduleDelayMean": headroom.schedule_delay,
                "scheduleDelayP99": headroom.schedule_delay_p99,
                "scheduleLoss": headroom.schedule_loss,
                "ceilingFraction": headroom.ceiling_fraction,
                "processCpuSeconds": monitor.samples[-1][1] if monitor.samples else None,
            },
            "gauges": gauges.samples if gauges is not None else None,
            "source": f.source,
            "sumPromptTokens": f.sum_prompt_tokens,
            "sumOutputTokens": f.sum_output_tokens,
            "warnings": warnings,
            "metricsBefore": before,
            "metricsAfter": after,
        }
        details.append(detail)
        (out / "points").mkdir(exist_ok=True)
        (out / "points" / f"{i}-p{parallel}-n{number}.json").write_text(
            json.dumps({"point": point.to_wire(), **detail}, indent=2) + "\n"
        )
        if publish is not None and i + 1 < len(args.parallel):  # a partial result after each point
            publish({**sweep_result(), "partial": True})
    if session is not None and session is not given:  # the caller closes its own, after publishing
        session.close()
    pool.close()
    return sweep_result()


def sweep_key(args: argparse.Namespace) -> str:
    """What identifies a sweep for --resume: its points and request shape, not where the server listens (a
    server started again, locally on another port, serves the same sweep) or how long the client waits."""
    ignored = ("wait_ready", "resume", "result", "point_timeout", "warmup_requests", "url", "metrics_url",
               "server_command", "evalscope")  # fmt: skip
    keep = {k: v for k, v in sorted(vars(args).items()) if k not in ignored}
    return hashlib.sha256(json.dumps(keep, default=str, sort_keys=True).encode()).hexdigest()[:16]


def published_points(result: dict[str, Any], key: str) -> list[dict[str, Any]]:
    """The points a sweep's last published result holds ({point, detail} each, in order), when it is a
    result of this same sweep (a restarted pod has no state file: the result ConfigMap is what survives)."""
    if result.get("sweepKey") != key:
        return []
    warnings = result.get("warnings") or {}
    return [{"point": p, "detail": {"concurrency": p.get("concurrency"), "requests": p.get("requests"),
                                    "warnings": warnings.get(f"p{p.get('concurrency')}-n{p.get('requests')}", []),
                                    "resumed": True}}
            for p in result.get("points", [])]  # fmt: skip


def format_table(points: list[dict[str, Any]]) -> str:
    head = f"{'conc':>4} {'n':>4} {'ok':>6} {'rps':>7} {'avgLat':>8} {'p99Lat':>8} {'out t/s':>8} "
    head += (
        f"{'TTFT':>7} {'TPOT':>8} {'outTok':>6} {'srvGen':>7} {'cliCPU':>6} {'sust':>6} {'label':>13} valid"
    )
    lines = [head]
    for p in points:

        def g(key: str, fmt: str, src: dict[str, Any] = p) -> str:
            v = src.get(key)
            return format(v, fmt) if isinstance(v, int | float) else "-".rjust(int(fmt.split(".")[0]))

        server = p.get("server") or {}
        lines.append(
            f"{p['concurrency']:>4} {p['requests']:>4} {p['successRate']:>6.1%} {g('rps', '7.2f')} "
            f"{g('avgLatencySeconds', '8.3f')} {g('p99LatencySeconds', '8.3f')} "
            f"{g('outputTokensPerSecond', '8.1f')} {g('avgTtftSeconds', '7.3f')} {g('avgTpotSeconds', '8.4f')} "
            f"{g('avgOutputTokens', '6.1f')} {g('generationTokens', '7.0f', server)} "
            f"{g('clientCpu', '6.2f')} {g('sustainedConcurrency', '6.2f')} {p.get('label') or '-'!s:>13} "
            f"{'yes' if p['valid'] else 'NO: ' + str(p.get('reason'))}"
        )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from servelab.workers.publish import sink_from_spec

    started = time.monotonic()
    sink = sink_from_spec(args.result, default_file=args.out / "result.json")
    session = None
    if args.resume and args.wait_ready and not args.warmup_only:
        # the sweep's client process starts (its imports) while the server loads its weights
        argv = loadgen.get(args.generator, args.evalscope).session_command(str(args.tokenizer_path))
        env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1")
        session = PointSession(argv, env, args.out / "logs" / "client-session.log") if argv else None
        if session is not None and not session.ready(args.wait_ready) and not session.alive():
            print("the sweep's client process did not start: one client process per point")
            session.close()
            session = None
        if not sink.read():  # the client is ready: its executor starts the server now (GPUs held from here)
            sink.publish({"kind": "perf", "partial": True, "clientReady": True, "points": []})
    if args.wait_ready:
        root = server_root(chat_url(args.url))
        waited = wait_ready(root, args.wait_ready, lists_model=lists_its_model(args.engine))
        print(f"server answered after {waited:.1f}s" if waited < args.wait_ready else "server did not answer")
    if args.warmup_only:  # once per sweep, before its first point (the plan's warm-up step)
        ok = warm_up(chat_url(args.url), args.model, args.warmup_requests, args.connect_timeout + 60)
        sink.publish({"kind": "warmup", "warmupRequests": args.warmup_requests, "warmupRequestsOk": ok})
        print(f"warm-up: {ok}/{args.warmup_requests} requests succeeded")
        return 0
    published = sink.read() if args.resume else None
    try:
        result = run_sweep(args, publish=sink.publish if args.resume else None, published=published,
                           session=session)  # fmt: skip
        result["durationSeconds"] = round(time.monotonic() - started, 3)
        sink.publish(result)  # before the client process is stopped: the server is released on this
    finally:
        if session is not None:
            session.close()
    print(format_table(result["points"]))
    for p in result["points"]:
        if p.get("labelReason"):
            print(f"  c={p['concurrency']}: {p['labelReason']}")
    print(f"published {len(result['points'])} points to {sink.describe()}")
    return 0 if result["valid"] else 1
