"""Hugging Face Hub inputs of the quantize workers: a model repository, and a data set's split as a file.

A QuantJob's model from the Hub (`--hf-repo ID [--revision REV]`) is downloaded with
`huggingface_hub.snapshot_download` into the HF cache (HF_HOME; the quantize Job mounts a volume there),
the token from HF_TOKEN. A data source from the Hub reaches the workers as
`hf:ID[:SUBSET]@SPLIT[#COLUMN]` (`servelab.plan.data_location`): the data set repository's files of that
subset and split are found the way `datasets` finds them (the `configs` of its README's YAML header,
else split names in file and directory names, else Hub's parquet conversion, `refs/convert/parquet`),
downloaded one at a time until enough rows are read, and written as a local file the tools read: a
`.jsonl` of rows (llm-compressor calibration) or plain text (llama-imatrix, llama-perplexity). Files
read: parquet (pyarrow, where installed), jsonl, json, csv, txt; a data set built by a loading script
only has no such files and is refused with a message.

Works offline (HF_HUB_OFFLINE=1) from what the cache holds, the same layout
(`datasets--org--name/{refs/main,snapshots/REV/...}`).
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from servelab.workers.common import WorkerError

# What a model download skips: other formats of the same weights (the converters read safetensors or bin)
MODEL_IGNORE = ["*.gguf", "original/*", "*.pth", "*.onnx", "onnx/*", "*.msgpack", "*.h5", "*.ot", "*.tflite",
                "openvino/*", "coreml/*"]  # fmt: skip
DATA_SUFFIXES = (".parquet", ".jsonl", ".json", ".csv", ".txt", ".raw", ".jsonl.gz", ".json.gz", ".txt.gz")
# split names in file and directory names, as `datasets` recognises them (its split keywords)
SPLIT_WORDS = {
    "train": ("train", "training"),
    "validation": ("validation", "valid", "dev", "val"),
    "test": ("test", "testing", "eval", "evaluation"),
}
TEXT_FIELDS = ("text", "content", "prompt", "question", "query", "instruction")
PARQUET_REVISION = "refs/convert/parquet"
HF_DATA_RE = re.compile(r"^hf:(?P<id>[^:@#]+)(?::(?P<subset>[^@#]+))?@(?P<split>[^#]+)(?:#(?P<column>.+))?$")
MAX_TEXT_CHARS = 64 << 20  # plain text for llama-imatrix / llama-perplexity, at most (a test split is ~1 MB)


def token() -> str | None:
    return os.environ.get("HF_TOKEN") or None


def download_model(repo_id: str, revision: str | None = None) -> Path:
    """The local snapshot directory of a model repository (downloaded into the HF cache if needed)."""
    from huggingface_hub import snapshot_download  # type: ignore[import-not-found]

    try:
        path = snapshot_download(repo_id, revision=revision, token=token(), ignore_patterns=MODEL_IGNORE)
    except Exception as exc:  # not found, gated, offline without a cached copy: name the repository
        raise WorkerError(f"cannot download model {repo_id}" + (f"@{revision}" if revision else "")
                          + f" from the Hugging Face Hub: {type(exc).__name__}: {exc}") from exc  # fmt: skip
    return Path(path)


# ---- data sets ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class HubData:
    id: str
    split: str
    subset: str | None = None
    column: str | None = None

    def describe(self) -> str:
        return f"{self.id}" + (f" ({self.subset})" if self.subset else "") + f" split {self.split}"


def parse_data(location: str) -> HubData | None:
    """`hf:ID[:SUBSET]@SPLIT[#COLUMN]` as plan.data_location writes it; None for a path."""
    m = HF_DATA_RE.match(location)
    if not location.startswith("hf:"):
        return None
    if m is None:
        raise WorkerError(f"not a Hub data location (hf:ID[:SUBSET]@SPLIT[#COLUMN]): {location}")
    return HubData(m["id"], m["split"], m["subset"], m["column"])


def _is_data(path: str) -> bool:
    return path.lower().endswith(DATA_SUFFIXES)


def _front_matter(readme: str | None) -> dict[str, Any]:
    if not readme or not readme.startswith("---"):
        return {}
    end = readme.find("\n---", 3)
    if end < 0:
        return {}
    import yaml

    try:
        data = yaml.safe_load(readme[3:end])
    except yaml.YAMLError:
        return {}
    return data if isinstance(data, dict) else {}


def _readme_patterns(readme: str | None, split: str, subset: str | None) -> list[str] | None:
    """The data_files patterns of the README's `configs` for this subset and split (None: it has none)."""
    configs = _front_matter(readme).get("configs")
    if not isinstance(configs, list) or not configs:
        return None
    configs = [c for c in configs if isinstance(c, dict)]
    if subset:
        chosen = next((c for c in configs if c.get("config_name") == subset), None)
        if chosen is None:
            names = [str(c.get("config_name", "default")) for c in configs]
            raise WorkerError(f"subset {subset!r} is not among the data set's configs: {', '.join(names)}")
    else:
        chosen = next((c for c in configs if c.get("default")), None) or next(
            (c for c in configs if c.get("config_name", "default") == "default"), configs[0]
        )
    data_files = chosen.get("data_files")
    if isinstance(data_files, str):
        data_files = [{"split": "train", "path": data_files}]
    if isinstance(data_files, list) and data_files and all(isinstance(d, str) for d in data_files):
        data_files = [{"split": "train", "path": data_files}]
    if not isinstance(data_files, list):
        return None
    for entry in data_files:
        if isinstance(entry, dict) and entry.get("split") == split:
            path = entry.get("path")
            return [path] if isinstance(path, str) else [str(p) for p in path or []]
    splits = [str(e.get("split")) for e in data_files if isinstance(e, dict)]
    raise WorkerError(f"split {split!r} is not among the data set's splits: {', '.join(splits)}")


