"""The dashboards and alerts against a real Prometheus (Debian's prometheus package, started here on loopback)
that scrapes the in-process operator during a real run on the local cluster: ServeBenchmarks of one workload
(one passes its gate, one fails it), one run that fails, and a QuantJob with perplexity, KLD and task scores.
Nothing executes (kwok runs the pods); this test publishes each worker Job's result the way a worker does.

Afterwards every query of every panel of every dashboard (variables resolved from Prometheus as Grafana
would: label_values of the variable's query) returns at least one series carrying the labels the panel uses,
through Prometheus's HTTP API; every variable query returns values; the chart's alert rules fire for the failed
gates and the failed run; `promtool check metrics` is clean on the operator's /metrics; `promtool test rules`
passes; and `servelab report` renders these runs from the cluster in all four formats."""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException
from operator_fixtures import free_port, run_operator

from servelab import GROUP, VERSION
from servelab.paths import repo_path
from servelab.reporting import llmd
from servelab_dev.controlplane import LocalCluster
from servelab_dev.kubelet import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.e2e]
DASHBOARDS = sorted(repo_path("charts", "servelab", "dashboards").glob("*.json"))
RULES = repo_path("charts", "servelab", "rules", "servelab.rules.yaml")
RULE_TESTS = Path(__file__).parent.parent / "data" / "prometheus" / "servelab.rules.test.yaml"
PLURAL = {"ServeBenchmark": "servebenchmarks", "QuantJob": "quantjobs"}


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} not found: hack/prepare.sh installs it (apt-get install -y prometheus)")
    return path


# ---- what the workers measured ------------------------------------------------------------------------------
def point(c: int, tps: float, ttft: float, label: str = "ok") -> dict[str, Any]:
    pct = {"p50": ttft, "p90": ttft * 1.3, "p95": ttft * 1.4, "p99": ttft * 1.5}
    return {"concurrency": c, "requests": 4 * c, "succeeded": 4 * c, "successRate": 1.0, "durationSeconds": 10.0,
            "rps": tps / 64, "outputTokensPerSecond": tps, "avgTtftSeconds": ttft, "p99TtftSeconds": ttft * 1.5,
            "avgTpotSeconds": 0.01, "p99TpotSeconds": 0.013, "avgLatencySeconds": 0.7, "p99LatencySeconds": 0.9,
            "percentiles": {"ttftSeconds": pct}, "sloAttainment": 1.0 if ttft * 1.5 <= 0.5 else 0.5,
            "goodputRps": tps / 64, "goodputOutputTokensPerSecond": tps, "label": label, "valid": True}  # fmt: skip


POINTS = {"sb-bf16": [point(1, 90.0, 0.05), point(4, 320.0, 0.12)],
          "sb-q4": [point(1, 120.0, 0.04), point(4, 380.0, 0.30, "server-capped")]}  # fmt: skip
SCORES = [{"dataset": "general_qa", "metric": "Rouge-L-F", "subset": "example", "num": 8, "score": 0.41}]


def _scores(v: float) -> list[dict[str, Any]]:
    return [{"dataset": "math_500", "metric": "mean_acc", "num": 5, "score": v}]


QUANT = {
    "base": {"name": "F16", "path": "/models/q/F16.gguf", "sizeBytes": 1_503_300_000, "perplexity": 14.6,
             "scores": _scores(0.6)},
    "variants": [
        {"name": "Q4_K_M", "path": "/models/q/Q4_K_M.gguf", "sizeBytes": 484_200_000, "durationSeconds": 33.0,
         "perplexity": 15.3, "klDivergence": 0.061, "scores": _scores(0.6)},
        {"name": "IQ4_XS", "path": "/models/q/IQ4_XS.gguf", "sizeBytes": 422_000_000, "durationSeconds": 41.0,
         "perplexity": 16.1, "klDivergence": 0.079, "scores": _scores(0.4)},
    ],
}  # fmt: skip


def result(kind: str, owner: str, step: str) -> dict[str, Any] | None:
    if kind == "QuantJob":
        return QUANT if step == "quantize" else None
    if owner == "sb-broken":
        return {"points": [{"concurrency": "many"}]}  # not servelab's result schema: the run fails
    if step == "load":  # the sweep's one step publishes every point
        return {"points": list(POINTS[owner])}
    if step.startswith("eval-"):
        return {"scores": SCORES}
    return {}


