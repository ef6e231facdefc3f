"""The GitOps gate adapters against real runs: the in-process operator on the local cluster takes a
ServeBenchmark and a QuantJob through every phase (new, pending, running, passed, gate failed, failed, stale,
terminating); each live object goes through the Argo CD health Lua, kstatus (hack/kstatus) and the Flux
healthCheckExprs, which must agree with the verdict, and the committed testdata
(charts/servelab/argocd/servelab.dev/<Kind>/testdata/) must match what the run produced (refresh them with
SERVELAB_REFRESH_GITOPS_TESTDATA=1). `servelab gate` runs for real, from the command line and as the job
metric of examples/gitops/analysistemplate-gate-job.yaml (a Job in the cluster, its pod run by the test-side
executor with the example's ServiceAccount); the AnalysisTemplates are created against Argo Rollouts' own
CRDs (hack/argo-rollouts-crds.sh), and the prometheus one's queries are evaluated on the operator's /metrics.

Nothing executes: kwok runs the server pods and completes the worker Jobs (the operator runs here without
the test executor's label), and this test publishes each worker's result ConfigMap the way a worker does
(where and how its Job's environment says). A failed run comes from kwok failing a worker pod (the
fake-result label on every pod of the second operator run).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from operator_fixtures import run_operator

from gitops_adapters import (
    KINDS,
    PHASES,
    argocd_health,
    captured_path,
    dump,
    flux_status,
    gate_view,
    health_script,
    kstatus,
    load,
    normalize,
)
from servelab import GROUP, VERSION
from servelab.paths import repo_path
from servelab_dev.controlplane import FAKE_RESULT_LABEL, LocalCluster
from servelab_dev.kubelet import LABEL as EXECUTOR_LABEL
from servelab_dev.kubelet import PodExecutor, wait_for
from servelab_dev.results import publish_job_result

pytestmark = pytest.mark.integration
REFRESH = os.environ.get("SERVELAB_REFRESH_GITOPS_TESTDATA") == "1"
GITOPS = Path(repo_path("examples", "gitops"))
PLURAL = {"ServeBenchmark": "servebenchmarks", "QuantJob": "quantjobs"}
NAMES = {"ServeBenchmark": "bench", "QuantJob": "quant"}  # object names: <prefix>-<phase it ends in>
HOLD = "example.com/hold"  # a finalizer of the test's own, to keep a deleted object visible

# the sweep's two points: p99 TTFT 0.2 s at c=1 and 0.4 s at c=4
POINTS = {
    "c1": {"concurrency": 1, "requests": 4, "succeeded": 4, "successRate": 1.0, "outputTokensPerSecond": 100.0,
               "p99TtftSeconds": 0.2, "avgTtftSeconds": 0.15, "valid": True},
    "c4": {"concurrency": 4, "requests": 8, "succeeded": 8, "successRate": 1.0, "outputTokensPerSecond": 320.0,
               "p99TtftSeconds": 0.4, "avgTtftSeconds": 0.3, "valid": True},
}  # fmt: skip
QUANT = {
    "base": {"name": "F16", "path": "/models/qwen3-0.6b-gguf/F16.gguf", "sizeBytes": 1503300000, "perplexity": 10.0},
    "variants": [{"name": "IQ4_XS", "path": "/models/qwen3-0.6b-gguf/IQ4_XS.gguf", "sizeBytes": 422000000,
                  "durationSeconds": 41.0, "perplexity": 10.3}],
}  # fmt: skip


def bench(slo_ttft: float, gpus: int = 1) -> dict[str, Any]:
    return {
        "model": {"huggingFace": {"id": "Qwen/Qwen3-0.6B"}},
        "engine": {"name": "vllm"},
        "load": {"parallel": [1, 4], "number": [4, 8]},
        "placement": {"nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-L40S"}},
        "isolation": {"exclusiveNode": False},
        "resources": {"gpus": gpus},
        "slo": {"percentile": "p99", "ttftSeconds": slo_ttft, "concurrency": [1, 4]},
    }


def quant(max_rise: float, gpus: int = 1) -> dict[str, Any]:
    return {
        "model": {"huggingFace": {"id": "Qwen/Qwen3-0.6B"}},
        "method": "gguf",
        "gguf": {"imatrix": False, "variants": [{"type": "IQ4_XS"}]},
        "output": {"path": "/models/qwen3-0.6b-gguf"},
        "evaluation": {"perplexity": {"text": {"path": "/data/wiki.test.raw"}}},
        "acceptance": {"maxPerplexityIncreasePercent": max_rise},
        "resources": {"gpus": gpus},
    }


# ---- the cluster side ---------------------------------------------------------------------------------
class Objects:
    def __init__(self, kube: client.ApiClient, namespace: str) -> None:
        self.api = client.CustomObjectsApi(kube)
        self.ns = namespace

    def create(self, kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": kind, "metadata": {"name": name}, "spec": spec}
        created: dict[str, Any] = self.api.create_namespaced_custom_object(
            GROUP, VERSION, self.ns, PLURAL[kind], body
        )
        return created

    def get(self, kind: str, name: str) -> dict[str, Any]:
        obj: dict[str, Any] = self.api.get_namespaced_custom_object(
            GROUP, VERSION, self.ns, PLURAL[kind], name
        )
        return obj

    def patch(self, kind: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        obj: dict[str, Any] = self.api.patch_namespaced_custom_object(
            GROUP, VERSION, self.ns, PLURAL[kind], name, body
        )
        return obj

    def wait(
        self, kind: str, name: str, what: str, ok: Callable[[dict[str, Any]], bool], timeout: float = 90
    ) -> dict[str, Any]:
        obj: dict[str, Any] = wait_for(lambda: (o := self.get(kind, name)) and ok(o) and o, timeout,
                                       f"{kind} {name}: {what}")  # fmt: skip
        return obj

    def finished(self, kind: str, name: str) -> dict[str, Any]:
        return self.wait(
            kind, name, "finished", lambda o: (o.get("status") or {}).get("phase") in ("Succeeded", "Failed")
        )


class Publisher:
    """Publishes each worker Job's result ConfigMap as `servelab worker` does: the name, key, labels and
    owner its Job's environment (SERVELAB_RESULT_SINK, SERVELAB_RESULT_LABELS, SERVELAB_OWNER_REF) gives."""

    def __init__(
        self, kube: client.ApiClient, namespace: str, result: Callable[[str, str, str], dict[str, Any] | None]
    ):
        self.batch, self.core = client.BatchV1Api(kube), client.CoreV1Api(kube)
        self.ns, self.result = namespace, result
        self.hold: set[str] = set()  # owner names whose results wait (to see them running)
        self.done: set[str] = set()
        self.ready: set[str] = set()  # sweep Jobs whose client-ready was published
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="result-publisher", daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception as err:
                self.errors.append(repr(err))
            self._stop.wait(0.2)

    def tick(self) -> None:
        for job in self.batch.list_namespaced_job(self.ns, label_selector=f"{GROUP}/step").items:
            labels = job.metadata.labels
            owner, step = labels[f"{GROUP}/name"], labels[f"{GROUP}/step"]
            if job.metadata.name in self.done:
                continue
            kind = {"servebenchmark": "ServeBenchmark", "quantjob": "QuantJob"}[labels[f"{GROUP}/kind"]]
            result = self.result(kind, owner, step)
            if owner in self.hold:  # a sweep's client says it is ready (the server is created then), no more
                if kind != "ServeBenchmark" or step != "load" or job.metadata.name in self.ready:
                    continue
                self.ready.add(job.metadata.name)
                result = {"kind": "perf", "partial": True, "clientReady": True, "points": []}
            if result is None:
                continue
            publish_job_result(self.core, job, result)  # replaces its client-ready result
            if owner not in self.hold:
                self.done.add(job.metadata.name)

    @contextmanager
    def running(self) -> Iterator[Publisher]:
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join(10)
        assert not self.errors, self.errors


