"""Generate the CRDs (and docs/api.md) from the pydantic models: the models are the one schema source.

`servelab crds` writes crds/*.yaml, charts/servelab/crds/*.yaml and docs/api.md;
`servelab crds --check` fails when any of them differs from what the models give (CI runs it).
"""

from __future__ import annotations

import argparse
import copy
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from servelab import GROUP, VERSION
from servelab.api.base import ApiModel
from servelab.api.quantjob import QuantJobSpec, QuantJobStatus
from servelab.api.servebenchmark import ServeBenchmarkSpec, ServeBenchmarkStatus
from servelab.paths import repo_path, write_or_check

CATEGORY = "servelab"
Schema = dict[str, Any]


@dataclass(frozen=True)
class Kind:
    kind: str
    plural: str
    short_names: list[str]
    spec: type[ApiModel]
    status: type[ApiModel]
    description: str
    columns: list[dict[str, Any]] = field(default_factory=list)


KINDS = [
    Kind(
        kind="QuantJob",
        plural="quantjobs",
        short_names=["qj"],
        spec=QuantJobSpec,
        status=QuantJobStatus,
        description="Quantize a model (llm-compressor or llama.cpp), then measure what the quantization cost.",
        columns=[
            {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
            {"name": "Method", "type": "string", "jsonPath": ".spec.method"},
            {"name": "Model", "type": "string", "jsonPath": ".status.model"},
            {"name": "Progress", "type": "string", "jsonPath": ".status.progress.summary"},
            {"name": "Result", "type": "string", "jsonPath": ".status.summary.headline"},
            {"name": "Output", "type": "string", "jsonPath": ".status.output", "priority": 1},
            {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
        ],
    ),
    Kind(
        kind="ServeBenchmark",
        plural="servebenchmarks",
        short_names=["sb", "sbench"],
        spec=ServeBenchmarkSpec,
        status=ServeBenchmarkStatus,
        description="Serve a model with vLLM, SGLang or llama.cpp, load it with evalscope, evaluate it, "
        "and record the results.",
        columns=[
            {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
            {"name": "Engine", "type": "string", "jsonPath": ".spec.engine.name"},
            {"name": "Model", "type": "string", "jsonPath": ".status.model"},
            {"name": "Quant", "type": "string", "jsonPath": ".status.quantization"},
            {"name": "Points", "type": "string", "jsonPath": ".status.summary.points"},
            {"name": "Max-Tok/s", "type": "number", "jsonPath": ".status.summary.maxOutputTokensPerSecond"},
            {
                "name": "TTFT(s)",
                "type": "number",
                "jsonPath": ".status.summary.minTtftSeconds",
                "priority": 1,
            },
            {"name": "GPU", "type": "string", "jsonPath": ".status.provenance.gpuProduct", "priority": 1},
            {"name": "Node", "type": "string", "jsonPath": ".status.provenance.node", "priority": 1},
            {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
        ],
    ),
]


def _model_classes() -> dict[str, type[BaseModel]]:
    found: dict[str, type[BaseModel]] = {}
    todo: list[type[BaseModel]] = [ApiModel]
    while todo:
        cls = todo.pop()
        found[cls.__name__] = cls
        todo.extend(cls.__subclasses__())
    return found


def _cel_rules(cls: type[BaseModel] | None) -> list[dict[str, str]]:
    rules = []
    for rule, message, field_path in getattr(cls, "__cel__", []) if cls is not None else []:
        entry = {"rule": rule, "message": message}
        if field_path:
            entry["fieldPath"] = field_path
        rules.append(entry)
    return rules


def structural(schema: Schema, defs: dict[str, Schema], classes: dict[str, type[BaseModel]]) -> Schema:
    """Turn a pydantic JSON schema into a Kubernetes structural OpenAPI v3 schema."""
    out: Schema = {}
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        target = structural(defs[name], defs, classes)
        rules = target.get("x-kubernetes-validations", []) + _cel_rules(classes.get(name))
        if rules:
            target["x-kubernetes-validations"] = rules
        extra = structural_keywords({k: v for k, v in schema.items() if k not in ("$ref",)})
        field_rules = extra.pop("x-kubernetes-validations", [])
        merged = {**target, **extra}
        if field_rules:
            merged["x-kubernetes-validations"] = rules + field_rules
        return merged
    if schema.get("x-kubernetes-int-or-string"):
        # no type: an integer or a string (a Kubernetes quantity), as core/v1 resources are
        return {"x-kubernetes-int-or-string": True, **structural_keywords(schema)}
    if "anyOf" in schema:
        options = [o for o in schema["anyOf"] if o.get("type") != "null"]
        if len(options) != 1:
            raise ValueError(f"unions other than Optional are not structural: {schema}")
        out = structural(options[0], defs, classes)
        outer = structural_keywords({k: v for k, v in schema.items() if k != "anyOf"})
        rules = out.get("x-kubernetes-validations", []) + outer.pop("x-kubernetes-validations", [])
        out.update(outer)
        if rules:
            out["x-kubernetes-validations"] = rules
        return out
    kind = schema.get("type")
    if "const" in schema:
        out["type"] = kind or "string"
        out["enum"] = [schema["const"]]
    elif kind == "object" or "properties" in schema:
        out["type"] = "object"
        props = schema.get("properties")
        if props is not None:
            out["properties"] = {k: structural(v, defs, classes) for k, v in props.items()}
            if schema.get("required"):
                out["required"] = list(schema["required"])
        additional = schema.get("additionalProperties")
        if props is None and (additional is None or additional is True or additional == {}):
            out["x-kubernetes-preserve-unknown-fields"] = True
        elif isinstance(additional, dict) and additional:
            out["additionalProperties"] = structural(additional, defs, classes)
    elif kind == "array":
        out["type"] = "array"
        out["items"] = structural(schema["items"], defs, classes)
    elif kind in ("string", "integer", "number", "boolean"):
        out["type"] = kind
        if "enum" in schema:
            out["enum"] = list(schema["enum"])
    elif "enum" in schema:
        out["type"] = "string"
        out["enum"] = list(schema["enum"])
    else:
        raise ValueError(f"cannot make a structural schema of {schema}")
    out.update(structural_keywords(schema))
    return out


def structural_keywords(schema: Schema) -> Schema:
    """Keep the validation and documentation keywords Kubernetes understands, in its dialect."""
    out: Schema = {}
    for key in (
        "description",
        "pattern",
        "minLength",
        "maxLength",
        "minItems",
        "maxItems",
        "minimum",
        "maximum",
        "minProperties",
        "maxProperties",
        "x-kubernetes-validations",
    ):
        if key in schema:
            out[key] = schema[key]
    if "exclusiveMinimum" in schema:
        out["minimum"] = schema["exclusiveMinimum"]
        out["exclusiveMinimum"] = True
    if "exclusiveMaximum" in schema:
        out["maximum"] = schema["exclusiveMaximum"]
        out["exclusiveMaximum"] = True
    if "default" in schema and schema["default"] is not None:
        out["default"] = copy.deepcopy(schema["default"])
    return out


def openapi_schema(model: type[BaseModel]) -> Schema:
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs = raw.pop("$defs", {})
    classes = _model_classes()
    out = structural(raw, defs, classes)
    rules = _cel_rules(model)
    if rules:
        out["x-kubernetes-validations"] = rules
    return _drop_empty_defaults(out)


def _drop_empty_defaults(schema: Schema) -> Schema:
    """Empty list/dict defaults only add noise to stored objects; the models fill them in anyway."""
    if schema.get("default") in ([], {}):
        del schema["default"]
    for sub in schema.get("properties", {}).values():
        _drop_empty_defaults(sub)
    if isinstance(schema.get("items"), dict):
        _drop_empty_defaults(schema["items"])
    if isinstance(schema.get("additionalProperties"), dict):
        _drop_empty_defaults(schema["additionalProperties"])
    return schema


def crd(kind: Kind) -> dict[str, Any]:
    spec = openapi_schema(kind.spec)
    status = openapi_schema(kind.status)
    status["description"] = f"Observed state of the {kind.kind}, written by servelab."
    root = {
        "type": "object",
        "description": kind.description,
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": spec,
            "status": status,
        },
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{kind.plural}.{GROUP}", "labels": {"app.kubernetes.io/part-of": "servelab"}},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": kind.kind,
                "listKind": f"{kind.kind}List",
                "plural": kind.plural,
                "singular": kind.kind.lower(),
                "shortNames": kind.short_names,
                "categories": [CATEGORY],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": kind.columns,
                    "schema": {"openAPIV3Schema": root},
                }
            ],
        },
    }


HEADER = "# Generated by `servelab crds` from the pydantic models in operator/servelab/api/. Do not edit.\n"


def render_crds() -> dict[str, str]:
    """File name -> YAML text, for every kind."""
    return {
        f"{GROUP}_{k.plural}.yaml": HEADER + yaml.safe_dump(crd(k), sort_keys=False, width=100) for k in KINDS
    }


def outputs() -> dict[Path, str]:
    from servelab.api.docgen import render_api_doc

    files: dict[Path, str] = {}
    for name, text in render_crds().items():
        files[repo_path("crds", name)] = text
        files[repo_path("charts", "servelab", "crds", name)] = text
    files[repo_path("docs", "api.md")] = render_api_doc()
    return files


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--check", action="store_true", help="fail when generated files are out of date")


def run(args: argparse.Namespace) -> int:
    stale = write_or_check(outputs(), args.check)
    if stale and args.check:
        print(f"{len(stale)} generated file(s) are stale; run `servelab crds`", file=sys.stderr)
        return 1
    return 0
