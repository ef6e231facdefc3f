"""The operator at scale: M ServeBenchmarks on N fake GPU nodes of the local control plane.

Starts a local control plane (servelab_dev.controlplane) with N KWOK GPU nodes, an audit log of the
operator's own requests, and the chart's ServiceAccount and RBAC; runs `servelab operator` as its own
process with a token of that ServiceAccount; then, for each M:

1. applies M ServeBenchmarks at once (one load point each, 1 GPU, servers share nodes) and waits until
   every one is idle: server Ready, its load Job's pod Running and held there (this script's KWOK
   stages complete a Job pod only once it is labelled `servelab.dev/scale-complete=true`);
2. measures the idle steady state for --steady seconds: requests per minute by verb and resource, the
   operator's from the audit log (its ServiceAccount) and the whole apiserver's from its own /metrics
   (`apiserver_request_total`); the operator's CPU and RSS; reconciles;
3. creates --new more, one per second, and times create -> first child (Deployment or Job) with M live;
4. finishes every benchmark cheaply, as a worker would: publishes its step's result ConfigMap (name,
   labels and owner from the Job's SERVELAB_RESULT_* environment) and lets KWOK complete its pod; then
   counts the operator's writes per finished benchmark and duplicate Events.

Prints figures (and --json writes them); asserts nothing. Not part of the test suite.

    .venv/bin/python bench/scale.py --nodes 100 --counts 50 200
    .venv/bin/python bench/scale.py --nodes 500 --counts 500 2000 --steady 120
    .venv/bin/python bench/scale.py --operator-src /tmp/before/operator --crds /tmp/before/crds ...  # "before"
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

from servelab import GROUP, VERSION
from servelab.paths import repo_path
from servelab_dev import controlplane
from servelab_dev.controlplane import FakeNode, LocalCluster, binaries
from servelab_dev.results import publish_job_result

OP_NS, OP_SA = "servelab-system", "lab-servelab"  # the chart's ServiceAccount of release "lab"
OP_USER = f"system:serviceaccount:{OP_NS}:{OP_SA}"
HOLD = "servelab.dev/scale-complete"
WRITES = ("create", "update", "patch", "delete", "deletecollection")


# ---- the cluster: KWOK holds Job pods Running until labelled; the apiserver audits the operator -----------
def kwok_documents() -> list[dict[str, Any]]:
    """KWOK's stages, with Job pods held Running until labelled, longer node leases renewed by more workers
    (hundreds of nodes on 2 cores), and Running pods made Ready again after their node recovered."""
    docs = controlplane.kwok_documents(lease_seconds=120)
    for doc in docs:
        if doc.get("kind") == "KwokConfiguration":
            doc["options"] |= {
                "nodeLeaseParallelism": 16,
                "nodePlayStageParallelism": 16,
                "podPlayStageParallelism": 16,
            }
        if doc.get("kind") == "Stage" and doc["metadata"]["name"] in ("pod-complete", "pod-fail"):
            doc["spec"]["selector"]["matchExpressions"].append(
                {"key": f'.metadata.labels["{HOLD}"]', "operator": "In", "values": ["true"]}
            )
    ready = next(d for d in docs if d.get("kind") == "Stage" and d["metadata"]["name"] == "pod-ready")
    again = json.loads(json.dumps(ready))
    again["metadata"]["name"] = "pod-ready-again"
    again["spec"]["selector"]["matchExpressions"] = [
        e if e.get("key") != ".status.phase" else {**e, "values": ["Running"]}
        for e in again["spec"]["selector"]["matchExpressions"]
    ] + [{"key": ".metadata.ownerReferences.[].kind", "operator": "NotIn", "values": ["Job"]}]
    return [*docs, again]


AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived", "ResponseStarted"],
    "rules": [{"level": "Metadata", "users": [OP_USER]}, {"level": "None"}],
}


class ScaleCluster(LocalCluster):
    """The local control plane, with the audit log and KWOK stages this benchmark needs."""

    def _spawn(self, name: str, argv: list[str]) -> None:
        if name == "kube-apiserver":
            policy = self.state_dir / "audit-policy.yaml"
            policy.write_text(yaml.safe_dump(AUDIT_POLICY))
            argv = [*argv, f"--audit-policy-file={policy}", f"--audit-log-path={self.audit_log}",
                    "--audit-log-format=json", "--audit-log-mode=batch", "--audit-log-maxsize=0"]  # fmt: skip
        if name == "kube-controller-manager":  # a node late renewing its lease is not marked NotReady at once
            argv = [*argv, "--node-monitor-grace-period=600s"]
        if name == "kwok":
            (self.state_dir / "kwok.yaml").write_text(yaml.safe_dump_all(kwok_documents(), sort_keys=False))
        super()._spawn(name, argv)

    @property
    def audit_log(self) -> Path:
        return self.state_dir / "logs" / "audit.log"


def gpu_nodes(n: int) -> list[FakeNode]:
    return [FakeNode(f"gpu-{i:04d}", cpu="192", memory="2Ti", gpus=8, gpu_product="NVIDIA-H100-80GB-HBM3",
                     gpu_memory_mib=81559, pods=250) for i in range(n)]  # fmt: skip


def run(cmd: list[str], stdin: str | None = None) -> str:
    proc = subprocess.run(cmd, input=stdin, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd)}: {proc.stderr}")
    return proc.stdout


def operator_identity(cluster: LocalCluster, api: client.ApiClient, workdir: Path) -> Path:
    """The chart's ServiceAccount and RBAC (cluster-wide), and a kubeconfig with a token for it."""
    bins = binaries(build=False)
    kubectl = [str(bins.path("kubectl")), "--kubeconfig", str(cluster.kubeconfig)]
    core = client.CoreV1Api(api)
    try:
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=OP_NS)))
    except ApiException as err:
        if err.status != 409:
            raise
    rendered = run([str(bins.path("helm")), "template", "lab", str(repo_path("charts", "servelab")),
                    "--namespace", OP_NS, "--kube-version", bins.kube_version])  # fmt: skip
    docs = [d for d in yaml.safe_load_all(rendered) if d and d["kind"] in
            ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")]  # fmt: skip
    sa = next(d["metadata"]["name"] for d in docs if d["kind"] == "ServiceAccount")
    assert sa == OP_SA, f"the chart's ServiceAccount is {sa}"
    run([*kubectl, "apply", "-f", "-"], yaml.safe_dump_all(docs))
    req = client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=86400)
    )
    token = core.create_namespaced_service_account_token(OP_SA, OP_NS, req).status.token
    admin = yaml.safe_load(cluster.kubeconfig.read_text())
    cfg = {
        "apiVersion": "v1", "kind": "Config", "clusters": admin["clusters"],
        "users": [{"name": "operator", "user": {"token": token}}],
        "contexts": [{"name": "operator", "context": {"cluster": admin["clusters"][0]["name"], "user": "operator"}}],
        "current-context": "operator",
    }  # fmt: skip
    path = workdir / "operator.kubeconfig"
    path.write_text(yaml.safe_dump(cfg))
    path.chmod(0o600)
    return path