def results(kind: str, owner: str, step: str) -> dict[str, Any] | None:
    """What each worker measured: the same load points for every benchmark, the same perplexities for every
    QuantJob; the runs that must fail publish nothing (their worker pods fail)."""
    if owner.endswith("-failed") and not owner.endswith("gate-failed"):
        return None
    if kind == "ServeBenchmark":
        return {"points": list(POINTS.values())} if step == "load" else None
    return QUANT if step == "quantize" else None


class GateExecutor(PodExecutor):
    """The test-side pod executor, also running `servelab gate` (the job metric's container) from this
    environment's servelab, with the pod's own service-account token (in-cluster config)."""

    def _local(self, command: list[str]) -> tuple[list[str], dict[str, str]]:
        if command[:2] == ["servelab", "gate"]:
            exe = Path(sys.executable).with_name("servelab")
            return [str(exe), *command[1:]], {
                "PATH": os.environ["PATH"],
                "HOME": os.environ.get("HOME", "/root"),
            }
        return super()._local(command)


# ---- the adapters -------------------------------------------------------------------------------------
def adapters(obj: dict[str, Any]) -> dict[str, Any]:
    health = argocd_health(obj, health_script(obj["kind"]))
    return {"argocd": health["status"], "message": health["message"], "kstatus": kstatus(obj)[0]["status"],
            "flux": flux_status(obj)}  # fmt: skip


