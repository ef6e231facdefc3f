"""Where a worker puts its compact JSON result: a local file, or a ConfigMap owned by the resource.

The sink is chosen by a spec string (argument `--result` or `$SERVELAB_RESULT_SINK`):

- `file:/path/result.json` -> FileSink (written atomically).
- `configmap:<namespace>/<name>/<key>` -> ConfigMapSink, in-cluster. The owner reference is read from
  `$SERVELAB_OWNER_REF` (JSON: apiVersion, kind, name, uid), so the ConfigMap is garbage-collected with
  the ServeBenchmark/QuantJob that made the pod.

ConfigMapSink talks to the API server with the standard library only (urllib + ssl), authenticated
by the pod's service-account token, so worker environments need no Kubernetes client.
"""

from __future__ import annotations

import json
import os
import ssl
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

SINK_ENV = "SERVELAB_RESULT_SINK"
OWNER_ENV = "SERVELAB_OWNER_REF"
LABELS_ENV = (
    "SERVELAB_RESULT_LABELS"  # JSON: labels of the result ConfigMap (its owner's, set by the operator)
)
SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
# A ConfigMap holds at most 1 MiB in total; keep results well under it.
MAX_RESULT_BYTES = 900 * 1024


class PublishError(RuntimeError):
    """The result could not be published."""


class ResultSink(Protocol):
    """Something a worker can hand its result to."""

    def publish(self, result: Mapping[str, Any]) -> None: ...

    def describe(self) -> str: ...

    def read(self) -> dict[str, Any] | None: ...


def encode(result: Mapping[str, Any]) -> str:
    text = json.dumps(result, sort_keys=True, separators=(",", ":"))
    if len(text.encode()) > MAX_RESULT_BYTES:
        raise PublishError(f"result is {len(text.encode())} bytes, over the {MAX_RESULT_BYTES} limit")
    return text


