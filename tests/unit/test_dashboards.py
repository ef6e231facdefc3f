"""The Grafana dashboards: generated from code (servelab.dashboards) and committed as generated (CI fails on
drift, as for the CRDs); valid against Grafana's published JSON schema (grafana-foundation-sdk's jsonschema/ of
Grafana 11.6, vendored in tests/data/grafana-jsonschema/: the dashboard, each panel type's options and field
config, each Prometheus target) and loadable into the SDK's types without losing a field; every query names a
metric the operator defines, every panel uses the ${datasource} variable. No Grafana server runs here: the
queries themselves run against a real Prometheus in tests/integration/test_dashboards_prometheus.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from servelab import dashboards
from servelab.paths import repo_path

pytestmark = pytest.mark.unit
SCHEMAS = Path(__file__).parent.parent / "data" / "grafana-jsonschema"
PANEL_SCHEMA = {"timeseries": "timeseries", "barchart": "barchart", "xychart": "xychart", "table": "table",
                "stat": "stat", "state-timeline": "statetimeline"}  # fmt: skip
FILES = sorted(repo_path("charts", "servelab", "dashboards").glob("*.json"))


def schema(name: str, ref: str | None = None) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((SCHEMAS / f"{name}.jsonschema.json").read_text())
    return {**loaded, "$ref": ref} if ref else loaded


def problems(validator_schema: dict[str, Any], instance: Any) -> list[str]:
    v = jsonschema.Draft7Validator(validator_schema)
    return [f"{list(e.absolute_path)}: {e.message}" for e in v.iter_errors(instance)]


def test_generated_files_are_up_to_date() -> None:
    """`python -m servelab.dashboards --check` (make check-generated) fails on drift; so does this."""
    assert dashboards.main(["--check"]) == 0, "run `python -m servelab.dashboards`"
    assert {p.stem for p in FILES} == set(dashboards.DASHBOARDS)


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_valid_against_grafanas_json_schema(path: Path) -> None:
    model = json.loads(path.read_text())
    errors = problems(schema("dashboard"), model)
    for panel in model["panels"]:
        if panel["type"] == "row":
            continue
        name = PANEL_SCHEMA[panel["type"]]
        where = f"panel {panel['id']} {panel['title']!r}"
        errors += [
            f"{where} options {e}"
            for e in problems(schema(name, "#/definitions/Options"), panel.get("options", {}))
        ]
        custom = panel.get("fieldConfig", {}).get("defaults", {}).get("custom")
        if custom is not None:
            errors += [
                f"{where} custom {e}" for e in problems(schema(name, "#/definitions/FieldConfig"), custom)
            ]
        assert panel["targets"], where
        for target in panel["targets"]:
            errors += [f"{where} target {e}" for e in problems(schema("prometheus"), target)]
    assert not errors, "\n".join(errors[:20])


def _lost(a: Any, b: Any, path: str = "") -> list[str]:
    """What of `a` is missing or different in `b` (b may add defaults)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [
            x
            for k, v in a.items()
            for x in (_lost(v, b[k], f"{path}/{k}") if k in b else [f"{path}/{k} dropped"])
        ]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [x for i, (u, w) in enumerate(zip(a, b, strict=True)) for x in _lost(u, w, f"{path}[{i}]")]
    return [] if a == b else [f"{path}: {a!r} became {b!r}"]


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_loads_into_the_sdk_types_without_losing_a_field(path: Path) -> None:
    from grafana_foundation_sdk.cog import plugins
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.models import dashboard as dm

    plugins.register_default_plugins()  # panel options and Prometheus targets decode into their own types
    model = json.loads(path.read_text())
    back = json.loads(json.dumps(dm.Dashboard.from_json(model), cls=JSONEncoder))
    assert not _lost(model, back)


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_datasource_variable_and_known_metrics(path: Path) -> None:
    model = json.loads(path.read_text())
    variables = {v["name"]: v for v in model["templating"]["list"]}
    assert (
        variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    )
    for panel in model["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert all(t["datasource"]["uid"] == "${datasource}" for t in panel["targets"]), panel["title"]
    assert dashboards.unknown_metrics(model) == set()
    assert len({p["id"] for p in model["panels"]}) == len(model["panels"])


def test_a_query_of_an_undefined_metric_fails_generation() -> None:
    model = {
        "panels": [
            {"targets": [{"expr": 'rate(servelab_reconciles_total[5m]) + servelab_no_such_metric{a="b"}'}]}
        ]
    }
    assert dashboards.unknown_metrics(model) == {"servelab_no_such_metric"}
