"""`servelab gate NAME`: wait for a resource's verdict on its current spec and exit with it.

Exit codes: 0 the run finished and passed its gate; 1 it finished and failed its gate (the failed checks are
printed); 2 the run failed, the resource is missing, or the timeout passed first. For CI pipelines, Argo
Workflows, Tekton and Argo Rollouts' job provider (examples/gitops/). Reads the cluster of the current
kubeconfig (or in-cluster config), or with `--runs-dir` the status `servelab run` wrote.

`servelab baseline save NAME --as SAVED`: keep a finished ServeBenchmark's result as a baseline that
outlives it (a ConfigMap `SAVED` in its namespace; with `--runs-dir`, `RUNS_DIR/baselines/SAVED.json`), for
`spec.baseline.configMapName`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from servelab import API_VERSION, GROUP, VERSION

PLURAL = {"ServeBenchmark": "servebenchmarks", "QuantJob": "quantjobs"}
KINDS = {"servebenchmark": "ServeBenchmark", "sb": "ServeBenchmark", "quantjob": "QuantJob", "qj": "QuantJob"}


def _kind(text: str) -> str:
    kind = KINDS.get(text.lower().rstrip("s"))
    if kind is None:
        raise argparse.ArgumentTypeError(f"--kind must be ServeBenchmark or QuantJob, not {text!r}")
    return kind


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="the resource's name")
    parser.add_argument(
        "--kind", type=_kind, default="ServeBenchmark", help="ServeBenchmark (default) or QuantJob"
    )
    parser.add_argument(
        "-n", "--namespace", default=None, help="namespace (default: the kubeconfig's, or default)"
    )
    parser.add_argument(
        "--timeout", type=float, default=3600, help="seconds to wait for the verdict (default 3600)"
    )
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between reads (default 2)")
    parser.add_argument(
        "--runs-dir", type=Path, default=None, help="read `servelab run`'s status here instead"
    )


def _client_namespace(explicit: str | None) -> tuple[Any, str]:
    from kubernetes import client, config

    try:
        config.load_incluster_config()
        ns = explicit or Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace").read_text().strip()
    except config.ConfigException:
        config.load_kube_config()
        _, active = config.list_kube_config_contexts()
        ns = explicit or (active or {}).get("context", {}).get("namespace") or "default"
    return client.CustomObjectsApi(), ns


def read(args: argparse.Namespace) -> dict[str, Any] | None:
    if args.runs_dir is not None:
        path = args.runs_dir / f"{args.kind.lower()}-{args.name}" / "status.json"
        body: dict[str, Any] | None = json.loads(path.read_text()) if path.exists() else None
        return body
    from kubernetes.client.rest import ApiException

    api, ns = args._api
    try:
        found: dict[str, Any] = api.get_namespaced_custom_object(
            GROUP, VERSION, ns, PLURAL[args.kind], args.name
        )
        return found
    except ApiException as err:
        if err.status == 404:
            return None
        raise


def decided(body: dict[str, Any]) -> bool:
    """The controller has finished the run of the current spec."""
    status = body.get("status") or {}
    generation = (body.get("metadata") or {}).get("generation")
    current = generation is None or status.get("observedGeneration") == generation
    return current and status.get("phase") in ("Succeeded", "Failed")


def verdict_lines(status: dict[str, Any]) -> list[str]:
    verdict = status.get("verdict") or {}
    lines = []
    for check in verdict.get("checks") or []:
        mark = "ok  " if check.get("passed") else "FAIL"
        value = check.get("measured")
        bound = check.get("threshold")
        figures = f" measured {value:.6g}" if isinstance(value, int | float) else ""
        figures += f" bound {bound:.6g}" if isinstance(bound, int | float) else ""
        why = f" ({check['message']})" if check.get("message") else ""
        lines.append(f"  {mark} {check.get('name')}:{figures}{why}")
    return lines


def run(args: argparse.Namespace) -> int:
    if args.runs_dir is None:
        try:
            args._api = _client_namespace(args.namespace)
        except Exception as err:  # no kubeconfig, unreadable config: say so, exit 2
            print(f"gate: cannot reach a cluster: {err}", file=sys.stderr)
            return 2
    what = f"{args.kind} {args.name}"
    deadline = time.monotonic() + args.timeout
    body: dict[str, Any] | None = None
    while True:
        try:
            body = read(args)
        except Exception as err:  # an API error: keep trying until the timeout, then report it
            print(f"gate: reading {what}: {err}", file=sys.stderr)
            body = None
        if body is not None and decided(body):
            break
        if time.monotonic() >= deadline:
            state = (
                "does not exist" if body is None else f"is {(body.get('status') or {}).get('phase') or 'new'}"
            )
            print(f"gate: {what} {state} after {args.timeout:g}s: no verdict", file=sys.stderr)
            return 2
        time.sleep(args.interval)
    status = body.get("status") or {}
    if status.get("phase") == "Failed":
        print(f"{what}: run failed: {status.get('message')}")
        return 2
    verdict = status.get("verdict")
    lines = verdict_lines(status)
    if verdict is None or verdict.get("passed"):
        reason = verdict.get("reason") if verdict else "NoChecks"
        print(f"{what}: passed ({reason})", *lines, sep="\n")
        return 0
    print(f"{what}: gate failed ({verdict.get('reason')}): {verdict.get('message') or ''}", *lines, sep="\n")
    return 1


# ---- servelab baseline save --------------------------------------------------------------------------
def add_baseline_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["save"], help="save a finished ServeBenchmark's result")
    parser.add_argument("name", help="the ServeBenchmark")
    parser.add_argument(
        "--as", dest="saved", required=True, help="name of the saved baseline (a ConfigMap name)"
    )
    parser.add_argument("-n", "--namespace", default=None, help="namespace (default: the kubeconfig's)")
    parser.add_argument("--runs-dir", type=Path, default=None, help="save `servelab run`'s result instead")


def run_baseline(args: argparse.Namespace) -> int:
    import re

    if len(args.saved) > 253 or not re.fullmatch(
        r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*", args.saved
    ):
        print(f"baseline: {args.saved!r} is not a valid ConfigMap name", file=sys.stderr)
        return 2
    args.kind = "ServeBenchmark"
    if args.runs_dir is None:
        args._api = _client_namespace(args.namespace)
    body = read(args)
    if body is None or (body.get("status") or {}).get("phase") != "Succeeded":
        print(f"baseline: ServeBenchmark {args.name} has not succeeded; nothing saved", file=sys.stderr)
        return 2
    saved = {"apiVersion": API_VERSION, "kind": "ServeBenchmark",
             "metadata": {"name": args.name, "generation": (body.get("metadata") or {}).get("generation")},
             "spec": body.get("spec"), "status": body.get("status")}  # fmt: skip
    if args.runs_dir is not None:
        out = args.runs_dir / "baselines" / f"{args.saved}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(saved, indent=2))
        print(f"saved {args.name} as {out}")
        return 0
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    _, ns = args._api
    cm = {"apiVersion": "v1", "kind": "ConfigMap",
          "metadata": {"name": args.saved, "namespace": ns,
                       "labels": {"app.kubernetes.io/managed-by": "servelab", "servelab.dev/baseline": "true"},
                       "annotations": {"servelab.dev/source": f"servebenchmark/{args.name}"}},
          "data": {"baseline.json": json.dumps(saved, sort_keys=True)}}  # fmt: skip
    core = client.CoreV1Api()
    try:
        core.create_namespaced_config_map(ns, cm)
    except ApiException as err:
        if err.status != 409:
            raise
        core.replace_namespaced_config_map(args.saved, ns, cm)
    print(f"saved {args.name} as ConfigMap {ns}/{args.saved}")
    return 0


__all__ = ["add_arguments", "add_baseline_arguments", "decided", "run", "run_baseline", "verdict_lines"]