class FileSink:
    """Writes the result as JSON to a local file (tmp file + rename)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def describe(self) -> str:
        return f"file:{self.path}"

    def read(self) -> dict[str, Any] | None:
        """What was last published here (None: nothing, or not a JSON object)."""
        try:
            body = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None
        return body if isinstance(body, dict) else None

    def publish(self, result: Mapping[str, Any]) -> None:
        text = encode(result)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        with os.fdopen(fd, "w") as fh:
            fh.write(json.dumps(json.loads(text), indent=2, sort_keys=True) + "\n")
        os.replace(tmp, self.path)


class ConfigMapSink:
    """Creates or replaces key `key` of ConfigMap `namespace/name`, owned by `owner_ref`."""

    def __init__(
        self,
        namespace: str,
        name: str,
        key: str,
        owner_ref: Mapping[str, Any] | None = None,
        *,
        labels: Mapping[str, str] | None = None,
        api_server: str | None = None,
        token: str | None = None,
        ca_file: str | os.PathLike[str] | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.namespace, self.name, self.key = namespace, name, key
        self.owner_ref = dict(owner_ref) if owner_ref else None
        self.labels = dict(labels or {})  # the owner's labels: how the operator finds this result
        if api_server is None:
            host = os.environ.get("KUBERNETES_SERVICE_HOST")
            port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
            if not host:
                raise PublishError("not in a cluster: KUBERNETES_SERVICE_HOST is not set")
            host = f"[{host}]" if ":" in host else host
            api_server = f"https://{host}:{port}"
        self.api_server = api_server.rstrip("/")
        if token is None:
            try:
                token = (SA_DIR / "token").read_text().strip()
            except OSError as exc:
                raise PublishError(f"no service-account token: {exc}") from exc
        self.token = token
        if ca_file is None and (SA_DIR / "ca.crt").is_file():
            ca_file = SA_DIR / "ca.crt"
        self.context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
        self.timeout = timeout

    def describe(self) -> str:
        return f"configmap:{self.namespace}/{self.name}/{self.key}"

    def _request(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> dict[str, Any]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.api_server + path, data=data, method=method)
        req.add_header("Authorization", f"Bearer {self.token}")
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        ctx = self.context if self.api_server.startswith("https:") else None
        with urllib.request.urlopen(req, timeout=self.timeout, context=ctx) as resp:
            payload: dict[str, Any] = json.loads(resp.read() or b"{}")
            return payload

    def _body(self, text: str, resource_version: str | None = None) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "name": self.name,
            "namespace": self.namespace,
            "labels": {
                **self.labels,
                "app.kubernetes.io/managed-by": "servelab",
                "servelab.dev/result": "true",
            },
        }
        if self.owner_ref:
            meta["ownerReferences"] = [self.owner_ref]
        if resource_version:
            meta["resourceVersion"] = resource_version
        return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {self.key: text}}

    def read(self) -> dict[str, Any] | None:
        """What was last published here, e.g. by an earlier pod of the same Job (None: nothing yet)."""
        ns = urllib.parse.quote(self.namespace, safe="")
        name = urllib.parse.quote(self.name, safe="")
        try:
            current = self._request("GET", f"/api/v1/namespaces/{ns}/configmaps/{name}")
            body = json.loads((current.get("data") or {}).get(self.key) or "null")
        except (urllib.error.URLError, OSError, ValueError):
            return None
        return body if isinstance(body, dict) else None

    def publish(self, result: Mapping[str, Any]) -> None:
        text = encode(result)
        ns = urllib.parse.quote(self.namespace, safe="")
        name = urllib.parse.quote(self.name, safe="")
        collection = f"/api/v1/namespaces/{ns}/configmaps"
        for _attempt in range(5):
            try:
                current = self._request("GET", f"{collection}/{name}")
            except urllib.error.HTTPError as exc:
                if exc.code != 404:
                    raise PublishError(
                        f"GET configmap {self.name}: HTTP {exc.code} {exc.read()[:300]!r}"
                    ) from exc
                current = None
            try:
                if current is None:
                    self._request("POST", collection, self._body(text))
                else:
                    body = self._body(text, current.get("metadata", {}).get("resourceVersion"))
                    data = dict(current.get("data") or {})
                    data[self.key] = text
                    body["data"] = data
                    self._request("PUT", f"{collection}/{name}", body)
                return
            except urllib.error.HTTPError as exc:
                if exc.code == 409:  # created or changed meanwhile: read again and retry
                    continue
                raise PublishError(
                    f"write configmap {self.name}: HTTP {exc.code} {exc.read()[:300]!r}"
                ) from exc
        raise PublishError(f"configmap {self.name}: kept conflicting after 5 attempts")


def owner_ref_from_env() -> dict[str, Any] | None:
    raw = os.environ.get(OWNER_ENV)
    if not raw:
        return None
    ref: dict[str, Any] = json.loads(raw)
    missing = {"apiVersion", "kind", "name", "uid"} - set(ref)
    if missing:
        raise PublishError(f"{OWNER_ENV} lacks {sorted(missing)}")
    ref.setdefault("controller", True)
    ref.setdefault("blockOwnerDeletion", True)
    return ref


def sink_from_spec(spec: str | None, default_file: str | os.PathLike[str] | None = None) -> ResultSink:
    """`file:PATH` or `configmap:NS/NAME/KEY`; None falls back to $SERVELAB_RESULT_SINK, then the file."""
    spec = spec or os.environ.get(SINK_ENV)
    if not spec:
        if default_file is None:
            raise PublishError(f"no result sink: pass --result or set {SINK_ENV}")
        return FileSink(default_file)
    kind, _, rest = spec.partition(":")
    if kind == "file" and rest:
        return FileSink(rest)
    if kind == "configmap":
        parts = rest.split("/")
        if len(parts) != 3 or not all(parts):
            raise PublishError(f"configmap sink must be configmap:NAMESPACE/NAME/KEY, not {spec!r}")
        labels = json.loads(os.environ.get(LABELS_ENV) or "{}")
        return ConfigMapSink(parts[0], parts[1], parts[2], owner_ref_from_env(), labels=labels)
    raise PublishError(f"unknown result sink {spec!r} (file:PATH or configmap:NS/NAME/KEY)")


def publish_outcome(
    kind: str,
    sink: ResultSink,
    produce: Callable[[], dict[str, Any]],
    errors: tuple[type[BaseException], ...],
    what: str,
) -> dict[str, Any] | None:
    """A worker step's measurement, published: what `produce` returns, or, when it raises one of
    `errors`, `{"kind": kind, "reason": ...}` (the step's failure then says why in status, not only
    "job failed") with the reason printed as `what failed: ...`; None then."""
    try:
        result = produce()
    except errors as exc:
        sink.publish({"kind": kind, "reason": str(exc)})
        print(f"{what} failed: {exc}", file=sys.stderr)
        return None
    sink.publish(result)
    return result
