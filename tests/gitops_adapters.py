"""The GitOps gate adapters, run the way their tools run them (shared by tests/unit/test_gitops_adapters.py and
tests/integration/test_gitops_gates.py):

- Argo CD health checks (charts/servelab/argocd/<group>/<Kind>/health.lua) under Lua 5.1 (lupa.lua51), with
  only the libraries Argo CD opens for a resource.customizations.health.* script (base, table, package and
  a safe os; no string library), the object as the global `obj`, the returned table read as {status, message};
  health_test.yaml files in Argo CD's own format;
- kstatus (sigs.k8s.io/cli-utils status.Compute) through hack/kstatus, built into $SERVELAB_CACHE/bin by
  hack/build-kstatus.sh;
- Flux healthCheckExprs (examples/gitops/flux-kustomization.yaml, shown in docs/gitops.md) evaluated with
  cel-python in the order Flux's StatusEvaluator uses (fluxcd/pkg runtime/cel): a status.observedGeneration
  other than metadata.generation is InProgress, then inProgress, failed, current; none true is InProgress;
  an evaluation error (e.g. no `status` yet) is Unknown.
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from servelab.paths import repo_path

GROUP = "servelab.dev"
KINDS = ("ServeBenchmark", "QuantJob")
ARGOCD_DIR = Path(repo_path("charts", "servelab", "argocd"))
FLUX_EXAMPLE = Path(repo_path("examples", "gitops", "flux-kustomization.yaml"))
KSTATUS_SCRIPT = Path(repo_path("hack", "build-kstatus.sh"))

# What every adapter says in each phase of a run, and the verdict it stands for. The testdata of both kinds
# are named after these phases (charts/servelab/argocd/servelab.dev/<Kind>/testdata/<phase>.yaml).
PHASES: dict[str, dict[str, str]] = {
    # created, the operator has not written a status yet
    "new": {"verdict": "none", "argocd": "Progressing", "kstatus": "Current", "flux": "Unknown"},
    # the server cannot be scheduled (ServeBenchmark) / the quantize pod waits (QuantJob)
    "pending": {"verdict": "none", "argocd": "Progressing", "kstatus": "InProgress", "flux": "InProgress"},
    "running": {"verdict": "none", "argocd": "Progressing", "kstatus": "InProgress", "flux": "InProgress"},
    "passed": {"verdict": "passed", "argocd": "Healthy", "kstatus": "Current", "flux": "Current"},
    "gate-failed": {"verdict": "failed", "argocd": "Degraded", "kstatus": "Failed", "flux": "Failed"},
    "failed": {"verdict": "failed", "argocd": "Degraded", "kstatus": "Failed", "flux": "Failed"},
    # the spec changed after a finished run; the operator has not caught up yet
    "stale": {"verdict": "none", "argocd": "Progressing", "kstatus": "InProgress", "flux": "InProgress"},
    # deleted, held by a finalizer
    "terminating": {
        "verdict": "none",
        "argocd": "Progressing",
        "kstatus": "Terminating",
        "flux": "InProgress",
    },
}


# ---- Argo CD ---------------------------------------------------------------------------------------------
def health_script(kind: str, group: str = GROUP) -> Path:
    return ARGOCD_DIR / group / kind / "health.lua"


def _to_lua(lua: Any, value: Any) -> Any:
    """A JSON value as gopher-lua's decodeValue in Argo CD builds it: maps and lists become tables."""
    if isinstance(value, dict):
        return lua.table_from({k: _to_lua(lua, v) for k, v in value.items()})
    if isinstance(value, list):
        return lua.table_from([_to_lua(lua, v) for v in value])
    return value