LOAD = {
    "parallel": [1, 4],
    "number": [4, 16],
    "minPromptLength": 256,
    "maxPromptLength": 256,
    "maxTokens": 64,
}
ON_GPU = {"placement": {"nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-L40S"}},
          "isolation": {"exclusiveNode": False}, "resources": {"gpus": 1}}  # fmt: skip
RESOURCES = {
    ("QuantJob", "qj"): {"model": {"huggingFace": {"id": "Qwen/Qwen3-0.6B"}}, "method": "gguf",
                         "gguf": {"imatrix": False, "variants": [{"type": "Q4_K_M"}, {"type": "IQ4_XS"}]},
                         "output": {"path": "/models/q"}, "resources": {"gpus": 1},
                         "evaluation": {"perplexity": {"text": {"path": "/data/wiki.test.raw"}, "klDivergence": True}},
                         "acceptance": {"maxPerplexityIncreasePercent": 8}},
    ("ServeBenchmark", "sb-bf16"): {"model": {"huggingFace": {"id": "Qwen/Qwen3-0.6B"}}, "engine": {"name": "vllm"},
                                    "load": LOAD, "slo": {"ttftSeconds": 0.5}, **ON_GPU,
                                    "evaluations": [{"datasets": [{"name": "general_qa", "localPath": "/data/qa"}]}]},
    ("ServeBenchmark", "sb-q4"): {"quantJobRef": {"name": "qj", "variant": "Q4_K_M"}, "engine": {"name": "llamacpp"},
                                  "load": LOAD, "slo": {"ttftSeconds": 0.3}, **ON_GPU},
    ("ServeBenchmark", "sb-broken"): {"model": {"huggingFace": {"id": "Qwen/Qwen3-0.6B"}}, "engine": {"name": "vllm"},
                                      "load": LOAD, **ON_GPU},
}  # fmt: skip


class Publisher:
    """Publishes each worker Job's result ConfigMap as `servelab worker` does: the name, key, labels and
    owner its Job's environment (SERVELAB_RESULT_SINK, SERVELAB_RESULT_LABELS, SERVELAB_OWNER_REF) gives."""

    def __init__(self, kube: client.ApiClient, namespace: str) -> None:
        self.batch, self.core, self.ns = client.BatchV1Api(kube), client.CoreV1Api(kube), namespace
        self.done: set[str] = set()
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
            if job.metadata.name in self.done:
                continue
            labels = job.metadata.labels
            kind = {"servebenchmark": "ServeBenchmark", "quantjob": "QuantJob"}[labels[f"{GROUP}/kind"]]
            published = result(kind, labels[f"{GROUP}/name"], labels[f"{GROUP}/step"])
            if published is None:
                continue
            env = {e.name: e.value for e in job.spec.template.spec.containers[0].env if e.value is not None}
            ns, name, key = env["SERVELAB_RESULT_SINK"].removeprefix("configmap:").split("/")
            meta = client.V1ObjectMeta(name=name, namespace=ns, labels=json.loads(env["SERVELAB_RESULT_LABELS"]),
                                       owner_references=[json.loads(env["SERVELAB_OWNER_REF"])])  # fmt: skip
            try:
                self.core.create_namespaced_config_map(
                    ns, client.V1ConfigMap(metadata=meta, data={key: json.dumps(published)})
                )
            except ApiException as err:
                if err.status != 409:
                    raise
            self.done.add(job.metadata.name)

    def __enter__(self) -> Publisher:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(10)
        assert not self.errors, self.errors