def check(
    kind: str, phase: str, obj: dict[str, Any], captured: dict[tuple[str, str], dict[str, Any]]
) -> None:
    """One live object: every adapter says what PHASES says for its phase; keep it for the testdata."""
    got = adapters(obj)
    want = PHASES[phase]
    assert {k: got[k] for k in ("argocd", "kstatus", "flux")} == {
        k: want[k] for k in ("argocd", "kstatus", "flux")
    }, f"{kind} {phase}: {got}\n{yaml.safe_dump(obj.get('status'))}"
    status = obj.get("status") or {}
    if phase == "gate-failed":
        assert status["verdict"]["reason"] in got["message"], got
    if phase == "failed":
        stalled = next(c for c in status["conditions"] if c["type"] == "Stalled")
        assert stalled["reason"] in got["message"], got
    captured[(kind, phase)] = obj


def gate_cli(
    cluster: LocalCluster, namespace: str, name: str, kind: str = "ServeBenchmark", timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("servelab")
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBERNETES_")} | {
        "KUBECONFIG": str(cluster.kubeconfig)
    }
    return subprocess.run([str(exe), "gate", name, "--kind", kind, "-n", namespace, "--timeout", str(timeout),
                           "--interval", "0.5"], capture_output=True, text=True, env=env, timeout=timeout + 60)  # fmt: skip