# ---- the operator process ----------------------------------------------------------------------------------
class OperatorProcess:
    def __init__(self, kubeconfig: Path, namespace: str, workdir: Path, src: Path | None) -> None:
        self.port = _free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("SERVELAB_")}
        env |= {
            "KUBECONFIG": str(kubeconfig),
            "SERVELAB_METRICS_PORT": str(self.port),
            "PYTHONUNBUFFERED": "1",
        }
        if src is not None:
            env["PYTHONPATH"] = str(src)
        self.log = workdir / f"operator-{namespace}.log"
        self.proc = subprocess.Popen([sys.executable, "-m", "servelab", "operator", "-n", namespace],
                                     env=env, stdout=self.log.open("wb"), stderr=subprocess.STDOUT,
                                     preexec_fn=controlplane._parent_death_signal)  # fmt: skip
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                self.scrape()
                return
            except OSError:
                time.sleep(0.5)
        raise RuntimeError(f"operator did not start: {self.log.read_text()[-2000:]}")

    def scrape(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=10) as resp:
            return str(resp.read().decode())

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_mb(self) -> tuple[float, float]:
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        rss = int(re.search(r"VmRSS:\s+(\d+)", status).group(1))  # type: ignore[union-attr]
        peak = int(re.search(r"VmHWM:\s+(\d+)", status).group(1))  # type: ignore[union-attr]
        return rss / 1024, peak / 1024

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# ---- measuring ---------------------------------------------------------------------------------------------
def audit(path: Path, since: float, until: float) -> list[dict[str, Any]]:
    """The operator's requests received in [since, until) (epoch seconds)."""
    out = []
    if not path.exists():
        return out
    with path.open() as f:
        for line in f:
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            ts = datetime.fromisoformat(entry["requestReceivedTimestamp"].replace("Z", "+00:00")).timestamp()
            if since <= ts < until:
                out.append(entry)
    return out


