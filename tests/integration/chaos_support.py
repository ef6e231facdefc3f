"""Helpers of the chaos tests: the operator as its own process (so it can be SIGKILLed), a stand-in
kubelet the test steps by hand, restarting control-plane components, and counting what was created."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubernetes import client, watch

from servelab import GROUP, VERSION
from servelab_dev.controlplane import LocalCluster, _poll

LOCAL = "servelab.dev/executor"


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class OperatorProcess:
    """`servelab operator -n NS` as a process of its own, with the given kubeconfig and arguments."""

    def __init__(self, kubeconfig: Path, namespace: str, log: Path, *args: str) -> None:
        self.kubeconfig, self.namespace, self.log, self.args = kubeconfig, namespace, log, args
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> OperatorProcess:
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig), "SERVELAB_METRICS_PORT": "0",
               "SERVELAB_EXTRA_POD_LABELS": json.dumps({LOCAL: "local"}), "SERVELAB_INTERVAL": "0.1",
               "SERVELAB_RESYNC": "900", "PYTHONUNBUFFERED": "1"}  # fmt: skip
        with self.log.open("ab") as out:
            out.write(f"\n==== start {self.starts + 1} {now()}\n".encode())
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "servelab", "operator", "-n", self.namespace, *self.args],
                env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        self.starts += 1
        return self

    def kill(self) -> None:
        """SIGKILL: no cleanup, no last write."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.proc = None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def _values(command: list[str], flag: str) -> list[str]:
    """Every value of a flag that takes several (up to the next flag)."""
    if flag not in command:
        return []
    rest = command[command.index(flag) + 1 :]
    return rest[: next((i for i, v in enumerate(rest) if v.startswith("--")), len(rest))]


class FakeKubelet:
    """Plays the kubelet for the pods labelled servelab.dev/executor=local of one namespace, one point at a
    time: a server pod becomes Running and Ready once `serve` is set; the sweep Job's pod says its client is
    ready once running (the operator creates the server then), publishes each point once it is released (`release("load-0")`: the sweep's first point; `release_all`: every point)
    as the perf worker does (a partial result after each point, into the ConfigMap the Job's environment
    names, with the labels it names), and succeeds once its last point is published."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.core = client.CoreV1Api(api)
        self.namespace = namespace
        self.serve = False
        self.released: set[str] = set()
        self.release_all = False
        self.done: set[str] = set()  # pods finished or made ready
        self.published: dict[str, int] = {}  # pod -> points published
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> FakeKubelet:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def release(self, *steps: str) -> None:
        self.released |= set(steps)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception as err:  # the apiserver may be away on purpose
                self.errors.append(repr(err))
            self._stop.wait(0.3)

    def tick(self) -> None:
        pods = self.core.list_namespaced_pod(self.namespace, label_selector=f"{LOCAL}=local").items
        for pod in pods:
            name = pod.metadata.name
            if name in self.done or pod.metadata.deletion_timestamp or not pod.spec.node_name:
                continue
            labels = pod.metadata.labels or {}
            if labels.get("servelab.dev/component") == "server":
                if self.serve:
                    self._status(pod, "Running", True, {"running": {"startedAt": now()}})
                    self.done.add(name)
                continue
            step = labels.get("servelab.dev/step", "")
            if pod.status.phase == "Pending":
                self._status(pod, "Running", True, {"running": {"startedAt": now()}})
            command = list(pod.spec.containers[0].command or [])
            total = len(_values(command, "--parallel")) or 1
            if "--wait-ready" in command and name not in self.published:  # its client ready: the server next
                self._publish(pod, 0, total)
                self.published[name] = 0
            released = (
                total if self.release_all else sum(f"{step}-{i}" in self.released for i in range(total))
            )
            if released > self.published.get(name, 0):  # points in order, each once released
                self._publish(pod, released, total)
                self.published[name] = released
            if released == total:
                term = {
                    "terminated": {
                        "exitCode": 0,
                        "reason": "Completed",
                        "startedAt": now(),
                        "finishedAt": now(),
                    }
                }
                self._status(pod, "Succeeded", False, term)
                self.done.add(name)

    def _publish(self, pod: Any, points: int, total: int) -> None:
        c = pod.spec.containers[0]
        env = {e.name: e.value for e in c.env or [] if e.value is not None}
        command = list(c.command or [])
        ns, name, key = env["SERVELAB_RESULT_SINK"].split(":", 1)[1].split("/")
        parallel = [int(v) for v in _values(command, "--parallel")] or [1]
        number = [int(v) for v in _values(command, "--number")] or [1]
        rows = [{"concurrency": p, "requests": n, "succeeded": n, "successRate": 1.0, "rps": 1.0,
                 "outputTokensPerSecond": 10.0 * p, "avgTtftSeconds": 0.05, "avgTpotSeconds": 0.01,
                 "avgLatencySeconds": 0.5, "durationSeconds": 1.0} for p, n in zip(parallel[:points], number, strict=False)]  # fmt: skip
        result = {
            "points": rows,
            **({"partial": True} if points < total else {}),
            **({"clientReady": True} if not points else {}),
        }
        labels = {**json.loads(env["SERVELAB_RESULT_LABELS"]), "app.kubernetes.io/managed-by": "servelab"}
        body = {"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": name, "labels": labels, "ownerReferences": [json.loads(env["SERVELAB_OWNER_REF"])]},
                "data": {key: json.dumps(result)}}  # fmt: skip
        try:
            self.core.create_namespaced_config_map(ns, body)
        except client.ApiException as err:
            if err.status != 409:
                raise
            self.core.patch_namespaced_config_map(name, ns, {"data": body["data"]})

    def _status(self, pod: Any, phase: str, ready: bool, container: dict[str, Any]) -> None:
        t = now()

        def cond(typ: str, ok: bool) -> dict[str, str]:
            return {"type": typ, "status": "True" if ok else "False", "lastTransitionTime": t}

        ip = f"10.244.9.{abs(hash(pod.metadata.name)) % 250 + 2}"
        body = {"status": {
            "phase": phase, "podIP": ip, "podIPs": [{"ip": ip}], "hostIP": "10.240.0.1", "startTime": t,
            "conditions": [cond("PodScheduled", True), cond("Initialized", True), cond("ContainersReady", ready),
                           cond("Ready", ready)],
            "containerStatuses": [{"name": pod.spec.containers[0].name, "ready": ready, "restartCount": 0,
                                   "image": "local", "imageID": "local", "state": container}],
        }}  # fmt: skip
        self.core.patch_namespaced_pod_status(pod.metadata.name, self.namespace, body)


class Creations:
    """Every child the operator created in a namespace, counted from watch events (ADDED per uid)."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.added: Counter[tuple[str, str]] = Counter()  # (kind, name) -> times created
        self.log: list[str] = []
        self._stop = threading.Event()
        lists = {"Job": client.BatchV1Api(api).list_namespaced_job,
                 "Deployment": client.AppsV1Api(api).list_namespaced_deployment,
                 "Service": client.CoreV1Api(api).list_namespaced_service}  # fmt: skip
        self._uids: set[str] = set()
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._run, args=(k, fn, namespace), daemon=True)
            for k, fn in lists.items()
        ]
        for t in self._threads:
            t.start()

    def _run(self, kind: str, fn: Any, namespace: str) -> None:
        while not self._stop.is_set():
            try:
                for event in watch.Watch().stream(fn, namespace, timeout_seconds=5):
                    meta = event["object"].metadata
                    with self._lock:
                        if meta.uid not in self._uids:
                            self._uids.add(meta.uid)
                            self.added[(kind, meta.name)] += 1
                            self.log.append(f"{now()} {event['type']} {kind} {meta.name} {meta.uid}")
            except Exception:
                time.sleep(0.5)

    def stop(self) -> None:
        self._stop.set()

    def repeated(self) -> dict[tuple[str, str], int]:
        with self._lock:
            repeated = {k: n for k, n in self.added.items() if n > 1}
        if repeated:
            print("\n".join(self.log))
        return repeated