def _from_lua(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    items = dict(value.items())
    if items and all(isinstance(k, int) for k in items):
        return [_from_lua(items[i]) for i in sorted(items)]
    return {str(k): _from_lua(v) for k, v in items.items()}


def argocd_health(obj: dict[str, Any], script: str | Path) -> dict[str, str]:
    """Run a health.lua on one object as Argo CD does for a resource.customizations.health override."""
    import lupa.lua51 as lua51

    text = Path(script).read_text() if isinstance(script, Path) else script
    lua = lua51.LuaRuntime(unpack_returned_tuples=True, register_eval=False, register_builtins=False)
    # Argo CD (useOpenLibs: false) opens package, base, table and a safe os only: drop everything else,
    # the string methods on string values included
    lua.execute(
        "debug.setmetatable('', nil); string = nil; math = nil; io = nil; debug = nil; coroutine = nil; "
        "os = {time = os.time, date = os.date, clock = os.clock}; python = nil"
    )
    lua.globals().obj = _to_lua(lua, copy.deepcopy(obj))
    result = lua.execute(text)
    if result is None or not hasattr(result, "items"):
        raise AssertionError(f"{script}: expected a table from the health script, got {result!r}")
    out = _from_lua(result)
    status = out.get("status")
    if status not in ("Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown"):
        return {"status": "Unknown", "message": "Lua returned an invalid health status"}
    return {"status": status, "message": out.get("message") or ""}


def health_tests(root: Path = ARGOCD_DIR) -> list[tuple[Path, dict[str, Any]]]:
    """Every (health.lua, test case) under root, as util/lua/health_test.go walks resource_customizations."""
    cases = []
    for test_file in sorted(root.rglob("health_test.yaml")):
        spec = yaml.safe_load(test_file.read_text())
        for case in spec["tests"]:
            cases.append((test_file.parent / "health.lua", case))
    return cases


# ---- kstatus ---------------------------------------------------------------------------------------------
@cache
def kstatus_binary() -> Path:
    """hack/kstatus built (hack/build-kstatus.sh builds it when missing; a no-op when cached)."""
    out = subprocess.run([str(KSTATUS_SCRIPT), "--print"], check=True, capture_output=True, text=True).stdout
    binary = Path(out.strip())
    if not binary.exists():
        build = os.environ.get("SERVELAB_TEST_BUILD") == "1" or os.environ.get("CI")
        if not build:
            raise FileNotFoundError(
                f"{binary} is missing: run hack/build-kstatus.sh (or hack/build-binaries.sh)"
            )
        subprocess.run([str(KSTATUS_SCRIPT)], check=True)
    return binary


def kstatus(*objs: dict[str, Any]) -> list[dict[str, str]]:
    """kstatus's status.Compute for each object: [{status, message, kind, name, ...}] in order."""
    text = "\n---\n".join(json.dumps(o) for o in objs)
    proc = subprocess.run([str(kstatus_binary())], input=text, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]


# ---- Flux --------------------------------------------------------------------------------------------
_TOP = ("apiVersion", "kind", "metadata", "spec", "status")  # the object's fields, CEL variables in Flux


@cache
def flux_exprs() -> dict[str, dict[str, str]]:
    """The healthCheckExprs of examples/gitops/flux-kustomization.yaml, by kind."""
    for doc in yaml.safe_load_all(FLUX_EXAMPLE.read_text()):
        if doc and doc.get("kind") == "Kustomization":
            return {e["kind"]: e for e in doc["spec"]["healthCheckExprs"]}
    raise AssertionError(f"no Kustomization with healthCheckExprs in {FLUX_EXAMPLE}")


def flux_status(obj: dict[str, Any], exprs: dict[str, str] | None = None) -> str:
    """What Flux's CEL status evaluator decides for one object (InProgress, Failed, Current, Unknown)."""
    import celpy

    exprs = exprs or flux_exprs()[obj["kind"]]
    generation = (obj.get("metadata") or {}).get("generation")
    observed = (obj.get("status") or {}).get("observedGeneration")
    if observed is not None and generation is not None and observed != generation:
        return "InProgress"
    env = celpy.Environment()
    activation = {k: celpy.json_to_cel(v) for k, v in obj.items()}
    for key, verdict in (("inProgress", "InProgress"), ("failed", "Failed"), ("current", "Current")):
        if not exprs.get(key):
            continue
        # cel-go (Flux) fails on a top-level field the object lacks, even inside has(): "no such attribute(s):
        # status.observedGeneration" (checked with cel-go v0.31.0 and Flux's environment options); cel-python's
        # has() answers false there instead
        absent = [
            v for v in re.findall(r"(?<![\w.])([a-zA-Z_]\w*)\.", exprs[key]) if v in _TOP and v not in obj
        ]
        if absent:
            return "Unknown"
        try:
            value = env.program(env.compile(exprs[key])).evaluate(activation)
        except celpy.CELEvalError:
            return "Unknown"  # Flux: the status reader's error; the object is not healthy (yet)
        if isinstance(value, celpy.CELEvalError):
            return "Unknown"
        if not isinstance(value, celpy.celtypes.BoolType):
            raise AssertionError(f"{key}: {exprs[key]!r} is not a boolean: {value!r}")
        if bool(value):
            return verdict
    return "InProgress"


# ---- captured objects --------------------------------------------------------------------------------
TIME = "2026-01-01T00:00:00Z"
_TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")


def normalize(obj: dict[str, Any], namespace: str, as_namespace: str = "llm-bench") -> dict[str, Any]:
    """A live object as committed testdata: no uid, resourceVersion, managedFields or operator annotations;
    fixed timestamps; the test's random namespace replaced."""
    out: dict[str, Any] = json.loads(json.dumps(obj).replace(namespace, as_namespace))
    meta = out["metadata"]
    for key in ("uid", "resourceVersion", "managedFields", "annotations", "selfLink"):
        meta.pop(key, None)

    def fix(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: fix(v) for k, v in node.items()}
        if isinstance(node, str) and _TIMESTAMP.match(node):
            return TIME
        if isinstance(node, list):
            return [fix(v) for v in node]
        return node

    fixed: dict[str, Any] = fix(out)
    return fixed


def gate_view(obj: dict[str, Any]) -> dict[str, Any]:
    """What the gates read of an object: generations, deletion, phase, conditions, verdict outcome (what must
    not drift between the committed testdata and a live run)."""
    meta, status = obj.get("metadata") or {}, obj.get("status") or {}
    verdict = status.get("verdict") or {}
    return {
        "generation": meta.get("generation"),
        "deleting": "deletionTimestamp" in meta,
        # finalizers matter once deleting (they say what blocks it); before, servelab's own comes and goes
        "finalizers": sorted(meta.get("finalizers") or []) if "deletionTimestamp" in meta else None,
        "phase": status.get("phase"),
        "observedGeneration": status.get("observedGeneration"),
        "conditions": sorted(
            (c["type"], c["status"], c.get("reason"), c.get("observedGeneration"))
            for c in status.get("conditions") or []
        ),
        "verdict": (verdict.get("passed"), verdict.get("reason")) if verdict else None,
    }


def captured_path(kind: str, phase: str) -> Path:
    return ARGOCD_DIR / GROUP / kind / "testdata" / f"{phase}.yaml"


def dump(obj: dict[str, Any]) -> str:
    return yaml.safe_dump(obj, sort_keys=False, default_flow_style=False, width=120)


def load(path: Path) -> dict[str, Any]:
    body: dict[str, Any] = yaml.safe_load(path.read_text())
    return body