# ---- Prometheus --------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Prometheus:
    url: str

    def get(self, path: str, **params: str) -> Any:
        query = urllib.parse.urlencode(params, doseq=True)
        with urllib.request.urlopen(f"{self.url}{path}?{query}", timeout=30) as resp:
            body = json.loads(resp.read())
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        data = self.get("/api/v1/query", query=expr)
        return (
            list(data["result"])
            if data["resultType"] == "vector"
            else [{"metric": {}, "value": data["result"]}]
        )

    def label_values(self, label: str, selector: str) -> list[str]:
        return list(
            self.get(
                f"/api/v1/label/{label}/values", **{"match[]": selector, "start": str(time.time() - 3600)}
            )
        )


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[Prometheus]:
    """A real Prometheus on loopback scraping the operator's metrics port every second, with the chart's rules."""
    from operator_fixtures import METRICS_PORT

    exe = tool("prometheus")
    port = free_port()
    config = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"}, "rule_files": [str(RULES)],
              "scrape_configs": [{"job_name": "servelab", "static_configs": [{"targets": [f"127.0.0.1:{METRICS_PORT}"]}]}]}  # fmt: skip
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    log = (tmp_path / "prometheus.log").open("w")
    proc = subprocess.Popen([exe, f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                             f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
                            stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    prom = Prometheus(f"http://127.0.0.1:{port}")

    def ready() -> bool:
        try:
            with urllib.request.urlopen(f"{prom.url}/-/ready", timeout=2) as resp:
                return resp.status == 200
        except OSError:
            return proc.poll() is not None  # exited: reported below

    try:
        wait_for(ready, 60, "Prometheus to be ready")
        assert proc.poll() is None, (tmp_path / "prometheus.log").read_text()
        yield prom
    finally:
        proc.terminate()
        proc.wait(20)
        log.close()


# ---- what the dashboards ask ----------------------------------------------------------------------------------------
def used_labels(panel: dict[str, Any], target: dict[str, Any]) -> set[str]:
    """The labels a panel shows: its legend's {{label}}s and the fields its transformations group by."""
    used = set(re.findall(r"\{\{\s*(\w+)\s*\}\}", target.get("legendFormat", "")))
    for t in panel.get("transformations", []):
        if t["id"] == "groupingToMatrix":
            used |= {t["options"]["columnField"], t["options"]["rowField"]}
    return used


def substitute(expr: str, values: dict[str, str]) -> str:
    expr = expr.replace("$__rate_interval", "1m")
    for name, value in sorted(values.items(), key=lambda kv: -len(kv[0])):
        expr = expr.replace(f"${{{name}}}", value).replace(f"${name}", value)
    return expr


def candidates(prom: Prometheus, var: dict[str, Any], values: dict[str, str]) -> list[str]:
    """What Grafana would offer for a query variable (label_values(SELECTOR, LABEL)), as values to put in a
    query: a multi-value variable takes all of them (an alternation; names here need no regex escaping), a
    single one each in turn (as it is)."""
    m = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", var["query"])
    assert m, var["query"]
    found = prom.label_values(m.group(2), substitute(m.group(1), values))
    assert found, f"variable ${var['name']}: {var['query']} returned no values"
    if var.get("multi"):
        return ["|".join(found)]
    return found


def check_dashboard(prom: Prometheus, model: dict[str, Any]) -> tuple[dict[str, str], list[str]]:
    """Every panel query under the first variable choice for which all of them return data; the problems of
    the best choice otherwise."""
    variables = [v for v in model["templating"]["list"] if v["type"] == "query"]

    def assignments(i: int, values: dict[str, str]) -> Iterator[dict[str, str]]:
        if i == len(variables):
            yield dict(values)
            return
        for value in candidates(prom, variables[i], values):
            yield from assignments(i + 1, {**values, variables[i]["name"]: value})

    best: tuple[dict[str, str], list[str]] | None = None
    for values in itertools.islice(assignments(0, {}), 20):
        problems = []
        for panel in model["panels"]:
            for target in panel.get("targets", []):
                expr = substitute(target["expr"], values)
                series = prom.query(expr)
                want = used_labels(panel, target)
                if not series:
                    problems.append(f"{panel['title']!r} [{target['refId']}]: no series for {expr}")
                elif not any(want <= set(s["metric"]) for s in series):
                    problems.append(f"{panel['title']!r} [{target['refId']}]: no series has labels {sorted(want)}: "
                                    f"{[s['metric'] for s in series][:3]}")  # fmt: skip
        if not problems:
            return values, []
        if best is None or len(problems) < len(best[1]):
            best = (values, problems)
    assert best is not None
    return best


# ---- the test ---------------------------------------------------------------------------------------------------------
def test_every_panel_query_returns_data_after_a_real_run(
    kube: client.ApiClient,
    namespace: str,
    cluster: LocalCluster,
    prometheus: Prometheus,
    tmp_path: Path,
) -> None:
    import servelab.controller.handlers as handlers

    prom = prometheus
    promtool = tool("promtool")
    api = client.CustomObjectsApi(kube)
    old = handlers.SETTINGS
    handlers.SETTINGS = dataclasses.replace(old, extra_pod_labels={})  # kwok runs every pod
    t0 = time.monotonic()
    try:
        with run_operator(cluster, namespace) as op, Publisher(kube, namespace):
            for (kind, name), spec in RESOURCES.items():
                body = {
                    "apiVersion": f"{GROUP}/{VERSION}",
                    "kind": kind,
                    "metadata": {"name": name},
                    "spec": spec,
                }
                api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL[kind], body)

            def finished() -> dict[str, str] | None:
                phases = {name: (api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL[kind], name)
                                 .get("status") or {}).get("phase") for kind, name in RESOURCES}  # fmt: skip
                return phases if all(p in ("Succeeded", "Failed") for p in phases.values()) else None

            phases = wait_for(finished, 240, "every run to finish", interval=1)
            assert phases == {
                "qj": "Succeeded",
                "sb-bf16": "Succeeded",
                "sb-q4": "Succeeded",
                "sb-broken": "Failed",
            }
            ran = time.monotonic() - t0

            # Prometheus has scraped the end state (and enough of the run for rates over a minute)
            def scraped() -> bool:
                return (
                    bool(prom.query(f'servelab_run_failed{{namespace="{namespace}"}}'))
                    and bool(prom.query(f'servelab_verdict_passed{{namespace="{namespace}", name="sb-q4"}}'))
                    and bool(prom.query(f'servelab_quant_base_info{{namespace="{namespace}"}}'))
                )

            wait_for(scraped, 60, "Prometheus to scrape the finished runs")
            time.sleep(max(0.0, 10 - (time.monotonic() - t0)))  # at least ten scrapes in every window

            # every panel of every dashboard: data, with the labels it shows
            failures, chosen, queried = {}, {}, 0
            for path in DASHBOARDS:
                model = json.loads(path.read_text())
                values, problems = check_dashboard(prom, model)
                chosen[path.stem] = values
                queried += sum(len(p.get("targets", [])) for p in model["panels"])
                if problems:
                    failures[path.stem] = (values, problems)
            assert not failures, json.dumps(failures, indent=2)

            # the chart's alerts: both failed gates and the failed run
            def alerts() -> set[tuple[str, str]] | None:
                got = {(a["labels"]["alertname"], a["labels"].get("name", "")) for a in prom.get("/api/v1/alerts")["alerts"]
                       if a["labels"].get("namespace") == namespace and a["state"] in ("pending", "firing")}  # fmt: skip
                want = {
                    ("ServelabGateFailed", "sb-q4"),
                    ("ServelabGateFailed", "qj"),
                    ("ServelabRunFailed", "sb-broken"),
                }
                return got if want <= got else None

            got = wait_for(alerts, 30, "the alerts of the failed gates and the failed run")
            assert ("ServelabGateFailed", "sb-bf16") not in got

            # the operator's own /metrics, as Prometheus read it: lint-clean
            lint = subprocess.run(
                [promtool, "check", "metrics"], input=op.scrape(), capture_output=True, text=True
            )
            assert lint.returncode == 0 and not (lint.stdout + lint.stderr).strip(), lint.stdout + lint.stderr
    finally:
        handlers.SETTINGS = old

    # the rules' own unit tests
    rules = subprocess.run([promtool, "test", "rules", str(RULE_TESTS)], capture_output=True, text=True)
    assert rules.returncode == 0, rules.stdout + rules.stderr

    # servelab report renders the operator's runs from the cluster in all four formats
    exe = Path(sys.executable).with_name("servelab")
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBERNETES_")} | {
        "KUBECONFIG": str(cluster.kubeconfig)
    }
    outputs = {}
    for fmt, suffix in (("table", "txt"), ("markdown", "md"), ("html", "html"), ("json", "json")):
        out = tmp_path / f"report.{suffix}"
        proc = subprocess.run([str(exe), "report", "-n", namespace, "--format", fmt, "-o", str(out)],
                              capture_output=True, text=True, env=env, timeout=120)  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        outputs[fmt] = out.read_text()
    group = "Workload group 1: evalscope chat random in=256 out=64 ignoreEos"
    assert group in outputs["table"] and re.search(
        r"\|\s+1 \|\s+90\.00 \|\s+120\.00 \(\+33\.3%\) \|", outputs["table"]
    )
    assert "sb-broken (Failed)" in outputs["table"] and "AcceptanceNotMet" in outputs["table"]
    assert "| 4 | 320.00 | 380.00 (+18.8%) |" in outputs["markdown"]
    assert outputs["html"].count("<svg") == 3 and "server-capped" in outputs["html"]
    reports = json.loads(outputs["json"])
    assert len(reports) == 4
    validator = jsonschema.Draft202012Validator(llmd.schema())
    assert not [e.message for r in reports for e in validator.iter_errors(r)]
    print(
        f"\nruns finished in {ran:.0f}s; all {queried} queries of {len(DASHBOARDS)} dashboards answered with "
        f"variables {json.dumps(chosen)}"
    )  # (kopf's runner holds stdout while the operator runs)
