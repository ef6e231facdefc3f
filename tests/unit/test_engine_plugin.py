"""An engine added in one module (tests/unit/echo_engine.py) is everywhere: the API accepts it, the CRD
lists it, the plan renders its command, and its local command serves requests.

The engine registers through SERVELAB_ENGINE_MODULES, read when the registry is first imported (before
the API models are built), so the checks run in a subprocess: this process' models stay as they are.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from servelab.engines import ENGINES
from servelab.engines.registry import BUILTIN

pytestmark = pytest.mark.unit

BUILTIN_NAMES = [m.rsplit(".", 1)[-1] for m in BUILTIN]  # the built-in engines, in registry order

MODULE = Path(__file__).with_name("echo_engine.py")

CHECKS = r"""
import json, tempfile, urllib.request
from pathlib import Path

import yaml

from servelab.api import crdgen
from servelab.api.engine import Engine
from servelab.api.servebenchmark import ServeBenchmarkSpec
from servelab.api.validate import SpecError, validate_resource
from servelab.engines import ENGINES, NoLocalBuild, ServedModel, default_for_format, for_command, get
from servelab.local.processes import Processes, Toolchain, free_port, wait_ready
from servelab.plan import compile_benchmark
from servelab.workers import engine_metrics, perf

out = {"engines": list(ENGINES), "default_for_echo": default_for_format("echo")}
spec = {"model": {"path": "/models/tiny"}, "load": {"parallel": [1], "number": [2]},
        "engine": {"name": "echo", "servedModelName": "tiny", "echo": {"greeting": "hi"}}}

def refusal(engine):
    try:
        validate_resource("ServeBenchmark", "x", {**spec, "engine": engine})
    except SpecError as err:
        return err.errors
    return None

out["accepted"] = validate_resource("ServeBenchmark", "x", spec)["engine"]
out["owned_flag"] = refusal({"name": "echo", "extraArgs": ["--port", "9"]})
out["options_elsewhere"] = refusal({"name": "vllm", "echo": {"greeting": "hi"}})
out["unknown"] = refusal({"name": "nope"})

sb = ServeBenchmarkSpec.model_validate(spec)
port = free_port()
plan = compile_benchmark(sb, ServedModel("/models/tiny"), artifacts="/tmp/a", host="127.0.0.1", port=port,
                         server_url=lambda p: f"http://127.0.0.1:{p}")
out["command"] = plan.server.command
out["load_args"] = [s.argv for s in plan.steps if s.result == "points"][0]
out["for_command"] = getattr(for_command(plan.server.command), "name", None)

argv, env = Toolchain().server_argv("echo", plan.server.command)
procs = Processes()
log = Path(tempfile.mkdtemp()) / "echo.log"
try:
    proc = procs.spawn(argv, env, log)
    root = f"http://127.0.0.1:{port}"
    wait_ready(root + plan.server.health_path, proc, 60, log)
    before = engine_metrics.scrape(root + plan.server.metrics_path)
    req = urllib.request.Request(root + "/v1/chat/completions", headers={"Content-Type": "application/json"},
        data=json.dumps({"model": "tiny", "messages": [{"role": "user", "content": "ping pong"}]}).encode())
    with urllib.request.urlopen(req, timeout=10) as resp:
        out["reply"] = json.load(resp)["choices"][0]["message"]["content"]
    after = engine_metrics.scrape(root + plan.server.metrics_path)
    out["deltas"] = engine_metrics.server_deltas(before, after, 1.0).to_wire()
    out["detected"] = perf.detect_engine(root, after)
finally:
    procs.stop_all()
try:
    get("sglang").local_command(["python3", "-m", "sglang.launch_server"])
except NoLocalBuild as exc:
    out["no_local_build"] = str(exc)

crd = yaml.safe_load(crdgen.render_crds()["servelab.dev_servebenchmarks.yaml"])
engine = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["engine"]
out["crd_names"] = engine["properties"]["name"]["enum"]
out["crd_options"] = engine["properties"]["echo"]
out["crd_rules"] = [r["rule"] for r in engine["x-kubernetes-validations"]]
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def echo() -> dict[str, object]:
    env = dict(os.environ, SERVELAB_ENGINE_MODULES=str(MODULE))
    ran = subprocess.run(
        [sys.executable, "-c", CHECKS], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert ran.returncode == 0, ran.stderr[-4000:]
    result: dict[str, object] = json.loads(ran.stdout.strip().splitlines()[-1])
    return result


def test_this_process_is_not_polluted() -> None:
    assert "echo" not in ENGINES


def test_registered_after_the_builtin_engines(echo: dict[str, object]) -> None:
    assert echo["engines"] == [*BUILTIN_NAMES, "echo"]
    assert echo["default_for_echo"] == "echo"


def test_spec_validation_accepts_it_and_its_rules_refuse(echo: dict[str, object]) -> None:
    assert echo["accepted"] == {
        "name": "echo", "servedModelName": "tiny", "echo": {"greeting": "hi"}, "tensorParallelSize": 1,
        "trustRemoteCode": False, "extraArgs": [], "env": [],
    }  # fmt: skip
    assert echo["owned_flag"] == [
        "spec.engine.extraArgs: engine.extraArgs must not set --host, --port, --model, --name: "
        "the operator sets them for Echo"
    ]
    assert echo["options_elsewhere"] == [
        "spec.engine.echo: engine.echo holds Echo options: only valid with engine.name: echo"
    ]
    assert echo["unknown"] and "echo" in str(echo["unknown"])


def test_the_plan_renders_its_command(echo: dict[str, object]) -> None:
    command = echo["command"]
    assert isinstance(command, list)
    assert command[:6] == ["echo-server", "--model", "/models/tiny", "--name", "tiny", "--greeting"]
    assert command[-4:-1] == ["--host", "127.0.0.1", "--port"]
    assert echo["for_command"] == "echo"
    load = echo["load_args"]
    assert isinstance(load, list) and "--engine" in load and load[load.index("--engine") + 1] == "echo"
    assert "Connection=close" not in load  # the adapter does not ask for it


def test_its_local_command_serves(echo: dict[str, object]) -> None:
    assert echo["reply"] == "hi ping pong"
    assert echo["deltas"] == {"promptTokens": 2.0, "generationTokens": 3.0, "requests": 1.0,
                              "outputTokensPerSecond": 3.0}  # fmt: skip
    assert echo["detected"] == "echo"
    assert "engine sglang has no local build" in str(echo["no_local_build"])


def test_the_generated_crd_includes_it(echo: dict[str, object]) -> None:
    assert echo["crd_names"] == [*BUILTIN_NAMES, "echo"]
    options = echo["crd_options"]
    assert isinstance(options, dict) and options["properties"]["greeting"]["maxLength"] == 64
    rules = echo["crd_rules"]
    assert isinstance(rules, list) and "self.name == 'echo' || !has(self.echo)" in rules