def benchmark(kube: client.ApiClient, ns: str, name: str) -> dict[str, Any]:
    obj: dict[str, Any] = client.CustomObjectsApi(kube).get_namespaced_custom_object(
        GROUP, VERSION, ns, "servebenchmarks", name
    )
    return obj


def create_benchmark(kube: client.ApiClient, ns: str, name: str, spec: dict[str, Any]) -> None:
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ServeBenchmark",
        "metadata": {"name": name},
        "spec": spec,
    }
    client.CustomObjectsApi(kube).create_namespaced_custom_object(GROUP, VERSION, ns, "servebenchmarks", body)


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any] | None:
    return next((c for c in (obj.get("status") or {}).get("conditions", []) if c["type"] == type_), None)


def events(kube: client.ApiClient, ns: str, name: str) -> Counter[str]:
    items = client.CoreV1Api(kube).list_namespaced_event(ns).items
    return Counter(e.reason for e in items if e.involved_object.name == name for _ in range(e.count or 1))


def restart_components(cluster: LocalCluster, *components: str) -> None:
    """SIGKILL running components of the cluster and start them again with the same command lines (etcd
    keeps its data directory), in start order; waits until the apiserver is ready again."""
    state = cluster.state()
    procs = state["processes"]
    for comp in components:
        pid = procs[comp]["pid"]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    for comp in components:
        _poll(f"{comp} gone", lambda comp=comp: not Path(f"/proc/{procs[comp]['pid']}").exists()
              or " Z " in Path(f"/proc/{procs[comp]['pid']}/stat").read_text(), 20)  # fmt: skip
        with contextlib.suppress(ChildProcessError):
            os.waitpid(procs[comp]["pid"], os.WNOHANG)
    for comp in ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"):
        if comp in components:
            cluster._spawn(comp, procs[comp]["argv"])
    _poll("kube-apiserver ready again", cluster.is_ready, 120, interval=0.5)


def load_spec(*parallel: int, **over: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "model": {"huggingFace": {"id": "Qwen/Qwen3-4B-Instruct-2507"}},
        "engine": {"name": "vllm", "tensorParallelSize": 1},
        "load": {"parallel": list(parallel), "number": [2] * len(parallel)},
        "isolation": {"exclusiveNode": False},
        "timeouts": {"serverReadySeconds": 600, "totalSeconds": 1200},
    }
    spec.update(over)
    return spec


def pods_of_job(kube: client.ApiClient, ns: str, job: str) -> list[Any]:
    pods: list[Any] = client.CoreV1Api(kube).list_namespaced_pod(ns, label_selector=f"job-name={job}").items
    return pods


def points(obj: dict[str, Any]) -> list[int]:
    return [r["concurrency"] for r in (obj.get("status") or {}).get("results", [])]


def job_names(kube: client.ApiClient, ns: str) -> list[str]:
    return sorted(j.metadata.name for j in client.BatchV1Api(kube).list_namespaced_job(ns).items)


STEP = re.compile(r"-(load-\d+)$")