def template(name: str) -> dict[str, Any]:
    for path in sorted(GITOPS.glob("analysistemplate-*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc["kind"] == "AnalysisTemplate" and doc["metadata"]["name"] == name:
                return dict(doc)
    raise AssertionError(f"no AnalysisTemplate {name} in {GITOPS}")


def substitute(node: Any, args: dict[str, str]) -> Any:
    """Argo Rollouts' {{args.NAME}} substitution, with the template's defaults."""
    text = json.dumps(node)
    text = re.sub(r"\{\{\s*args\.([\w-]+)\s*\}\}", lambda m: args[m.group(1)], text)
    return json.loads(text)


def template_args(tmpl: dict[str, Any], **given: str) -> dict[str, str]:
    args = {a["name"]: a["value"] for a in tmpl["spec"]["args"] if "value" in a}
    args |= {k.replace("_", "-"): v for k, v in given.items()}
    missing = [a["name"] for a in tmpl["spec"]["args"] if a["name"] not in args]
    assert not missing, f"arguments without a value: {missing}"
    return args


def gate_job(batch: client.BatchV1Api, namespace: str, job_name: str, **args: str) -> None:
    """The job metric of servelab-gate as Argo Rollouts creates it (its metadata and spec, args substituted),
    its pod marked for the test-side executor."""
    tmpl = template("servelab-gate")
    (metric,) = tmpl["spec"]["metrics"]
    job = substitute(metric["provider"]["job"], template_args(tmpl, **args))
    pod_meta = job["spec"]["template"].setdefault("metadata", {})
    pod_meta.setdefault("labels", {})[EXECUTOR_LABEL] = "local"
    body = {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {**job.get("metadata", {}), "name": job_name}, "spec": job["spec"]}  # fmt: skip
    batch.create_namespaced_job(namespace, body)


def job_outcome(
    batch: client.BatchV1Api, core: client.CoreV1Api, namespace: str, name: str
) -> tuple[str, int | None]:
    def finished() -> str | None:
        job = batch.read_namespaced_job(name, namespace)
        conds = {c.type: c.status for c in job.status.conditions or []}
        return (
            "Complete"
            if conds.get("Complete") == "True"
            else "Failed"
            if conds.get("Failed") == "True"
            else None
        )

    outcome: str = wait_for(finished, 120, f"Job {name} to finish")
    pods = core.list_namespaced_pod(namespace, label_selector=f"job-name={name}").items
    term = pods[0].status.container_statuses[0].state.terminated if pods else None
    return outcome, (term.exit_code if term else None)


# ---- Prometheus queries on the operator's own /metrics ------------------------------------------------
def samples(scrape: str) -> list[tuple[str, dict[str, str], float]]:
    from prometheus_client.parser import text_string_to_metric_families

    return [
        (s.name, s.labels, s.value) for fam in text_string_to_metric_families(scrape) for s in fam.samples
    ]


def promql(query: str, series: list[tuple[str, dict[str, str], float]]) -> list[float]:
    """The two query shapes of analysistemplate-prometheus.yaml: `max(SEL)` and `max(SEL) or max(SEL) * 0`."""
    for part in re.split(r"\s+or\s+", query.strip()):
        m = re.fullmatch(r"max\((\w+)\{([^}]*)\}\)(\s*\*\s*0)?", part.strip())
        assert m, f"unexpected query shape: {part!r}"
        name, matchers, zero = m.groups()
        want = dict(re.findall(r'(\w+)\s*=\s*"([^"]*)"', matchers))
        values = [
            v for n, labels, v in series if n == name and all(labels.get(k) == x for k, x in want.items())
        ]
        if values:
            return [0.0 if zero else max(values)]
    return []


def expr(condition: str, result: list[float]) -> bool:
    """Argo Rollouts' successCondition/failureCondition (expr-lang) for the conditions used here."""
    py = condition.replace("&&", " and ").replace("||", " or ")
    return bool(eval(py, {"__builtins__": {}}, {"len": len, "result": result}))


def prometheus_outcome(
    tmpl: dict[str, Any], series: list[tuple[str, dict[str, str], float]], **args: str
) -> dict[str, str]:
    spec = substitute(tmpl["spec"], template_args(tmpl, **args))
    out = {}
    for metric in spec["metrics"]:
        result = promql(metric["provider"]["prometheus"]["query"], series)
        ok, bad = expr(metric["successCondition"], result), expr(metric["failureCondition"], result)
        out[metric["name"]] = "Successful" if ok and not bad else "Failed" if bad else "Inconclusive"
    return out


# ---- the test ----------------------------------------------------------------------------------------
def write_testdata(captured: dict[tuple[str, str], dict[str, Any]], namespace: str) -> None:
    for (kind, phase), obj in captured.items():
        path = captured_path(kind, phase)
        path.parent.mkdir(parents=True, exist_ok=True)
        header = "# Captured from a real run by tests/integration/test_gitops_gates.py (SERVELAB_REFRESH_GITOPS_TESTDATA=1)\n"
        path.write_text(header + dump(normalize(obj, namespace)))


def test_gates_agree_with_the_verdict_in_every_phase(
    kube: client.ApiClient, namespace: str, cluster: LocalCluster, kubectl: list[str], tmp_path: Path
) -> None:
    import servelab.controller.handlers as handlers

    objs = Objects(kube, namespace)
    batch, core = client.BatchV1Api(kube), client.CoreV1Api(kube)
    captured: dict[tuple[str, str], dict[str, Any]] = {}
    old = handlers.SETTINGS
    publisher = Publisher(kube, namespace, results)
    publisher.hold |= {"bench-passed", "quant-passed"}  # until they were seen running
    executor = GateExecutor(kube, namespace, *kube.configuration.host.split("://", 1)[1].rsplit(":", 1),
                            cluster.pki_dir / "ca.crt", tmp_path / "pods")  # fmt: skip
    try:
        # ---- first run: no executor label (kwok runs every pod), results published here ---------------
        handlers.SETTINGS = dataclasses.replace(old, extra_pod_labels={})
        with run_operator(cluster, namespace) as op, publisher.running():
            check(
                "ServeBenchmark", "new", objs.create("ServeBenchmark", "bench-passed", bench(0.5)), captured
            )
            check("QuantJob", "new", objs.create("QuantJob", "quant-passed", quant(5)), captured)
            objs.create("ServeBenchmark", "bench-gate-failed", bench(0.3))
            objs.create("QuantJob", "quant-gate-failed", quant(1))
            objs.create("ServeBenchmark", "bench-pending", bench(0.5, gpus=64))
            objs.create("QuantJob", "quant-pending", quant(5, gpus=64))

            def reconciling(reason: str) -> Callable[[dict[str, Any]], bool]:
                return lambda o: any(c["type"] == "Reconciling" and c["status"] == "True" and c["reason"] == reason
                                     for c in (o.get("status") or {}).get("conditions", []))  # fmt: skip

            obj = objs.wait("ServeBenchmark", "bench-pending", "unschedulable", reconciling("Unschedulable"))
            check("ServeBenchmark", "pending", obj, captured)
            # a QuantJob's quantize pod that cannot be scheduled: the run is under way, its Job waits
            wait_for(lambda: batch.list_namespaced_job(namespace, label_selector=f"{GROUP}/name=quant-pending").items,
                     60, "quant-pending's Job")  # fmt: skip
            obj = objs.wait("QuantJob", "quant-pending", "running", reconciling("Running"))
            check("QuantJob", "pending", obj, captured)
            obj = objs.wait("ServeBenchmark", "bench-passed", "at its first load point",
                            lambda o: (o.get("status") or {}).get("message", "").startswith("load 1/2"))  # fmt: skip
            check("ServeBenchmark", "running", obj, captured)
            obj = objs.wait("QuantJob", "quant-passed", "quantizing",
                            lambda o: (o.get("status") or {}).get("message", "").startswith("quantize"))  # fmt: skip
            check("QuantJob", "running", obj, captured)
            publisher.hold.clear()

            for kind, prefix in NAMES.items():
                for phase in ("passed", "gate-failed"):
                    obj = objs.finished(kind, f"{prefix}-{phase}")
                    assert obj["status"]["phase"] == "Succeeded", obj["status"]
                    check(kind, phase, obj, captured)
            sb = captured[("ServeBenchmark", "gate-failed")]["status"]["verdict"]
            assert sb["reason"] == "SLONotMet" and sb["slo"]["maxConcurrency"] == pytest.approx(2.5), sb
            qj = captured[("QuantJob", "gate-failed")]["status"]["verdict"]
            assert qj["reason"] == "AcceptanceNotMet", qj

            # ---- servelab gate from the command line: 0 passed, 1 gate failed ---------------------------
            for kind, prefix in NAMES.items():
                ok, bad = (
                    gate_cli(cluster, namespace, f"{prefix}-passed", kind),
                    gate_cli(cluster, namespace, f"{prefix}-gate-failed", kind),
                )
                assert (ok.returncode, bad.returncode) == (0, 1), (
                    ok.stdout,
                    ok.stderr,
                    bad.stdout,
                    bad.stderr,
                )
                assert "FAIL" in bad.stdout and "passed" in ok.stdout

            # ---- the AnalysisTemplate's job metric, in the cluster, with the example's RBAC ---------------
            subprocess.run([*kubectl, "apply", "-n", namespace, "-f", str(GITOPS / "gate-rbac.yaml")], check=True,
                           capture_output=True)  # fmt: skip
            with executor_running(executor):
                gate_job(batch, namespace, "gate-bench-passed", benchmark="bench-passed", timeout="60")
                gate_job(
                    batch, namespace, "gate-bench-gate-failed", benchmark="bench-gate-failed", timeout="60"
                )
                gate_job(
                    batch,
                    namespace,
                    "gate-quant-passed",
                    benchmark="quant-passed",
                    kind="QuantJob",
                    timeout="60",
                )
                outcomes = {n: job_outcome(batch, core, namespace, n)
                            for n in ("gate-bench-passed", "gate-bench-gate-failed", "gate-quant-passed")}  # fmt: skip
            assert outcomes == {"gate-bench-passed": ("Complete", 0), "gate-bench-gate-failed": ("Failed", 1),
                                "gate-quant-passed": ("Complete", 0)}, outcomes  # fmt: skip

            # ---- the prometheus AnalysisTemplate's queries on the operator's metrics ---------------------
            series = samples(op.scrape())
            tmpl = template("servelab-verdict-prometheus")
            assert prometheus_outcome(tmpl, series, benchmark="bench-passed", namespace=namespace, min_concurrency="4") == {
                "verdict": "Successful", "max-concurrency-under-slo": "Successful"}  # fmt: skip
            assert prometheus_outcome(tmpl, series, benchmark="bench-gate-failed", namespace=namespace, min_concurrency="4") == {
                "verdict": "Failed", "max-concurrency-under-slo": "Failed"}  # fmt: skip
            assert prometheus_outcome(tmpl, series, benchmark="bench-running-nowhere", namespace=namespace) == {
                "verdict": "Inconclusive", "max-concurrency-under-slo": "Inconclusive"}  # fmt: skip

            # ---- a changed spec: the finished run's status is stale until the operator catches up ---------
            stale = objs.patch("ServeBenchmark", "bench-passed", {"spec": {"slo": {"ttftSeconds": 0.45}}})
            check("ServeBenchmark", "stale", stale, captured)
            stale = objs.patch(
                "QuantJob", "quant-passed", {"spec": {"acceptance": {"maxPerplexityIncreasePercent": 4}}}
            )
            check("QuantJob", "stale", stale, captured)
            # ---- deleted, held by another controller's finalizer (a finished run holds none of servelab's) ----
            for kind, prefix in NAMES.items():
                name = f"{prefix}-gate-failed"
                held = objs.get(kind, name)["metadata"].get("finalizers") or []
                objs.patch(kind, name, {"metadata": {"finalizers": [*held, HOLD]}})
                objs.api.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL[kind], name)
                obj = objs.wait(kind, name, "only the test's finalizer left",
                                lambda o: "deletionTimestamp" in o["metadata"] and o["metadata"].get("finalizers") == [HOLD])  # fmt: skip
                check(kind, "terminating", obj, captured)
                objs.patch(kind, name, {"metadata": {"finalizers": None}})
            # the new runs of the changed specs finish too
            for kind, prefix in NAMES.items():
                objs.wait(kind, f"{prefix}-passed", "second run finished",
                          lambda o: o["status"].get("observedGeneration") == 2 and o["status"].get("phase") == "Succeeded")  # fmt: skip

        # ---- second run: kwok fails every worker pod (the fake-result label) -----------------------------
        handlers.SETTINGS = dataclasses.replace(old, extra_pod_labels={FAKE_RESULT_LABEL: "Failed"})
        with run_operator(cluster, namespace):
            objs.create("ServeBenchmark", "bench-failed", bench(0.5))
            objs.create("QuantJob", "quant-failed", quant(5))
            for kind, prefix in NAMES.items():
                obj = objs.finished(kind, f"{prefix}-failed")
                assert obj["status"]["phase"] == "Failed", obj["status"]
                check(kind, "failed", obj, captured)
                assert gate_cli(cluster, namespace, f"{prefix}-failed", kind).returncode == 2
        reasons = {k: next(c["reason"] for c in o["status"]["conditions"] if c["type"] == "Stalled")
                   for (k, p), o in captured.items() if p == "failed"}  # fmt: skip
        assert reasons == {"ServeBenchmark": "LoadFailed", "QuantJob": "QuantizeFailed"}, reasons
    finally:
        handlers.SETTINGS = old

    # ---- the committed testdata are these objects ------------------------------------------------------
    assert set(captured) == {(k, p) for k in KINDS for p in PHASES}, sorted(set(captured))
    if REFRESH:
        write_testdata(captured, namespace)
    drift = []
    for (kind, phase), obj in sorted(captured.items()):
        path = captured_path(kind, phase)
        if not path.exists() or gate_view(load(path)) != gate_view(normalize(obj, namespace)):
            drift.append(f"{path.relative_to(repo_path())}: {gate_view(normalize(obj, namespace))}")
    assert not drift, (
        "testdata differ from the live run (SERVELAB_REFRESH_GITOPS_TESTDATA=1 refreshes them):\n"
        + "\n".join(drift)
    )


@contextmanager
def executor_running(executor: PodExecutor) -> Iterator[PodExecutor]:
    executor.start()
    try:
        yield executor
    finally:
        executor.stop()
    assert not executor.errors, executor.errors


def test_committed_testdata_through_kstatus_and_flux() -> None:
    """kstatus (the built hack/kstatus) and the Flux expressions on every committed testdata object."""
    paths = {(k, p): captured_path(k, p) for k in KINDS for p in PHASES}
    objs = {key: load(path) for key, path in paths.items()}
    statuses = kstatus(*objs.values())
    got = {key: (s["status"], flux_status(obj)) for (key, obj), s in zip(objs.items(), statuses, strict=True)}
    want = {(k, p): (PHASES[p]["kstatus"], PHASES[p]["flux"]) for k, p in objs}
    assert got == want


def test_analysis_templates_are_valid_against_the_argo_rollouts_crds(
    kube: client.ApiClient, kubectl: list[str], namespace: str
) -> None:
    """Argo Rollouts' own CRDs (from the Go module proxy, never committed) installed into the cluster; the
    AnalysisTemplates of examples/gitops/ pass a strict server-side dry-run and are created for real."""
    crds = subprocess.run([str(repo_path("hack", "argo-rollouts-crds.sh"))], check=True, capture_output=True,
                          text=True).stdout.strip()  # fmt: skip
    files = [str(Path(crds) / f) for f in ("analysis-template-crd.yaml", "cluster-analysis-template-crd.yaml",
                                             "analysis-run-crd.yaml")]  # fmt: skip
    cmd = [*kubectl, "apply", "--server-side", "--force-conflicts", *[a for f in files for a in ("-f", f)]]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    ext = client.ApiextensionsV1Api(kube)

    def established() -> bool:
        return all(
            any(c.type == "Established" and c.status == "True" for c in ext.read_custom_resource_definition(n).status.conditions or [])
            for n in ("analysistemplates.argoproj.io", "clusteranalysistemplates.argoproj.io", "analysisruns.argoproj.io")
        )  # fmt: skip

    wait_for(established, 60, "the Argo Rollouts CRDs established")
    templates = sorted(str(p) for p in GITOPS.glob("analysistemplate-*.yaml"))
    assert len(templates) == 2
    targs = [a for f in templates for a in ("-f", f)]
    for extra in (["--dry-run=server"], []):
        proc = subprocess.run([*kubectl, "create", "--validate=strict", *extra, "-n", namespace, *targs],
                              capture_output=True, text=True)  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        assert "analysistemplate.argoproj.io/servelab-gate created" in proc.stdout
        assert "analysistemplate.argoproj.io/servelab-verdict-prometheus created" in proc.stdout
    rbac = subprocess.run([*kubectl, "create", "--validate=strict", "--dry-run=server", "-n", namespace, "-f",
                           str(GITOPS / "gate-rbac.yaml")], capture_output=True, text=True)  # fmt: skip
    assert rbac.returncode == 0, rbac.stderr


def test_chart_renders_the_argocd_health_checks(helm: list[str], kubectl: list[str], namespace: str) -> None:
    """With argocd.healthChecks.enabled the chart renders the argocd-cm keys holding the tested scripts."""
    from servelab_dev.controlplane import binaries

    out = subprocess.run([*helm, "template", "lab", str(repo_path("charts", "servelab")), "--kube-version",
                          binaries(build=False).kube_version, "--set", "argocd.healthChecks.enabled=true",
                          "--set", f"argocd.healthChecks.namespace={namespace}", "--show-only",
                          "templates/argocd-health.yaml"], check=True, capture_output=True, text=True).stdout  # fmt: skip
    cm = yaml.safe_load(out)
    assert cm["metadata"]["namespace"] == namespace
    assert cm["data"] == {
        f"resource.customizations.health.servelab.dev_{k}": health_script(k).read_text() for k in KINDS
    }
    dry = subprocess.run([*kubectl, "apply", "--dry-run=server", "--validate=strict", "-f", "-"], input=out,
                         capture_output=True, text=True)  # fmt: skip
    assert dry.returncode == 0, dry.stderr