def by_verb_resource(entries: list[dict[str, Any]]) -> collections.Counter[str]:
    counts: collections.Counter[str] = collections.Counter()
    for e in entries:
        ref = e.get("objectRef") or {}
        resource = ref.get("resource", "?") + (f"/{ref['subresource']}" if ref.get("subresource") else "")
        counts[f"{e.get('verb')} {resource}"] += 1
    return counts


def apiserver_requests(cluster: LocalCluster) -> collections.Counter[str]:
    """apiserver_request_total by verb and resource (the whole apiserver), from its own /metrics."""
    status, text = cluster._api().call("GET", "/metrics", timeout=30)
    if status != 200:
        raise RuntimeError(f"GET /metrics: HTTP {status}")
    counts: collections.Counter[str] = collections.Counter()
    for line in text.splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', line))
        sub = f"/{labels['subresource']}" if labels.get("subresource") else ""
        counts[f"{labels.get('verb')} {labels.get('resource', '')}{sub}"] += int(
            float(line.rsplit(" ", 1)[1])
        )
    return counts


def histogram(text: str, name: str) -> dict[str, float]:
    """count, mean and bucket-interpolated p50/p99 of a Prometheus histogram (all label sets summed)."""
    buckets: collections.Counter[float] = collections.Counter()
    total = count = 0.0
    for line in text.splitlines():
        if line.startswith(f"{name}_bucket{{"):
            le = re.search(r'le="([^"]+)"', line).group(1)  # type: ignore[union-attr]
            buckets[float("inf") if le == "+Inf" else float(le)] += float(line.rsplit(" ", 1)[1])
        elif line.startswith(f"{name}_sum"):
            total += float(line.rsplit(" ", 1)[1])
        elif line.startswith(f"{name}_count"):
            count += float(line.rsplit(" ", 1)[1])

    def quantile(q: float) -> float:
        target, prev_le, prev_n = q * count, 0.0, 0.0
        for le in sorted(buckets):
            n = buckets[le]
            if n >= target:
                if le == float("inf"):
                    return prev_le
                return prev_le + (le - prev_le) * ((target - prev_n) / max(n - prev_n, 1e-9))
            prev_le, prev_n = le, n
        return prev_le

    return {"count": count, "mean": total / count if count else 0.0,
            "p50": quantile(0.5) if count else 0.0, "p99": quantile(0.99) if count else 0.0}  # fmt: skip


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


