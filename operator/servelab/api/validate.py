"""Validate a resource the way the apiserver does, without a cluster: the pydantic models (types,
enums, ranges, required fields, defaults), then every CEL rule of the generated CRD schema, evaluated
with cel-python on the defaulted object. Local runs refuse exactly what `kubectl apply` refuses."""

from __future__ import annotations

from functools import cache
from typing import Any

from pydantic import ValidationError

from servelab.api.crdgen import KINDS, crd


class SpecError(ValueError):
    """A spec the API would refuse; `errors` are 'field.path: message' lines."""

    def __init__(self, kind: str, name: str, errors: list[str]) -> None:
        super().__init__(f"{kind} {name} is invalid:\n  " + "\n  ".join(errors))
        self.errors = errors


@cache
def _spec_schema(kind: str) -> dict[str, Any]:
    k = next(k for k in KINDS if k.kind == kind)
    schema: dict[str, Any] = crd(k)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    return schema


@cache
def _program(rule: str) -> Any:
    import celpy

    env = celpy.Environment()
    return env.program(env.compile(rule))


def _cel(schema: dict[str, Any], value: Any, path: str, errors: list[str]) -> None:
    from celpy.adapter import json_to_cel

    for rule in schema.get("x-kubernetes-validations", []):
        try:
            ok = _program(rule["rule"]).evaluate({"self": json_to_cel(value)})
        except Exception as exc:  # a rule that cannot be evaluated refuses the object, like the apiserver
            errors.append(f"{path}: rule {rule['rule']!r} could not be evaluated: {exc}")
            continue
        if not bool(ok):
            where = path + rule.get("fieldPath", "")
            errors.append(f"{where}: {rule['message']}")
    if isinstance(value, dict):
        for name, sub in schema.get("properties", {}).items():
            if name in value:
                _cel(sub, value[name], f"{path}.{name}", errors)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            _cel(schema["items"], item, f"{path}[{i}]", errors)


def validate_resource(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    """The defaulted spec, or SpecError listing every problem with the field it concerns."""
    from servelab.manifests import SPEC_MODELS

    try:
        model = SPEC_MODELS[kind].model_validate(spec)
    except ValidationError as err:
        lines = [f"spec.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors()]
        raise SpecError(kind, name, lines) from None
    wire = model.to_wire()
    errors: list[str] = []
    _cel(_spec_schema(kind), wire, "spec", errors)
    if errors:
        raise SpecError(kind, name, errors)
    return wire