def _match(pattern: str, path: str) -> bool:
    # `datasets` patterns are fsspec globs: ** crosses directories, * does not
    regex = re.escape(pattern).replace(r"\*\*/", "(.*/)?").replace(r"\*\*", ".*").replace(r"\*", "[^/]*")
    regex = regex.replace(r"\?", "[^/]")
    return re.fullmatch(regex, path) is not None


def _split_words(path: str) -> set[str]:
    return {w for w in re.split(r"[-._ 0-9/]+", path.lower()) if w}


def select_files(files: list[str], split: str, subset: str | None, readme: str | None) -> list[str]:
    """The data files of one subset and split among a data set repository's files (sorted), as
    `datasets` would pick them; [] when none match."""
    data = sorted(f for f in files if _is_data(f) and not f.startswith("."))
    patterns = _readme_patterns(readme, split, subset)
    if patterns is not None:
        return [f for f in data if any(_match(p, f) for p in patterns)]
    if subset:  # a directory per subset (the parquet conversion's layout, and many repositories')
        data = [f for f in data if subset in f.split("/")[:-1]]
    words = SPLIT_WORDS.get(split, (split,))
    chosen = [f for f in data if _split_words(f) & set(words)]
    if chosen:
        return chosen
    every = {w for ws in SPLIT_WORDS.values() for w in ws}
    if split == "train" and not any(_split_words(f) & every for f in data):
        return data  # no split names at all: everything is the train split
    return []


def _open_text(path: Path) -> io.TextIOBase:
    if path.name.endswith(".gz"):
        return io.TextIOWrapper(gzip.open(path), encoding="utf-8", errors="replace")
    return io.TextIOWrapper(path.open("rb"), encoding="utf-8", errors="replace")


def read_rows(path: Path) -> Iterator[dict[str, Any]]:
    """The rows of one data file: parquet, jsonl, json (a list, or an object holding one), csv; other
    files line by line as {"text": line}."""
    name = path.name.lower().removesuffix(".gz")
    if name.endswith(".parquet"):
        try:
            import pyarrow.parquet as pq  # type: ignore[import-not-found]
        except ImportError as exc:
            raise WorkerError(f"{path.name}: reading parquet needs pyarrow, not installed here") from exc
        for batch in pq.ParquetFile(str(path)).iter_batches(batch_size=1024):
            yield from batch.to_pylist()
        return
    with _open_text(path) as fh:
        if name.endswith(".jsonl"):
            for line in fh:
                if line.strip():
                    obj = json.loads(line)
                    yield obj if isinstance(obj, dict) else {"text": obj}
        elif name.endswith(".json"):
            data = json.load(fh)
            if isinstance(data, dict):
                data = next((v for v in data.values() if isinstance(v, list)), [data])
            for obj in data:
                yield obj if isinstance(obj, dict) else {"text": obj}
        elif name.endswith(".csv"):
            yield from csv.DictReader(fh)
        else:
            for line in fh:
                yield {"text": line.rstrip("\n")}


def row_text(row: dict[str, Any], column: str | None) -> str:
    """The text of a row: its `column`, else the first text field, else its messages' contents."""
    if column:
        if column not in row:
            raise WorkerError(f"data set rows have no column {column!r} (columns: {', '.join(sorted(row))})")
        value = row[column]
    else:
        value = next((row[k] for k in TEXT_FIELDS if k in row), None)
        if value is None and isinstance(row.get("messages"), list):
            value = row["messages"]
        if value is None:
            raise WorkerError(f"data set rows have none of {', '.join(TEXT_FIELDS)} or messages "
                              f"(columns: {', '.join(sorted(row))}): name one with huggingFace.column")  # fmt: skip
    if isinstance(value, list):  # chat messages
        return "\n".join(str(m.get("content", "")) if isinstance(m, dict) else str(m) for m in value)
    return "" if value is None else str(value)