class FirstChild:
    """Watches Deployments and Jobs of a namespace: when the first child of each owner appeared."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.seen: dict[str, float] = {}
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(fn, namespace), daemon=True) for fn in
                         (client.AppsV1Api(api).list_namespaced_deployment, client.BatchV1Api(api).list_namespaced_job)]  # fmt: skip
        for t in self._threads:
            t.start()
        time.sleep(1)

    def _run(self, fn: Any, namespace: str) -> None:
        while not self._stop.is_set():
            try:
                for event in watch.Watch().stream(
                    fn, namespace, label_selector="servelab.dev/owner-uid", timeout_seconds=60
                ):
                    now = time.time()
                    uid = (event["object"].metadata.labels or {}).get("servelab.dev/owner-uid")
                    if uid and uid not in self.seen:
                        self.seen[uid] = now
            except Exception:
                time.sleep(1)

    def stop(self) -> None:
        self._stop.set()


def sb_spec() -> dict[str, Any]:
    return {
        "model": {"huggingFace": {"id": "Qwen/Qwen3-4B-Instruct-2507"}},
        "engine": {"name": "vllm", "tensorParallelSize": 1},
        "load": {"parallel": [1], "number": [4]},
        "isolation": {"exclusiveNode": False},
        "timeouts": {"serverReadySeconds": 7200, "totalSeconds": 14400},
    }


CLIENT_READY = {"kind": "perf", "partial": True, "clientReady": True, "points": []}
RESULT = {"points": [{"concurrency": 1, "requests": 4, "succeeded": 4, "successRate": 1.0, "rps": 2.0,
                      "outputTokensPerSecond": 100.0, "avgTtftSeconds": 0.05, "p99TtftSeconds": 0.07,
                      "avgTpotSeconds": 0.01, "p99TpotSeconds": 0.012, "avgLatencySeconds": 0.5,
                      "p99LatencySeconds": 0.6, "durationSeconds": 2.0}]}  # fmt: skip


class Bench:
    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.api, self.ns = api, namespace
        self.custom, self.core, self.batch = (
            client.CustomObjectsApi(api),
            client.CoreV1Api(api),
            client.BatchV1Api(api),
        )
        self.created: dict[str, tuple[str, float]] = {}  # name -> (uid, when the create returned)
        self.pool = concurrent.futures.ThreadPoolExecutor(8)
        self.ready: set[str] = set()  # load Jobs whose client-ready result was published

    def create(self, name: str) -> None:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "ServeBenchmark",
            "metadata": {"name": name},
            "spec": sb_spec(),
        }
        obj = self.custom.create_namespaced_custom_object(GROUP, VERSION, self.ns, "servebenchmarks", body)
        self.created[name] = (obj["metadata"]["uid"], time.time())

    def create_many(self, names: list[str]) -> None:
        list(self.pool.map(self.create, names))

    def benchmarks(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        token = None
        while True:
            page = self.custom.list_namespaced_custom_object(GROUP, VERSION, self.ns, "servebenchmarks", limit=500,
                                                            _continue=token)  # fmt: skip
            items += page["items"]
            token = page["metadata"].get("continue")
            if not token:
                return items

    def clients_ready(self) -> None:
        """What a sweep's worker publishes once its client process is up (the operator creates the server
        only then): a partial result with clientReady, once per load Job whose pod runs."""
        running = {p.metadata.labels.get("job-name") for p in self.core.list_namespaced_pod(
            self.ns, label_selector="servelab.dev/component=worker").items if p.status.phase == "Running"}  # fmt: skip
        jobs = [j for j in self.batch.list_namespaced_job(self.ns).items
                if j.metadata.name in running and j.metadata.uid not in self.ready]  # fmt: skip
        list(self.pool.map(lambda j: self.publish(j, CLIENT_READY), jobs))
        self.ready |= {j.metadata.uid for j in jobs}

    def publish(self, job: Any, result: dict[str, Any]) -> None:
        """A step's result ConfigMap, where and how its Job's environment says (a later one replaces it)."""
        publish_job_result(self.core, job, result)

    def idle(self, count: int) -> bool:
        """Every benchmark Running with its server Ready and its load Job's pod Running."""
        self.clients_ready()
        ready = 0
        for sb in self.benchmarks():
            conds = {c["type"]: c["status"] for c in (sb.get("status") or {}).get("conditions", [])}
            ready += conds.get("ServerReady") == "True"
        if ready < count:
            return False
        pods = self.core.list_namespaced_pod(self.ns, label_selector="servelab.dev/component=worker").items
        return sum(p.status.phase == "Running" for p in pods) >= count

    def finish(self, job: Any) -> None:
        """What the worker would do: publish the step's result, then exit (KWOK completes the pod)."""
        self.publish(job, RESULT)
        ns = self.ns
        for pod in self.core.list_namespaced_pod(ns, label_selector=f"job-name={job.metadata.name}").items:
            self.core.patch_namespaced_pod(pod.metadata.name, ns, {"metadata": {"labels": {HOLD: "true"}}})

    def finish_all(self) -> None:
        done: set[str] = set()
        while True:
            sbs = self.benchmarks()
            if all((sb.get("status") or {}).get("phase") in ("Succeeded", "Failed") for sb in sbs):
                return
            jobs = [j for j in self.batch.list_namespaced_job(self.ns).items
                    if j.metadata.uid not in done and not j.status.succeeded and not j.status.failed]  # fmt: skip
            list(self.pool.map(self.finish, jobs))
            done |= {j.metadata.uid for j in jobs}
            time.sleep(2)


def wait(what: str, fn: Any, timeout: float, interval: float = 3.0) -> float:
    t0 = time.monotonic()
    while not fn():
        if time.monotonic() - t0 > timeout:
            raise TimeoutError(f"{what}: not within {timeout:.0f}s")
        time.sleep(interval)
    return time.monotonic() - t0


