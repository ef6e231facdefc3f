"""The operator's memory of children (controller/kube.py ChildCache), fed watch events by hand: what an owner
is observed to have, a relist that forgets what was deleted meanwhile, the operator's own creations,
refusals of a Job's pods, results too large or not JSON, pods the cluster disrupted."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes import client

from servelab.controller.kube import MAX_RESULT_BYTES, Kube
from servelab.controller.settings import Settings
from servelab.core import Owner

pytestmark = pytest.mark.unit
P = "servelab.dev"
OWNER = Owner("ServeBenchmark", "sb", "ns", "uid-1", 1)


def meta(
    name: str, step: str = "", component: str = "worker", generation: int = 1, **extra: Any
) -> dict[str, Any]:
    labels = {"app.kubernetes.io/managed-by": "servelab", f"{P}/owner-uid": OWNER.uid, f"{P}/generation": str(generation),
              f"{P}/component": component}  # fmt: skip
    if step:
        labels[f"{P}/step"] = step
    return {"name": name, "namespace": "ns", "uid": f"u-{name}", "labels": labels,
            "ownerReferences": [{"uid": OWNER.uid}], **extra}  # fmt: skip


def job(step: str, **status: Any) -> dict[str, Any]:
    return {"kind": "Job", "metadata": meta(OWNER.child(step), step), "status": status}


def result(step: str, data: str, name: str | None = None) -> dict[str, Any]:
    return {"kind": "ConfigMap", "metadata": meta(name or OWNER.child(f"{step}-result"), step, "result"),
            "data": {"result.json": data}}  # fmt: skip


@pytest.fixture
def kube() -> Any:
    woken: list[str] = []
    k = Kube(client.ApiClient(), Settings(), on_change=woken.append, workers=1)
    k.woken = woken  # type: ignore[attr-defined]
    yield k
    k.pool.shutdown(wait=False)


def test_jobs_and_results_are_observed_from_memory_and_wake_their_owner(kube: Any) -> None:
    cache = kube.cache
    cache._upsert("Job", job("load-0", succeeded=1, conditions=[{"type": "Complete", "status": "True"}]))
    cache._upsert("ConfigMap", result("load-0", json.dumps({"points": [{"concurrency": 1}]})))
    cache._upsert(
        "Job", {**job("load-1", active=1), "metadata": meta(OWNER.child("load-1"), "load-1", generation=0)}
    )
    obs, invalid = kube.observe_cached(OWNER, {})
    assert obs.jobs["load-0"].succeeded and obs.results["load-0"] == {"points": [{"concurrency": 1}]}
    assert ("batch/v1", "Job", OWNER.child("load-1")) in obs.stale  # an older generation's child
    assert invalid == [] and kube.woken == [OWNER.uid] * 3


def test_a_relist_replaces_what_was_held(kube: Any) -> None:
    cache = kube.cache
    cache._upsert("Job", job("load-0", active=1))
    cache._upsert("Job", job("load-1", active=1))
    cache._replace("Job", "ns", [job("load-1", active=1)])  # load-0 was deleted while the watch was away
    obs, _ = kube.observe_cached(OWNER, {})
    assert set(obs.jobs) == {"load-1"}
    cache._remove("Job", job("load-1"))
    assert kube.observe_cached(OWNER, {})[0].jobs == {}


def test_what_the_operator_created_exists_at_once_and_never_overwrites_the_watch(kube: Any) -> None:
    cache = kube.cache
    cache._upsert("Job", job("load-0", active=1))
    cache.created(job("load-0"))  # a 409 on create: the rendered object, no status
    assert kube.observe_cached(OWNER, {})[0].jobs["load-0"].active  # the watch's view kept
    cache.created(job("load-1"))
    assert "load-1" in kube.observe_cached(OWNER, {})[0].jobs


def test_a_jobs_pods_refused_for_good_fail_the_step_transient_ones_do_not(kube: Any) -> None:
    cache = kube.cache
    cache._upsert("Job", job("load-0", active=0))
    event = {"involvedObject": {"kind": "Job", "namespace": "ns", "name": OWNER.child("load-0"), "uid": "u-" + OWNER.child("load-0")},
             "reason": "FailedCreate", "message": 'Error creating: pods "x" is forbidden: serviceaccount "w" not found'}  # fmt: skip
    cache._upsert("Event", event)
    assert not kube.observe_cached(OWNER, {})[0].jobs["load-0"].failed
    cache._upsert(
        "Event",
        {**event, "message": 'Error creating: pods "x" is forbidden: exceeded quota: q, requested: ...'},
    )
    state = kube.observe_cached(OWNER, {})[0].jobs["load-0"]
    assert state.failed and "exceeded quota" in state.message


def test_results_too_large_not_json_or_not_the_steps_own_are_not_read(kube: Any) -> None:
    cache = kube.cache
    cache._upsert("ConfigMap", result("load-0", "x" * (MAX_RESULT_BYTES + 1)))
    cache._upsert("ConfigMap", result("load-1", "[1, 2]"))
    cache._upsert("ConfigMap", result("load-2", json.dumps({"points": []}), name="someone-elses"))
    obs, invalid = kube.observe_cached(OWNER, {})
    assert obs.results == {}
    assert len(invalid) == 2 and "cap" in invalid[0] and "not an object" in invalid[1]


def test_a_server_pod_disrupted_by_the_cluster_is_not_a_failed_server(kube: Any) -> None:
    cache = kube.cache
    kube._nodes["n1"] = type("N", (), {"labels": {"nvidia.com/gpu.product": "H100"}, "at": 1e18})()
    cache._upsert(
        "Deployment",
        {"kind": "Deployment", "metadata": meta(OWNER.child("server"), component="server"), "status": {}},
    )
    gone = {"kind": "Pod", "metadata": meta("p1", component="server"), "spec": {"nodeName": "n1"},
            "status": {"phase": "Failed", "conditions": [{"type": "DisruptionTarget", "status": "True"}]}}  # fmt: skip
    cache._upsert("Pod", gone)
    server = kube.observe_cached(OWNER, {})[0].server
    assert server.exists and not server.failed and not server.ready
    ready = {"kind": "Pod", "metadata": meta("p2", component="server"), "spec": {"nodeName": "n1"},
             "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}}  # fmt: skip
    cache._upsert("Pod", ready)
    server = kube.observe_cached(OWNER, {})[0].server
    assert server.ready and server.node == "n1" and server.gpu_product == "H100"
    quota = {
        "type": "ReplicaFailure",
        "status": "True",
        "reason": "FailedCreate",
        "message": "pods is forbidden: exceeded quota",
    }
    cache._upsert("Deployment", {"kind": "Deployment", "metadata": meta(OWNER.child("server"), component="server"),
                                 "status": {"conditions": [quota]}})  # fmt: skip
    assert "exceeded quota" in (kube.observe_cached(OWNER, {})[0].server.failed or "")


def test_rbac_rendered_again_is_not_created_again(kube: Any) -> None:
    """The sweep's client Job and then its server both render the worker's ServiceAccount, Role and
    RoleBinding: one create each reaches the apiserver (the second decision's would only get a 409)."""
    calls: list[str] = []

    class Resp:
        def __init__(self, obj: dict[str, Any]) -> None:
            self.data = json.dumps(obj)

    def create(kind: str) -> Any:
        return lambda ns, obj, **_: calls.append(f"{kind} {obj['metadata']['name']}") or Resp(obj)

    kube.core.create_namespaced_service_account = create("ServiceAccount")
    kube.rbac.create_namespaced_role = create("Role")
    kube.rbac.create_namespaced_role_binding = create("RoleBinding")
    kube.batch.create_namespaced_job = create("Job")
    rbac = [{"kind": k, "metadata": meta("sb-g1-worker")} for k in ("ServiceAccount", "Role", "RoleBinding")]
    assert [kube._create(o) for o in [*rbac, job("load")]] == [True] * 4
    assert [kube._create(o) for o in rbac] == [False] * 3  # with the server, a decision later
    assert calls == ["ServiceAccount sb-g1-worker", "Role sb-g1-worker", "RoleBinding sb-g1-worker",
                     f"Job {OWNER.child('load')}"]  # fmt: skip
    other = {
        "kind": "ServiceAccount",
        "metadata": {**meta("sb-g1-worker"), "ownerReferences": [{"uid": "uid-2"}]},
    }
    assert kube._create(other) is True  # another owner's (a recreated resource of the same name)