def _repo_files(ref: HubData, revision: str | None) -> tuple[list[str], str | None, Path | None]:
    """The repository's files, its README and (offline) the cached snapshot they are in."""
    from huggingface_hub import constants, hf_hub_download, snapshot_download  # type: ignore[import-not-found]

    if constants.HF_HUB_OFFLINE:
        root = Path(snapshot_download(ref.id, repo_type="dataset", revision=revision, token=token()))
        files = [p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() or p.is_symlink()]
        readme = root / "README.md"
        return files, readme.read_text(errors="replace") if readme.is_file() else None, root
    from huggingface_hub import HfApi  # type: ignore[import-not-found]

    files = HfApi().list_repo_files(ref.id, repo_type="dataset", revision=revision, token=token())
    text = None
    if "README.md" in files:
        text = Path(hf_hub_download(ref.id, "README.md", repo_type="dataset", revision=revision,
                                    token=token())).read_text(errors="replace")  # fmt: skip
    return files, text, None


def data_files(ref: HubData) -> Iterator[Path]:
    """The local paths of the subset's split files, each downloaded when it is reached."""
    from huggingface_hub import constants, hf_hub_download  # type: ignore[import-not-found]

    try:
        files, readme, root = _repo_files(ref, None)
        revision = None
        chosen = select_files(files, ref.split, ref.subset, readme)
        if not chosen and not constants.HF_HUB_OFFLINE:  # Hub's own parquet conversion of the data set
            files, _, root = _repo_files(ref, PARQUET_REVISION)
            revision = PARQUET_REVISION
            chosen = select_files(files, ref.split, ref.subset or "default", None)
            if not chosen and not ref.subset:  # a data set of one config, named otherwise
                chosen = select_files(files, ref.split, None, None)
    except WorkerError:
        raise
    except Exception as exc:
        raise WorkerError(f"cannot read data set {ref.describe()} from the Hugging Face Hub: "
                          f"{type(exc).__name__}: {exc}") from exc  # fmt: skip
    if not chosen:
        shown = ", ".join(f for f in files if not f.startswith("."))[:600]
        raise WorkerError(f"data set {ref.describe()}: no data files (parquet, jsonl, json, csv, txt) of that "
                          f"split (files: {shown})")  # fmt: skip
    for name in chosen:
        if root is not None:
            yield root / name
        else:
            yield Path(hf_hub_download(ref.id, name, repo_type="dataset", revision=revision, token=token()))


def _target(location: str, suffix: str) -> Path:
    from huggingface_hub import constants  # type: ignore[import-not-found]

    folder = Path(constants.HF_HOME) / "servelab-data"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / (hashlib.sha256(location.encode()).hexdigest()[:16] + suffix)


def resolve_rows(location: str, limit: int | None = None) -> Path:
    """A path as it is; a Hub data location as a local .jsonl of (at most `limit`) rows of its split."""
    ref = parse_data(location)
    if ref is None:
        return Path(location)
    out = _target(location + f"|rows|{limit}", ".jsonl")
    count = 0
    with out.open("w", encoding="utf-8") as fh:
        for path in data_files(ref):
            for row in read_rows(path):
                if ref.column and ref.column not in row:
                    row_text(row, ref.column)  # raises, naming the columns
                fh.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
                count += 1
                if limit is not None and count >= limit:
                    break
            if limit is not None and count >= limit:
                break
    if not count:
        raise WorkerError(f"data set {ref.describe()} has no rows")
    print(f"data set {ref.describe()}: {count} rows -> {out}")
    return out


def resolve_text(location: str, max_chars: int = MAX_TEXT_CHARS) -> Path:
    """A path as it is; a Hub data location as a local text file: its split's texts (the column, or the
    first text field), one row after another, at most `max_chars` characters."""
    ref = parse_data(location)
    if ref is None:
        return Path(location)
    out = _target(location + f"|text|{max_chars}", ".txt")
    size = rows = 0
    blank = True
    with out.open("w", encoding="utf-8") as fh:
        for path in data_files(ref):
            for row in read_rows(path):
                text = row_text(row, ref.column)
                text = text if text.endswith("\n") else text + "\n"  # wikitext's rows end with one already
                fh.write(text)
                size, rows, blank = size + len(text), rows + 1, blank and not text.strip()
                if size >= max_chars:
                    break
            if size >= max_chars:
                print(f"data set {ref.describe()}: cut at {max_chars} characters")
                break
    if blank:
        raise WorkerError(f"data set {ref.describe()} has no text")
    print(f"data set {ref.describe()}: {rows} rows, {size} characters -> {out}")
    return out