# ---- one M ---------------------------------------------------------------------------------------------------
def measure(cluster: ScaleCluster, api: client.ApiClient, kubeconfig: Path, workdir: Path, m: int,
            args: argparse.Namespace) -> dict[str, Any]:  # fmt: skip
    ns = f"scale-{m}-{int(time.time()) % 100000}"
    client.CoreV1Api(api).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
    wait("default ServiceAccount", lambda: _exists(api, ns), 60, 0.2)
    bench = Bench(api, ns)
    first = FirstChild(api, ns)
    op = OperatorProcess(kubeconfig, ns, workdir, args.operator_src)
    fig: dict[str, Any] = {"M": m, "nodes": args.nodes, "operator": str(args.operator_src or "this checkout")}
    try:
        t_start = time.time()
        cpu0 = op.cpu_seconds()
        names = [f"sb-{i:05d}" for i in range(m)]
        bench.create_many(names)
        fig["apply_seconds"] = round(time.time() - t_start, 1)
        fig["idle_after_seconds"] = round(wait("all idle", lambda: bench.idle(m), args.timeout, 5), 1)
        burst = [first.seen[uid] - t for uid, t in bench.created.values() if uid in first.seen]
        fig["burst_first_child_p50_s"], fig["burst_first_child_p99_s"] = (
            round(pct(burst, 0.5), 2),
            round(pct(burst, 0.99), 2),
        )
        fig["rss_after_burst_mb"] = round(op.rss_mb()[0], 1)
        fig["cpu_burst_s"] = round(op.cpu_seconds() - cpu0, 1)
        # -- idle steady state --------------------------------------------------------------------------------
        time.sleep(args.settle)
        before = apiserver_requests(cluster)
        w0, cpu1 = time.time(), op.cpu_seconds()
        time.sleep(args.steady)
        w1, cpu2 = time.time(), op.cpu_seconds()
        after = apiserver_requests(cluster)
        minutes = (w1 - w0) / 60
        fig["idle_window_s"] = round(w1 - w0)
        fig["idle_cpu_s_per_min"] = round((cpu2 - cpu1) / minutes, 2)
        fig["idle_rss_mb"], _ = op.rss_mb()
        fig["idle_rss_mb"] = round(fig["idle_rss_mb"], 1)
        delta = after - before
        fig["apiserver_requests_per_min_idle"] = round(sum(delta.values()) / minutes)
        fig["apiserver_idle_top"] = {k: round(v / minutes, 1) for k, v in delta.most_common(8)}
        # -- M live: new benchmarks one per second ----------------------------------------------------------
        new = [f"new-{i:03d}" for i in range(args.new)]
        for name in new:
            bench.create(name)
            time.sleep(1)
        wait("new ones' first child", lambda: all(bench.created[n][0] in first.seen for n in new), 600, 1)
        lat = [first.seen[bench.created[n][0]] - bench.created[n][1] for n in new]
        fig["first_child_p50_s"], fig["first_child_p99_s"] = round(pct(lat, 0.5), 2), round(pct(lat, 0.99), 2)
        # -- finish everything ------------------------------------------------------------------------------
        t_fin = time.time()
        bench.finish_all()
        fig["finish_seconds"] = round(time.time() - t_fin, 1)
        time.sleep(5)  # the servers' teardown
        t_end = time.time()
        rss, peak = op.rss_mb()
        fig["rss_end_mb"], fig["rss_peak_mb"] = round(rss, 1), round(peak, 1)
        fig["cpu_total_s"] = round(op.cpu_seconds() - cpu0, 1)
        reconcile = histogram(op.scrape(), "servelab_reconcile_duration_seconds")
        fig["reconciles"] = int(reconcile["count"])
        fig["reconcile_p50_ms"], fig["reconcile_p99_ms"] = (
            round(reconcile["p50"] * 1e3, 1),
            round(reconcile["p99"] * 1e3, 1),
        )
        fig["reconcile_mean_ms"] = round(reconcile["mean"] * 1e3, 1)
        phases = collections.Counter((sb.get("status") or {}).get("phase") for sb in bench.benchmarks())
        fig["phases"] = dict(phases)
        events = client.CoreV1Api(api).list_namespaced_event(ns).items
        per = collections.Counter(
            (e.involved_object.name, e.reason) for e in events if e.involved_object.kind == "ServeBenchmark"
        )
        fig["duplicate_events"] = {r: n for r, n in collections.Counter(
            reason for (_, reason), n in per.items() if n > 1 for _ in range(n - 1)).items()}  # fmt: skip
        fig["events_per_benchmark"] = round(sum(per.values()) / max(len(bench.created), 1), 2)
    finally:
        op.stop()
        first.stop()
    time.sleep(2)  # the audit log's batch is flushed
    entries = audit(cluster.audit_log, t_start, t_end)
    idle = audit(cluster.audit_log, w0, w1)
    fig["operator_requests_per_min_idle"] = round(len(idle) / minutes, 1)
    fig["operator_idle_by_verb_resource"] = {
        k: round(v / minutes, 1) for k, v in by_verb_resource(idle).most_common(8)
    }
    writes = [e for e in entries if e.get("verb") in WRITES]
    finished = sum(n for p, n in fig["phases"].items() if p in ("Succeeded", "Failed"))
    fig["operator_writes_per_finished"] = round(len(writes) / max(finished, 1), 1)
    fig["operator_writes_by_resource"] = {
        k: round(v / max(finished, 1), 2) for k, v in by_verb_resource(writes).most_common(12)
    }
    fig["operator_requests_total"] = len(entries)
    return fig


