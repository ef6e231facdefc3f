"""Time-based decisions wake their resource when they fall due (issue 13): the operator waits for a child's
change or the resource's next deadline, not a fixed resync. Each deadline the core enforces says when it
falls due (`Decision.wake_after`), and deciding again at that moment enforces it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from servelab import core
from servelab.api.quantjob import QuantJobSpec
from servelab.api.servebenchmark import ServeBenchmarkSpec, ServeBenchmarkStatus
from servelab.controller.kube import cluster_site
from servelab.controller.settings import Settings
from servelab.core import JobState, Observed, Owner, ServerState

SITE = cluster_site(Settings())
T0 = datetime(2026, 11, 29, 8, 0, 0, tzinfo=UTC)
SPEC = ServeBenchmarkSpec.model_validate({
    "model": {"path": "/models/m"}, "engine": {"name": "vllm"},
    "load": {"parallel": [1], "number": [4]},
    "timeouts": {"serverReadySeconds": 900, "totalSeconds": 7200}})  # fmt: skip
OWNER = Owner("ServeBenchmark", "b", "ns", "uid-b", 1)


def decide(status: dict[str, Any], at: float, **observed: Any) -> core.Decision:
    return core.decide_benchmark(OWNER, SPEC, Observed(generation=1, status=status, now=T0 + timedelta(seconds=at),
                                                       **observed), SITE)  # fmt: skip


def started() -> tuple[dict[str, Any], str]:
    """The status after the first decisions: the client step created, its client ready, the server created."""
    first = decide({}, 0)
    (step,) = [a.step for a in first.actions if isinstance(a, core.RunStep)]
    ready = {"kind": "perf", "partial": True, "clientReady": True, "points": []}
    d = decide(
        first.status.to_wire(), 5, jobs={step.id: JobState(step.id, active=True)}, results={step.id: ready}
    )
    assert any(isinstance(a, core.CreateServer) for a in d.actions)
    return d.status.to_wire(), step.id


def test_a_new_run_wakes_at_the_client_start_deadline() -> None:
    d = decide({}, 0)
    assert d.wake_after == pytest.approx(900 + 1)  # the client must say it is ready within serverReadySeconds


def test_a_server_starting_wakes_at_its_ready_timeout_and_then_fails() -> None:
    status, step = started()
    jobs = {step: JobState(step, active=True)}
    d = decide(status, 100, server=ServerState(exists=True), jobs=jobs)
    assert d.wake_after == pytest.approx(900 - 100 + 1)
    late = decide(d.status.to_wire(), 100 + (d.wake_after or 0), server=ServerState(exists=True), jobs=jobs)
    assert late.status.phase == "Failed" and (late.status.message or "").startswith("ServerNotReady:")


def test_a_running_load_step_wakes_at_the_total_timeout() -> None:
    status, step = started()
    d = decide(
        status, 300, server=ServerState(exists=True, ready=True), jobs={step: JobState(step, active=True)}
    )
    assert d.status.phase == "Running" and not d.actions
    assert d.wake_after == pytest.approx(7200 - 300 + 1)


def test_a_finished_job_without_its_result_wakes_at_the_grace_period() -> None:
    status, step = started()
    done = JobState(step, succeeded=True, completed_at=T0 + timedelta(seconds=290))
    partial = {"kind": "perf", "partial": True, "points": []}
    d = decide(
        status, 300, server=ServerState(exists=True, ready=True), jobs={step: done}, results={step: partial}
    )
    assert d.wake_after == pytest.approx(core.RESULT_GRACE_SECONDS - 10 + 1)
    late = decide(d.status.to_wire(), 300 + (d.wake_after or 0), server=ServerState(exists=True, ready=True),
                  jobs={step: done}, results={step: partial})  # fmt: skip
    assert late.status.phase == "Failed" and "without publishing a result" in (late.status.message or "")


def test_a_quantjob_wakes_at_its_total_timeout() -> None:
    spec = QuantJobSpec.model_validate({"model": {"path": "/models/m"}, "method": "gguf",
                                        "gguf": {"variants": [{"type": "Q4_K_M"}]}, "output": {"path": "/out"},
                                        "timeoutSeconds": 3600})  # fmt: skip
    owner = Owner("QuantJob", "q", "ns", "uid-q", 1)
    first = core.decide_quantjob(owner, spec, Observed(generation=1, status={}, now=T0), SITE)
    (step,) = [a.step for a in first.actions if isinstance(a, core.RunStep)]
    d = core.decide_quantjob(owner, spec, Observed(generation=1, status=first.status.to_wire(),
                                                   now=T0 + timedelta(seconds=600),
                                                   jobs={step.id: JobState(step.id, active=True)}), SITE)  # fmt: skip
    assert d.wake_after == pytest.approx(3600 - 600 + 1)


def test_a_finished_run_has_no_deadline() -> None:
    d = core.Decision(status=ServeBenchmarkStatus())
    assert d.wake_after is None
    d.due_in(-5)  # already due: decided again at once (a second later)
    assert d.wake_after == 1.0
