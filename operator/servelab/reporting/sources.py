"""Where runs come from: the cluster (current kubeconfig) or `servelab run`'s directories and status files.
Both give the same `Run`s, so everything after loading is one code path."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from servelab import GROUP, VERSION
from servelab.api.quantjob import QuantJobStatus
from servelab.api.servebenchmark import ServeBenchmarkStatus

KINDS = ("ServeBenchmark", "QuantJob")
PLURAL = {"ServeBenchmark": "servebenchmarks", "QuantJob": "quantjobs"}


class SourceError(Exception):
    """Nothing could be read where the user pointed (a missing path, no cluster)."""


@dataclass
class Run:
    """One resource as stored: its kind, name, spec (wire form) and status (parsed)."""

    kind: str
    name: str
    namespace: str | None
    spec: dict[str, Any]
    status: ServeBenchmarkStatus | QuantJobStatus
    source: str
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def bench(self) -> ServeBenchmarkStatus:
        assert isinstance(self.status, ServeBenchmarkStatus)
        return self.status

    @property
    def quant(self) -> QuantJobStatus:
        assert isinstance(self.status, QuantJobStatus)
        return self.status

    @property
    def owned_by_quantjob(self) -> bool:
        """A QuantJob's scoring run (servelab makes no other ServeBenchmark): its scores are in the QuantJob's
        table already. In a cluster it has an ownerReference; locally only its owner's label."""
        labels = self.metadata.get("labels") or {}
        return f"{GROUP}/owner-uid" in labels or any(
            r.get("kind") == "QuantJob" for r in self.metadata.get("ownerReferences") or []
        )


def from_object(obj: dict[str, Any], source: str) -> Run | None:
    """A stored object ({apiVersion, kind, metadata, spec, status}); None if it is not servelab's."""
    kind = obj.get("kind")
    if kind not in KINDS:
        return None
    meta = obj.get("metadata") or {}
    cls = ServeBenchmarkStatus if kind == "ServeBenchmark" else QuantJobStatus
    raw = {k: v for k, v in (obj.get("status") or {}).items() if k != "kopf"}
    return Run(kind=kind, name=str(meta.get("name", "")), namespace=meta.get("namespace"), spec=obj.get("spec") or {},
               status=cls.model_validate(raw), source=source, metadata=meta)  # fmt: skip


def _read(path: Path) -> list[dict[str, Any]]:
    text = path.read_text()
    if path.suffix == ".json":
        data = json.loads(text)
        docs = data if isinstance(data, list) else [data]
    else:
        docs = [d for d in yaml.safe_load_all(text) if d]
    out: list[dict[str, Any]] = []
    for d in docs:
        if isinstance(d, dict) and d.get("kind") == "List":
            out += [i for i in d.get("items") or [] if isinstance(i, dict)]
        elif isinstance(d, dict):
            out.append(d)
    return out


def _status_files(path: Path) -> list[Path]:
    """A status file; a run directory (status.json); a runs directory (<kind>-<name>/status.json), also
    one level deeper (servelab-runs/<group>/<kind>-<name>/)."""
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise SourceError(f"{path}: no such file or directory")

    def best(run_dir: Path) -> Path | None:
        for name in ("status.json", "status.yaml"):
            if (run_dir / name).is_file():
                return run_dir / name
        return None

    if (own := best(path)) is not None:
        return [own]
    found = [f for d in sorted(path.iterdir()) if d.is_dir() and (f := best(d)) is not None]
    if not found:
        found = [f for d in sorted(path.glob("*/*")) if d.is_dir() and (f := best(d)) is not None]
    return found


def from_paths(paths: Iterable[Path]) -> list[Run]:
    runs: list[Run] = []
    for path in paths:
        for f in _status_files(path):
            for obj in _read(f):
                run = from_object(obj, str(f))
                if run is not None:
                    runs.append(run)
    return runs


def from_cluster(
    names: list[str], selector: str | None, namespace: str | None, all_namespaces: bool, kinds: Iterable[str]
) -> list[Run]:
    """Resources of the current kubeconfig's cluster (or the in-cluster config): by name, by label selector,
    or every one of the namespace (the kubeconfig's, or all)."""
    from kubernetes import client, config
    from kubernetes.client.rest import ApiException

    try:
        try:
            config.load_incluster_config()
            default_ns = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace").read_text().strip()
        except config.ConfigException:
            config.load_kube_config()
            _, active = config.list_kube_config_contexts()
            default_ns = (active or {}).get("context", {}).get("namespace") or "default"
    except Exception as err:  # no kubeconfig, an unreadable one
        raise SourceError(f"cannot reach a cluster: {err}") from err
    ns = namespace or default_ns
    api = client.CustomObjectsApi()
    items: list[dict[str, Any]] = []
    try:
        for kind in kinds:
            plural = PLURAL[kind]
            if names:
                for name in names:
                    try:
                        items.append(api.get_namespaced_custom_object(GROUP, VERSION, ns, plural, name))
                    except ApiException as err:
                        if err.status != 404:
                            raise
            elif all_namespaces:
                items += api.list_cluster_custom_object(
                    GROUP, VERSION, plural, label_selector=selector or ""
                )["items"]
            else:
                items += api.list_namespaced_custom_object(
                    GROUP, VERSION, ns, plural, label_selector=selector or ""
                )["items"]
    except ApiException as err:
        raise SourceError(f"reading servelab resources: HTTP {err.status} {err.reason}") from err
    except Exception as err:  # connection refused, TLS: the cluster is not there
        raise SourceError(f"cannot reach a cluster: {err}") from err
    runs = []
    for obj in items:
        meta = obj.get("metadata") or {}
        run = from_object(obj, f"cluster {meta.get('namespace')}/{meta.get('name')}")
        if run is not None:
            runs.append(run)
    return runs


__all__ = ["KINDS", "Run", "SourceError", "from_cluster", "from_object", "from_paths"]