def _exists(api: client.ApiClient, ns: str) -> bool:
    try:
        client.CoreV1Api(api).read_namespaced_service_account("default", ns)
        return True
    except ApiException:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--nodes", type=int, default=100)
    parser.add_argument("--counts", type=int, nargs="+", default=[50, 200])
    parser.add_argument("--new", type=int, default=20, help="benchmarks created one per second with M live")
    parser.add_argument("--steady", type=float, default=60, help="seconds of idle steady state measured")
    parser.add_argument("--settle", type=float, default=10, help="seconds waited before measuring idle")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds allowed to reach idle")
    parser.add_argument(
        "--operator-src", type=Path, default=None, help="PYTHONPATH of another checkout's operator/"
    )
    parser.add_argument(
        "--crds", type=Path, default=None, help="CRDs to install (default: this checkout's crds/)"
    )
    parser.add_argument(
        "--state-dir", type=Path, default=None, help="cluster state directory (default: a temp dir)"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="servelab-scale-"))
    cluster = ScaleCluster("scale", args.state_dir or workdir / "cluster", nodes=gpu_nodes(args.nodes),
                           crd_dir=args.crds, die_with_parent=True)  # fmt: skip
    t0 = time.monotonic()
    cluster.up(reuse=False, build=False, timeout=900)
    print(
        f"control plane with {args.nodes} fake GPU nodes up in {time.monotonic() - t0:.0f}s ({workdir})",
        flush=True,
    )
    api = config.new_client_from_config(config_file=str(cluster.kubeconfig))
    api.configuration.connection_pool_maxsize = 16
    try:
        bg0 = apiserver_requests(cluster)
        time.sleep(30)
        background = round(sum((apiserver_requests(cluster) - bg0).values()) * 2)
        print(f"background without the operator: {background} apiserver requests/min", flush=True)
        kubeconfig = operator_identity(cluster, api, workdir)
        figures = []
        for m in args.counts:
            fig = measure(cluster, api, kubeconfig, workdir, m, args)
            fig["apiserver_background_per_min"] = background
            figures.append(fig)
            print(json.dumps(fig, indent=1), flush=True)
            if args.json:
                args.json.write_text(json.dumps(figures, indent=1))
        print(
            "\n| M (nodes) | first child p50/p99 (M live) | burst p50/p99 | operator req/min idle | writes/finished | "
            "reconcile p50/p99 | CPU idle s/min | RSS idle/peak MB |"
        )
        print("|---|---|---|---|---|---|---|---|")
        for f in figures:
            print(f"| {f['M']} ({f['nodes']}) | {f['first_child_p50_s']} / {f['first_child_p99_s']} s | "
                  f"{f['burst_first_child_p50_s']} / {f['burst_first_child_p99_s']} s | {f['operator_requests_per_min_idle']} | "
                  f"{f['operator_writes_per_finished']} | {f['reconcile_p50_ms']} / {f['reconcile_p99_ms']} ms | "
                  f"{f['idle_cpu_s_per_min']} | {f['idle_rss_mb']} / {f['rss_peak_mb']} |")  # fmt: skip
    finally:
        cluster.down()


if __name__ == "__main__":
    main()
