"""Gates on real runs: the operator on the local cluster runs llama.cpp and evalscope for real (pods
executed by the test-side kubelet) and judges the results: a benchmark passing its SLO, the same failing a
stricter one (Succeeded, Passed=False, each failed check with numbers), a baseline comparison passing and
one refused for a different workload, a QuantJob rejecting an output on KLD, and `servelab gate`'s exit
codes against the live resources."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from operator_fixtures import RunningOperator
from test_operator_e2e import apply, data, finished, gguf_quantjob, llamacpp_bench, toolchain  # noqa: F401

from servelab_dev.controlplane import LocalCluster
from servelab_dev.kubelet import PodExecutor

pytestmark = [pytest.mark.integration, pytest.mark.e2e]


def conditions(obj: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in obj["status"]["conditions"]}


def gate(kubeconfig: Path, namespace: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
    return subprocess.run([sys.executable, "-m", "servelab", "gate", *args, "-n", namespace, "--timeout", "30"],
                          capture_output=True, text=True, env=env, timeout=120)  # fmt: skip


def test_gates_on_real_runs(
    kube: client.ApiClient, namespace: str, operator: RunningOperator, podexec: PodExecutor,
    toolchain: dict[str, Path], data: Path, tmp_path: Path, cluster: LocalCluster,  # noqa: F811
) -> None:  # fmt: skip
    kubeconfig = cluster.kubeconfig
    qj = gguf_quantjob(toolchain["model"], data, tmp_path / "gguf")
    qj["acceptance"] = {
        "maxMeanKld": 1e-9,
        "maxPerplexityIncreasePercent": 1000,
    }  # no real quantization is that close
    apply(kube, namespace, "QuantJob", "tiny-gguf", qj)
    lenient = llamacpp_bench(slo={"ttftSeconds": 120, "minSuccessRate": 1.0})
    strict = llamacpp_bench(slo={"ttftSeconds": 0.000001, "percentile": "p50"})
    apply(kube, namespace, "ServeBenchmark", "slo-met", lenient)
    apply(kube, namespace, "ServeBenchmark", "slo-missed", strict)

    q = finished(kube, namespace, "QuantJob", "tiny-gguf")
    assert q["status"]["phase"] == "Succeeded", q["status"]
    v = q["status"]["verdict"]
    assert not v["passed"] and v["reason"] == "AcceptanceNotMet"
    kld = next(c for c in v["checks"] if c["name"].startswith("meanKld"))
    assert not kld["passed"] and kld["measured"] > 1e-9 and kld["threshold"] == 1e-9
    assert conditions(q)["Passed"] == ("False", "AcceptanceNotMet") and conditions(q)["Stalled"][0] == "True"

    met = finished(kube, namespace, "ServeBenchmark", "slo-met")
    assert met["status"]["phase"] == "Succeeded" and met["status"]["verdict"]["passed"], met["status"]
    assert (
        conditions(met)["Ready"] == ("True", "AllChecksPassed") and conditions(met)["Stalled"][0] == "False"
    )
    assert met["status"]["verdict"]["slo"]["maxConcurrency"] == 2.0
    missed = finished(kube, namespace, "ServeBenchmark", "slo-missed")
    assert missed["status"]["phase"] == "Succeeded", missed["status"]  # it worked: not Failed
    mv = missed["status"]["verdict"]
    assert not mv["passed"] and mv["reason"] == "SLONotMet"
    failed = [c for c in mv["checks"] if not c["passed"]]
    assert failed and all(c["measured"] > c["threshold"] == 0.000001 for c in failed)
    assert conditions(missed)["Ready"] == ("False", "SLONotMet") and conditions(missed)["Stalled"] == (
        "True",
        "SLONotMet",
    )

    # against the finished run: the same workload within generous tolerances passes; another workload is refused
    tolerant = {
        "name": "slo-met",
        "tolerances": {"minOutputTokensPerSecondRatio": 0.01, "maxP99TtftRatio": 100},
    }
    apply(kube, namespace, "ServeBenchmark", "vs-base", llamacpp_bench(baseline=tolerant))
    other = llamacpp_bench(baseline=tolerant)
    other["load"] = {**other["load"], "maxTokens": 8, "minTokens": 8}
    apply(kube, namespace, "ServeBenchmark", "vs-other", other)
    apply(
        kube,
        namespace,
        "ServeBenchmark",
        "broken",
        llamacpp_bench(quantJobRef=None, model={"path": str(tmp_path / "missing.gguf")}),
    )
    same = finished(kube, namespace, "ServeBenchmark", "vs-base")
    assert (
        same["status"]["verdict"]["passed"]
        and same["status"]["verdict"]["baseline"] == "ServeBenchmark slo-met"
    )
    assert {c["subject"] for c in same["status"]["verdict"]["checks"]} == {"c=1", "c=2"}
    refused = finished(kube, namespace, "ServeBenchmark", "vs-other")
    rv = refused["status"]["verdict"]
    assert (
        not rv["passed"]
        and rv["reason"] == "BaselineIncomparable"
        and "maxTokens: 8 here, 16 in the baseline" in rv["message"]
    )
    broken = finished(kube, namespace, "ServeBenchmark", "broken")
    assert broken["status"]["phase"] == "Failed" and conditions(broken)["Passed"] == ("False", "RunFailed")

    ok = gate(kubeconfig, namespace, "slo-met")
    assert ok.returncode == 0 and "passed (AllChecksPassed)" in ok.stdout, ok.stdout + ok.stderr
    slow = gate(kubeconfig, namespace, "slo-missed")
    assert slow.returncode == 1 and "FAIL ttftSeconds p50 @ c=1: measured" in slow.stdout, (
        slow.stdout + slow.stderr
    )
    assert gate(kubeconfig, namespace, "tiny-gguf", "--kind", "QuantJob").returncode == 1
    assert gate(kubeconfig, namespace, "broken").returncode == 2
    assert gate(kubeconfig, namespace, "never-created").returncode == 2
