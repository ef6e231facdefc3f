"""Validate a resource the way the apiserver does, without a cluster.

The generated CRD is the one schema: this module reads it and does what kube-apiserver does with a
`kubectl apply` (strict field validation) of a custom resource, in the same order:

1. strict decoding: a field the schema does not declare (a misspelling, a snake_case name) is an
   error, and nothing else is reported (the apiserver answers 400 before validating);
2. pruning of non-nullable nulls, then the schema's defaults;
3. metadata as the apiserver checks it (name a DNS-1123 subdomain, labels, annotations);
4. the OpenAPI schema: types without coercion (`"true"` is not a boolean, `"10"` not an integer),
   enums, bounds, lengths, required fields;
5. every CEL rule (x-kubernetes-validations), unless step 4 found a blocking error, with the
   Kubernetes CEL library functions the rules use (cel-python, RE2 regular expressions);
6. the pydantic model (by camelCase names only), which must agree.

Every problem names its field ("spec.engine.name: ...").
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass
from functools import cache
from typing import Any

from pydantic import ValidationError

from servelab import API_VERSION
from servelab.api.base import ApiModel
from servelab.api.common import DNS_SUBDOMAIN_RE, LABEL_KEY_RE, LABEL_VALUE_RE
from servelab.api.crdgen import KINDS, crd

# error kinds of k8s.io/apimachinery field.Error; the blocking ones stop CEL evaluation, as in the apiserver
REQUIRED, NOT_SUPPORTED, TYPE_INVALID, TOO_LONG, TOO_MANY, INVALID, UNKNOWN = (
    "Required value", "Unsupported value", "Invalid type", "Too long", "Too many", "Invalid value",
    "unknown field",
)  # fmt: skip
BLOCKING = {REQUIRED, NOT_SUPPORTED, TYPE_INVALID, TOO_LONG, TOO_MANY}

OBJECT_META_FIELDS = {
    "name", "generateName", "namespace", "selfLink", "uid", "resourceVersion", "generation",
    "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "labels", "annotations",
    "ownerReferences", "finalizers", "managedFields",
}  # fmt: skip
ANNOTATIONS_MAX_BYTES = 256 * 1024


@dataclass(frozen=True)
class Problem:
    """One reason a resource is refused: the field it concerns (k8s notation) and what is wrong."""

    field: str
    message: str
    kind: str = INVALID

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


class SpecError(ValueError):
    """A resource the API would refuse; `problems` name the fields, `errors` are 'field: message' lines."""

    def __init__(self, kind: str, name: str, problems: list[Problem] | list[str]) -> None:
        self.problems = [p if isinstance(p, Problem) else Problem("", p) for p in problems]
        self.errors = [str(p) for p in self.problems]
        super().__init__(f"{kind} {name} is invalid:\n  " + "\n  ".join(self.errors))
        self.kind, self.name = kind, name


# ---- the CRD's schema ---------------------------------------------------------------------------


@cache
def root_schema(kind: str) -> dict[str, Any]:
    k = next(k for k in KINDS if k.kind == kind)
    schema: dict[str, Any] = crd(k)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def field_path(path: str, key: str) -> str:
    """The field path of `key` under `path`: `.key`, or `[key]` for a key that is not a plain name."""
    plain = key.replace("_", "a").isalnum() and key.isascii() and not key[:1].isdigit()
    return (f"{path}.{key}" if path else key) if plain else f"{path}[{key}]"


def _json(value: Any) -> str:
    return json.dumps(value) if isinstance(value, str | int | float | bool) or value is None else str(value)


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object" if isinstance(value, dict) else type(value).__name__


def _is_type(value: Any, kind: str) -> bool:
    if kind == "object":
        return isinstance(value, dict)
    if kind == "array":
        return isinstance(value, list)
    if kind == "string":
        return isinstance(value, str)
    if kind == "boolean":
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if kind == "integer":  # a JSON number with no fraction is an integer to the apiserver (1.0 too)
        return isinstance(value, int) or (
            isinstance(value, float) and math.isfinite(value) and value.is_integer()
        )
    if kind == "number":
        return isinstance(value, int | float)
    return True


# ---- 1. strict decoding: fields the schema does not declare ---------------------------------------


def unknown_fields(schema: dict[str, Any], value: Any, path: str, out: list[Problem]) -> None:
    if isinstance(value, dict):
        props = schema.get("properties")
        additional = schema.get("additionalProperties")
        for key, sub in value.items():
            here = field_path(path, key)
            if props is not None and key in props:
                unknown_fields(props[key], sub, here, out)
            elif isinstance(additional, dict):
                unknown_fields(additional, sub, here, out)
            elif props is not None and not schema.get("x-kubernetes-preserve-unknown-fields"):
                out.append(Problem(here, "unknown field (not declared in the schema: misspelt, or snake_case "
                                         "instead of camelCase?)", UNKNOWN))  # fmt: skip
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            unknown_fields(schema["items"], item, f"{path}[{i}]", out)


# ---- 2. nulls and defaults --------------------------------------------------------------------------


def _integral(schema: dict[str, Any], value: Any) -> Any:
    # 2.0 where an integer is declared is the integer 2 (JSON has one number type)
    if schema.get("type") == "integer" and isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def apply_defaults(schema: dict[str, Any], value: Any) -> None:
    """In place, as the apiserver: non-nullable nulls are pruned, then missing fields get their default."""
    if isinstance(value, dict):
        props = schema.get("properties")
        if props is not None:
            for key, sub in props.items():
                if key in value and value[key] is None and not sub.get("nullable"):
                    del value[key]
                if key not in value and "default" in sub:
                    value[key] = copy.deepcopy(sub["default"])
            for key, sub in props.items():
                if key in value:
                    value[key] = _integral(sub, value[key])
                    apply_defaults(sub, value[key])
        additional = schema.get("additionalProperties")
        if isinstance(additional, dict):
            for key in value:
                value[key] = _integral(additional, value[key])
                apply_defaults(additional, value[key])
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            value[i] = _integral(schema["items"], item)
            apply_defaults(schema["items"], value[i])


# ---- 3. metadata ------------------------------------------------------------------------------------


def _re2(pattern: str, text: str) -> bool:
    import re2  # type: ignore[import-untyped]  # RE2, as Go's regexp in the apiserver (google-re2, cel-python's engine)

    return re2.search(pattern, text) is not None


def _qualified_name_problems(key: str) -> str | None:
    if len(key) > 317 or not _re2(LABEL_KEY_RE, key) or (len(key.split("/")[0]) > 253 and "/" in key):
        return "must be a qualified name: an optional DNS-subdomain prefix and '/', then 1-63 letters, " \
               "digits, '-', '_' or '.', starting and ending with a letter or digit"  # fmt: skip
    return None


def metadata_problems(meta: Any) -> list[Problem]:
    out: list[Problem] = []
    if meta is None:
        return [Problem("metadata.name", "Required value: every resource needs a name", REQUIRED)]
    if not isinstance(meta, dict):
        return [
            Problem("metadata", f"Invalid value: must be an object, not {_type_name(meta)}", TYPE_INVALID)
        ]
    name = meta.get("name")
    if name is None or name == "":
        hint = (
            " (generateName is not supported by `kubectl apply` or `servelab run`)"
            if "generateName" in meta
            else ""
        )
        out.append(Problem("metadata.name", f"Required value: every resource needs a name{hint}", REQUIRED))
    elif not isinstance(name, str):
        out.append(
            Problem("metadata.name", f"Invalid value: must be a string, not {_type_name(name)}", TYPE_INVALID)
        )
    elif len(name) > 253 or not _re2(DNS_SUBDOMAIN_RE, name):
        out.append(Problem("metadata.name", f"Invalid value: {_json(name)}: a lowercase RFC 1123 subdomain "
                           "must consist of lower case alphanumeric characters, '-' or '.', and must start and "
                           "end with an alphanumeric character, at most 253 characters"))  # fmt: skip
    namespace = meta.get("namespace")
    if namespace is not None and (
        not isinstance(namespace, str)
        or len(namespace) > 63
        or not _re2("^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", namespace)
    ):
        out.append(Problem("metadata.namespace", f"Invalid value: {_json(namespace)}: a lowercase RFC 1123 "
                           "label (at most 63 lowercase alphanumeric characters or '-')"))  # fmt: skip
    for field in ("labels", "annotations"):
        entries = meta.get(field)
        if entries is None:
            continue
        if not isinstance(entries, dict):
            out.append(Problem(f"metadata.{field}", "Invalid value: must be a map of strings", TYPE_INVALID))
            continue
        for key, value in entries.items():
            here = field_path(f"metadata.{field}", key)
            bad_key = _qualified_name_problems(key) if isinstance(key, str) else "must be a string"
            if bad_key:
                out.append(Problem(here, f"Invalid value: {_json(key)}: {bad_key}"))
            if not isinstance(value, str):
                out.append(
                    Problem(here, f"Invalid value: must be a string, not {_type_name(value)}", TYPE_INVALID)
                )
            elif field == "labels" and (len(value) > 63 or not _re2(LABEL_VALUE_RE, value)):
                out.append(Problem(here, f"Invalid value: {_json(value)}: a label value has at most 63 "
                                         "characters [A-Za-z0-9-_.], starting and ending alphanumeric"))  # fmt: skip
        if (
            field == "annotations"
            and sum(len(str(k)) + len(str(v)) for k, v in entries.items()) > ANNOTATIONS_MAX_BYTES
        ):
            out.append(
                Problem(
                    "metadata.annotations",
                    f"Too long: must have at most {ANNOTATIONS_MAX_BYTES} bytes",
                    TOO_LONG,
                )
            )
    return out


# ---- 4. the OpenAPI schema ----------------------------------------------------------------------------


def schema_problems(schema: dict[str, Any], value: Any, path: str, out: list[Problem]) -> None:
    if schema.get("x-kubernetes-int-or-string"):
        if not (isinstance(value, str) or _is_type(value, "integer")):
            out.append(
                Problem(path, f"Invalid value: {_json(value)}: must be an integer or a string", TYPE_INVALID)
            )
            return
    elif "type" in schema and not _is_type(value, schema["type"]):
        out.append(Problem(path, f"Invalid value: {_json(value)}: must be of type {schema['type']}, not "
                                 f"{_type_name(value)} (YAML: quote a string, leave numbers and true/false "
                                 "unquoted)", TYPE_INVALID))  # fmt: skip
        return
    if "enum" in schema and value not in schema["enum"]:
        shown = ", ".join(_json(v) for v in schema["enum"])
        out.append(
            Problem(path, f"Unsupported value: {_json(value)}: supported values: {shown}", NOT_SUPPORTED)
        )
    if isinstance(value, str):
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            out.append(
                Problem(path, f"Too long: may not be more than {schema['maxLength']} characters", TOO_LONG)
            )
        if "minLength" in schema and len(value) < schema["minLength"]:
            out.append(Problem(path, f"Invalid value: {_json(value)}: should be at least {schema['minLength']} "
                                     "characters long"))  # fmt: skip
        if "pattern" in schema and not _re2(schema["pattern"], value):
            out.append(Problem(path, f"Invalid value: {_json(value)}: should match '{schema['pattern']}'"))
    elif isinstance(value, int | float) and not isinstance(value, bool):
        lo, hi = schema.get("minimum"), schema.get("maximum")
        if lo is not None and (value <= lo if schema.get("exclusiveMinimum") else value < lo):
            rel = "greater than" if schema.get("exclusiveMinimum") else "greater than or equal to"
            out.append(Problem(path, f"Invalid value: {_json(value)}: should be {rel} {lo}"))
        if hi is not None and (value >= hi if schema.get("exclusiveMaximum") else value > hi):
            rel = "less than" if schema.get("exclusiveMaximum") else "less than or equal to"
            out.append(Problem(path, f"Invalid value: {_json(value)}: should be {rel} {hi}"))
    elif isinstance(value, list):
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            out.append(
                Problem(
                    path, f"Too many: {len(value)}: must have at most {schema['maxItems']} items", TOO_MANY
                )
            )
        if "minItems" in schema and len(value) < schema["minItems"]:
            out.append(Problem(path, f"Invalid value: {len(value)} items: should have at least "
                                     f"{schema['minItems']} items"))  # fmt: skip
        if isinstance(schema.get("items"), dict):
            for i, item in enumerate(value):
                schema_problems(schema["items"], item, f"{path}[{i}]", out)
    elif isinstance(value, dict):
        if "maxProperties" in schema and len(value) > schema["maxProperties"]:
            out.append(Problem(path, f"Too many: {len(value)}: must have at most {schema['maxProperties']} "
                                     "entries", TOO_MANY))  # fmt: skip
        for key in schema.get("required", []):
            if key not in value:
                out.append(Problem(field_path(path, key), "Required value", REQUIRED))
        props = schema.get("properties", {})
        additional = schema.get("additionalProperties")
        for key, sub in value.items():
            if key in props:
                schema_problems(props[key], sub, field_path(path, key), out)
            elif isinstance(additional, dict):
                schema_problems(additional, sub, field_path(path, key), out)


# ---- 5. CEL -----------------------------------------------------------------------------------------


def _k8s_functions() -> dict[str, Any]:
    """The Kubernetes CEL library functions the rules use (cel-go's ext.Strings), for cel-python."""
    from celpy import celtypes

    def lower_ascii(s: Any) -> Any:
        return celtypes.StringType("".join(c.lower() if c.isascii() else c for c in str(s)))

    def upper_ascii(s: Any) -> Any:
        return celtypes.StringType("".join(c.upper() if c.isascii() else c for c in str(s)))

    return {"lowerAscii": lower_ascii, "upperAscii": upper_ascii}


@cache
def _program(rule: str) -> Any:
    import celpy

    env = celpy.Environment()
    return env.program(env.compile(rule), functions=_k8s_functions())


def cel_problems(schema: dict[str, Any], value: Any, path: str, out: list[Problem]) -> None:
    from celpy.adapter import json_to_cel

    for rule in schema.get("x-kubernetes-validations", []):
        try:
            ok = _program(rule["rule"]).evaluate({"self": json_to_cel(value)})
            failed = not bool(ok)
            message = rule["message"]
        except Exception as exc:  # a rule that cannot be evaluated refuses the object, like the apiserver
            failed, message = True, f"rule {rule['rule']!r} could not be evaluated: {exc}"
        if failed:
            out.append(Problem(path + rule.get("fieldPath", ""), message))
    if isinstance(value, dict):
        props = schema.get("properties", {})
        additional = schema.get("additionalProperties")
        for key, sub in value.items():
            if key in props:
                cel_problems(props[key], sub, field_path(path, key), out)
            elif isinstance(additional, dict):
                cel_problems(additional, sub, field_path(path, key), out)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            cel_problems(schema["items"], item, f"{path}[{i}]", out)


# ---- all of it ----------------------------------------------------------------------------------------


def spec_model(kind: str) -> type[ApiModel]:
    k = next(k for k in KINDS if k.kind == kind)
    return k.spec


def validate_object(obj: dict[str, Any]) -> tuple[dict[str, Any], ApiModel]:
    """The defaulted object (as the apiserver would store it, without status) and its typed spec, or
    SpecError naming every problem's field. `obj` is a servelab resource (apiVersion, kind, metadata, spec)."""
    kind = obj.get("kind")
    if kind not in {k.kind for k in KINDS}:
        raise SpecError(
            str(kind), "", [Problem("kind", f"Unsupported value: {_json(kind)}: not a servelab kind")]
        )
    meta = obj.get("metadata")
    name = str(meta.get("name") or "") if isinstance(meta, dict) else ""
    if obj.get("apiVersion") != API_VERSION:
        raise SpecError(kind, name, [Problem("apiVersion", f"Invalid value: {_json(obj.get('apiVersion'))}: "
                                                          f"{kind} is served as {API_VERSION}")])  # fmt: skip
    root = root_schema(kind)
    problems: list[Problem] = []
    unknown_fields(root, {k: v for k, v in obj.items() if k != "metadata"}, "", problems)
    if isinstance(meta, dict):
        problems += [
            Problem(field_path("metadata", k), "unknown field", UNKNOWN)
            for k in meta
            if k not in OBJECT_META_FIELDS
        ]
    if problems:  # the apiserver answers 400 here, before any validation
        raise SpecError(kind, name, problems)
    body = copy.deepcopy({k: v for k, v in obj.items() if k != "status"})  # create resets status
    apply_defaults(root, body)
    problems += metadata_problems(body.get("metadata"))
    schema_problems({**root, "properties": {k: v for k, v in root["properties"].items() if k != "metadata"}},
                    body, "", problems)  # fmt: skip
    if not any(p.kind in BLOCKING for p in problems):
        scope = dict(body)
        if isinstance(meta, dict):  # root rules may read metadata.name and generateName only
            scope["metadata"] = {k: v for k, v in meta.items() if k in ("name", "generateName")}
        cel_problems(root, scope, "", problems)
    else:
        problems.append(Problem("", "some validation rules (CEL) were not checked because the object was "
                                    "invalid; correct the errors above to complete validation"))  # fmt: skip
    if problems:
        raise SpecError(kind, name, problems)
    try:
        spec = spec_model(kind).model_validate(body["spec"], by_alias=True, by_name=False)
    except ValidationError as err:  # the models check something the CRD does not: a bug, but refuse
        raise SpecError(kind, name, [
            Problem("spec." + ".".join(str(p) for p in e["loc"]), e["msg"]) for e in err.errors()
        ]) from None  # fmt: skip
    return body, spec


def validate_resource(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    """The typed spec's wire form (defaults filled in) of a `kind` named `name`, or SpecError listing
    every problem with its field."""
    obj = {"apiVersion": API_VERSION, "kind": kind, "metadata": {"name": name}, "spec": spec}
    return validate_object(obj)[1].to_wire()
