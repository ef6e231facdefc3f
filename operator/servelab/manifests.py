"""Reading servelab manifests (multi-document YAML) into typed resources, as kubectl reads them.

YAML is read safely and with limits: no Python objects, a document whose aliases expand past a
bound (a "billion laughs" bomb) is refused before it is built (kubectl refuses it too), files over
the apiserver's request limit are refused, and plain scalars resolve as kubectl's YAML library
(go-yaml v2, YAML 1.1) resolves them: `yes`/`on`/`y` are booleans, `1e3` a number, `2024-01-01` and
`1:20` strings. Every problem is reported with the file, the line and the document or resource it
is in; nothing is skipped silently.
"""

from __future__ import annotations

import difflib
import math
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from servelab import API_VERSION, GROUP
from servelab.api import QuantJobSpec, ServeBenchmarkSpec
from servelab.api.base import ApiModel

SPEC_MODELS: dict[str, type[ApiModel]] = {"QuantJob": QuantJobSpec, "ServeBenchmark": ServeBenchmarkSpec}
# names a user may have meant one of servelab's kinds by (case, plural and short names included)
KIND_ALIASES = {"quantjob": "QuantJob", "quantjobs": "QuantJob", "qj": "QuantJob",
                "servebenchmark": "ServeBenchmark", "servebenchmarks": "ServeBenchmark", "sb": "ServeBenchmark",
                "sbench": "ServeBenchmark"}  # fmt: skip

MAX_FILE_BYTES = 3 * 1024 * 1024  # kube-apiserver's request size limit
MAX_NODES = 100_000  # YAML nodes in one document once aliases are expanded
MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")


@dataclass(frozen=True)
class ManifestProblem:
    """One problem, located: file, line, document number and (once known) the resource and field."""

    file: str
    line: int
    document: int
    message: str
    resource: str | None = None  # Kind/name
    field: str | None = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        what = self.resource or (f"document {self.document}" if self.document else None)
        return ": ".join(p for p in (where, what, self.field, self.message) if p)


