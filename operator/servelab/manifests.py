"""Reading servelab manifests (multi-document YAML) into typed resources."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from servelab import API_VERSION
from servelab.api import QuantJobSpec, ServeBenchmarkSpec
from servelab.api.base import ApiModel

SPEC_MODELS: dict[str, type[ApiModel]] = {"QuantJob": QuantJobSpec, "ServeBenchmark": ServeBenchmarkSpec}


@dataclass(frozen=True)
class Resource:
    kind: str
    name: str
    namespace: str | None
    body: dict[str, Any]
    source: str

    @property
    def label(self) -> str:
        return f"{self.source}:{self.name}"

    def spec(self) -> ApiModel:
        """The typed spec, validated like the apiserver would (schema and CEL rules); SpecError if not."""
        from servelab.api.validate import validate_resource

        return SPEC_MODELS[self.kind].model_validate(
            validate_resource(self.kind, self.name, self.body["spec"])
        )


def load_manifests(*paths: Path) -> list[Resource]:
    """Every servelab resource in the given files or directories (recursively, *.yaml/*.yml), in order."""
    files: list[Path] = []
    for path in paths:
        files += (
            sorted(p for p in path.rglob("*") if p.suffix in (".yaml", ".yml")) if path.is_dir() else [path]
        )
    found = []
    for file in files:
        for doc in yaml.safe_load_all(file.read_text()):
            if not doc or doc.get("kind") not in SPEC_MODELS:
                continue
            if doc.get("apiVersion") != API_VERSION:
                raise ValueError(f"{file}: {doc['kind']} must have apiVersion {API_VERSION}")
            meta = doc.get("metadata") or {}
            found.append(Resource(doc["kind"], meta["name"], meta.get("namespace"), doc, file.name))
    return found