class ManifestError(ValueError):
    """Manifests that cannot be used as they are; `problems` has one located line per problem."""

    def __init__(self, problems: list[ManifestProblem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


@dataclass(frozen=True)
class Resource:
    kind: str
    name: str
    namespace: str | None
    body: dict[str, Any]
    source: str  # file name (without directory)
    path: str = ""  # the file as it was given (with directory)
    document: int = 0  # 1-based position among the file's documents
    line: int = 0  # line the document starts on (1-based)
    lines: dict[str, int] = field(default_factory=dict, compare=False, repr=False)  # field path -> line

    @property
    def label(self) -> str:
        return f"{self.source}:{self.name}"

    @property
    def ref(self) -> str:
        return f"{self.kind}/{self.name or '<no name>'}"

    def spec(self) -> ApiModel:
        """The typed spec, validated like the apiserver would (schema and CEL rules); SpecError if not."""
        from servelab.api.validate import validate_object

        return validate_object(self.body)[1]

    def line_of(self, field_path: str) -> int:
        """The line of a field (or of its nearest enclosing field found in the file)."""
        path = field_path
        while path:
            if path in self.lines:
                return self.lines[path]
            cut = max(path.rfind("."), path.rfind("["))
            path = path[:cut] if cut > 0 else ""
        return self.line

    def problems(self, err: Exception) -> list[ManifestProblem]:
        """A validation error (SpecError) as located problems of this resource."""
        from servelab.api.validate import SpecError

        where = self.path or self.source
        if isinstance(err, SpecError):
            return [
                ManifestProblem(
                    where, self.line_of(p.field), self.document, p.message, self.ref, p.field or None
                )
                for p in err.problems
            ]
        return [ManifestProblem(where, self.line, self.document, str(err), self.ref)]

    def check(self) -> list[ManifestProblem]:
        """Every problem of this resource, located (empty when the apiserver would accept it)."""
        try:
            self.spec()
        except ValueError as err:
            return self.problems(err)
        return []


# ---- YAML, read as kubectl reads it -----------------------------------------------------------------

_PLAIN = "tag:servelab.dev,2024:plain"
_GO_FLOAT = re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$")
_TRUE = {"y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON"}
_FALSE = {"n", "N", "no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF"}


def _plain_scalar(value: str) -> Any:
    """A plain (unquoted) scalar as go-yaml v2 resolves it when decoding into interface{}."""
    if value in ("", "~", "null", "Null", "NULL"):
        return None
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    if value in (".nan", ".NaN", ".NAN"):
        return math.nan
    if value in (".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF"):
        return math.inf
    if value in ("-.inf", "-.Inf", "-.INF"):
        return -math.inf
    if value[0] in "+-0123456789.":
        plain = value.replace("_", "")
        body = plain.lstrip("+-")
        try:
            # Go's base 0: a leading 0 is octal
            number = int(body, 8) if re.fullmatch(r"0[0-7]+", body) else int(body, 0)
            number = -number if plain.startswith("-") else number
            if -(2**63) <= number < 2**64:
                return number
        except ValueError:
            pass
        if _GO_FLOAT.match(plain):
            return float(plain)
    return value


class _Loader(yaml.SafeLoader):
    """SafeLoader with kubectl's scalar resolution and duplicate keys refused."""

    yaml_implicit_resolvers: dict[Any, Any] = {}

    def resolve(self, kind: Any, value: Any, implicit: Any) -> Any:
        if kind is yaml.ScalarNode and implicit[0]:
            return "tag:yaml.org,2002:merge" if value == "<<" else _PLAIN
        return super().resolve(kind, value, implicit)  # type: ignore[no-untyped-call]


_Loader.add_constructor(_PLAIN, lambda loader, node: _plain_scalar(str(node.value)))


class _Dumper(yaml.SafeDumper):
    """Writes YAML that kubectl (and _Loader) read back unchanged: a string that go-yaml would resolve
    to something else (`y`, `1e9`, `0o17`) is quoted."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "'" if not value or _plain_scalar(value) != value or value == "<<" else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_str)


def dump_yaml(*documents: Any) -> str:
    """Documents as one YAML stream that reads back the same here and in kubectl."""
    return yaml.dump_all(documents, Dumper=_Dumper, sort_keys=False)


class _YamlProblem(Exception):
    def __init__(self, message: str, line: int, document: int = 0) -> None:
        super().__init__(message)
        self.line, self.document = line, document


def _expanded_size(node: yaml.Node, memo: dict[int, int], active: set[int]) -> int:
    """Nodes in `node` with every alias expanded (counted, not built); recursion is refused."""
    key = id(node)
    if key in memo:
        return memo[key]
    if key in active:
        raise _YamlProblem("recursive YAML alias (an anchor used inside itself)", node.start_mark.line + 1)
    active.add(key)
    size = 1
    if isinstance(node, yaml.SequenceNode):
        for child in node.value:
            size += _expanded_size(child, memo, active)
    elif isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            size += _expanded_size(k, memo, active) + _expanded_size(v, memo, active)
    active.discard(key)
    memo[key] = size
    if size > MAX_NODES:
        raise _YamlProblem(
            f"document expands to more than {MAX_NODES} YAML nodes through aliases (an alias bomb?): refused, "
            "as kubectl refuses excessive aliasing",
            node.start_mark.line + 1,
        )
    return size


def _json_key(key: Any) -> str:
    # what sigs.k8s.io/yaml makes of a non-string key when it converts YAML to JSON
    if isinstance(key, bool):
        return "true" if key else "false"
    return "null" if key is None else str(key)


def _jsonable(value: Any, line: int) -> Any:
    """The document as JSON (what kubectl sends): string keys, no NaN/Inf, no YAML-only types."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            out[k if isinstance(k, str) else _json_key(k)] = _jsonable(v, line)
        return out
    if isinstance(value, list):
        return [_jsonable(v, line) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        raise _YamlProblem(f"{value} cannot be sent to the apiserver (JSON has no NaN or infinity)", line)
    if value is None or isinstance(value, str | int | float | bool):
        return value
    raise _YamlProblem(f"a YAML {type(value).__name__} value has no JSON form", line)


def _field_lines(node: yaml.Node, path: str, out: dict[str, int]) -> None:
    from servelab.api.validate import field_path

    out.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            if isinstance(k, yaml.ScalarNode):
                here = field_path(path, str(k.value))
                out.setdefault(here, k.start_mark.line + 1)
                _field_lines(v, here, out)
    elif isinstance(node, yaml.SequenceNode):
        for i, child in enumerate(node.value):
            _field_lines(child, f"{path}[{i}]", out)


def _duplicate_keys(node: yaml.Node, loader: _Loader, seen: set[int], out: list[_YamlProblem]) -> None:
    """Keys set twice in one mapping. kubectl accepts them (the last one wins, as here), so they are
    warnings, not problems: the verdict stays the apiserver's."""
    if id(node) in seen:
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        keys: dict[str, int] = {}
        for k, v in node.value:
            if isinstance(k, yaml.ScalarNode) and k.tag != "tag:yaml.org,2002:merge":
                name = _json_key(loader.construct_object(k, deep=True))
                if name in keys:
                    out.append(_YamlProblem(
                        f"key {name!r} is set twice in one mapping (first on line {keys[name]}); kubectl "
                        "keeps the last value, and so does this check", k.start_mark.line + 1,
                    ))  # fmt: skip
                keys[name] = k.start_mark.line + 1
            _duplicate_keys(v, loader, seen, out)
    elif isinstance(node, yaml.SequenceNode):
        for child in node.value:
            _duplicate_keys(child, loader, seen, out)


@dataclass
class Document:
    number: int
    line: int
    body: Any
    lines: dict[str, int]
    warnings: list[_YamlProblem] = field(default_factory=list)


def read_documents(text: str) -> Iterable[Document | _YamlProblem]:
    """Each document of a YAML stream (or the problem that stops reading it)."""
    loader = _Loader(text)
    number = 0
    try:
        while True:
            try:
                if not loader.check_node():
                    return
                node = loader.get_node()
            except yaml.MarkedYAMLError as err:
                mark = err.problem_mark or err.context_mark
                yield _YamlProblem(f"YAML syntax: {err.problem or err}", mark.line + 1 if mark else 0)
                return
            number += 1
            if node is None:
                continue
            line = node.start_mark.line + 1
            warnings: list[_YamlProblem] = []
            try:
                _expanded_size(node, {}, set())
                _duplicate_keys(node, loader, set(), warnings)
                body = _jsonable(loader.construct_document(node), line)
            except _YamlProblem as err:
                yield _YamlProblem(str(err), err.line, number)
                continue
            except yaml.YAMLError as err:
                mark = getattr(err, "problem_mark", None)
                yield _YamlProblem(str(err), mark.line + 1 if mark else line, number)
                continue
            lines: dict[str, int] = {}
            _field_lines(node, "", lines)
            yield Document(number, line, body, lines, warnings)
    finally:
        loader.dispose()


# ---- which documents are servelab resources ---------------------------------------------------------


def _meant_servelab(kind: Any, api_version: Any) -> str | None:
    """Why a document that is not exactly a servelab resource looks like one meant to be (else None)."""
    group = api_version.split("/")[0] if isinstance(api_version, str) and "/" in api_version else ""
    if isinstance(kind, str) and kind in SPEC_MODELS:
        return f"apiVersion {api_version!r} does not serve {kind}: use apiVersion: {API_VERSION}"
    guess = None
    if isinstance(kind, str):
        guess = KIND_ALIASES.get(kind.lower()) or next(
            iter(difflib.get_close_matches(kind, SPEC_MODELS, n=1, cutoff=0.85)), None
        )
    if group == GROUP or "servelab" in str(api_version).lower():
        hint = f" (did you mean {guess}?)" if guess else f" (servelab's kinds: {', '.join(SPEC_MODELS)})"
        if api_version != API_VERSION:
            hint += f"; apiVersion must be {API_VERSION}"
        return f"unknown kind {kind!r} for apiVersion {api_version!r}{hint}"
    if guess:
        return f"unknown kind {kind!r} (did you mean {guess}? apiVersion: {API_VERSION})"
    return None


@dataclass
class Scan:
    """What a set of manifests holds: servelab resources, problems, and other APIs' objects."""

    resources: list[Resource] = field(default_factory=list)
    problems: list[ManifestProblem] = field(default_factory=list)
    warnings: list[ManifestProblem] = field(default_factory=list)  # accepted by kubectl, worth a look
    others: list[str] = field(default_factory=list)  # 'file: apiVersion/kind name' of non-servelab objects
    files: int = 0


def manifest_files(paths: Iterable[Path], scan: Scan) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.suffix in MANIFEST_SUFFIXES and p.is_file())
            if not found:
                scan.problems.append(
                    ManifestProblem(str(path), 0, 0, "no *.yaml, *.yml or *.json files here")
                )
            files += found
        elif path.is_file() or str(path) == "-":
            files.append(path)
        else:
            scan.problems.append(ManifestProblem(str(path), 0, 0, "no such file or directory"))
    return files


def scan_manifests(*paths: Path, text: dict[str, str] | None = None) -> Scan:
    """Read every document of the given files and directories (recursively: *.yaml, *.yml, *.json)."""
    scan = Scan()
    for file in manifest_files(paths, scan):
        scan.files += 1
        where = str(file)
        try:
            if text is not None and where in text:
                content = text[where]
            elif where == "-":
                content = sys.stdin.read(MAX_FILE_BYTES + 1)
                if len(content) > MAX_FILE_BYTES:
                    raise ValueError(f"larger than {MAX_FILE_BYTES} bytes (the apiserver's request limit)")
            else:
                if file.stat().st_size > MAX_FILE_BYTES:
                    raise ValueError(f"larger than {MAX_FILE_BYTES} bytes (the apiserver's request limit)")
                content = file.read_bytes().decode("utf-8")
        except (OSError, ValueError) as err:
            scan.problems.append(ManifestProblem(where, 0, 0, f"cannot read: {err}"))
            continue
        for doc in read_documents(content):
            if isinstance(doc, _YamlProblem):
                scan.problems.append(ManifestProblem(where, doc.line, doc.document, str(doc)))
                continue
            scan.warnings += [ManifestProblem(where, w.line, doc.number, w.args[0]) for w in doc.warnings]
            _classify(scan, file, doc)
    return scan


def _classify(scan: Scan, file: Path, doc: Document) -> None:
    where = str(file)
    body = doc.body
    if body is None:  # an empty document (e.g. after a trailing ---)
        return
    if not isinstance(body, dict):
        shape = "a list" if isinstance(body, list) else f"a {type(body).__name__} scalar"
        scan.problems.append(ManifestProblem(where, doc.line, doc.number, f"is {shape}, not an object: each "
                             "document must be one resource (apiVersion, kind, metadata, spec)"))  # fmt: skip
        return
    kind, api_version = body.get("kind"), body.get("apiVersion")
    if kind is None or api_version is None:
        missing = " and ".join(f for f, v in (("apiVersion", api_version), ("kind", kind)) if v is None)
        scan.problems.append(ManifestProblem(where, doc.line, doc.number, f"{missing} not set"))
        return
    if kind in SPEC_MODELS and api_version == API_VERSION:
        meta = body.get("metadata")
        name = meta.get("name") if isinstance(meta, dict) else None
        namespace = meta.get("namespace") if isinstance(meta, dict) else None
        scan.resources.append(
            Resource(
                kind,
                name if isinstance(name, str) else "",
                namespace if isinstance(namespace, str) else None,
                body,
                file.name,
                where,
                doc.number,
                doc.line,
                doc.lines,
            )
        )
        return
    why = _meant_servelab(kind, api_version)
    if why:
        scan.problems.append(ManifestProblem(where, doc.lines.get("kind", doc.line), doc.number, why))
        return
    meta = body.get("metadata")
    name = meta.get("name", "") if isinstance(meta, dict) else ""
    scan.others.append(f"{where}:{doc.line}: {api_version}/{kind} {name}".rstrip())


def load_manifests(*paths: Path) -> list[Resource]:
    """Every servelab resource in the given files or directories (recursively), in order; ManifestError
    when a document cannot be read or looks like a servelab resource that is not one. Specs are not
    validated here (Resource.spec() / check() do that)."""
    scan = scan_manifests(*paths)
    if scan.problems:
        raise ManifestError(scan.problems)
    return scan.resources


def check_manifests(*paths: Path) -> Scan:
    """scan_manifests, then every resource validated as the apiserver would: all problems, located."""
    scan = scan_manifests(*paths)
    for res in scan.resources:
        scan.problems += res.check()
    return scan
