"""`servelab worker model`: make a model source ready before the program that reads it starts, and measure it.

Runs before the engine server (an init container of the server pod; locally, a process the executor waits
for), before llama-bench and before a QuantJob's quantize step:

- `--modelscope ID [--revision R] [--file F] --link DEST`: the ModelScope repository (or one file of it)
  from ModelScope's cache (`MODELSCOPE_CACHE`: the layout `modelscope.snapshot_download` writes) when the
  snapshot is there, else downloaded with the modelscope package (`snapshot_download`, or
  `model_file_download` for one file); DEST becomes a link to the snapshot directory, so the engine's
  command (rendered before the download) names a path that exists when it starts.
- `--path P`: nothing to fetch (a PVC or a local directory): only measured.

The report is one JSON object: the path measured, its size in bytes (the files' apparent sizes, each file
once; null when the path is not visible here, e.g. a path inside the engine's image) and how it was
obtained. It goes to `--report`, else the file of `$SERVELAB_RESULT_SINK` (`file:PATH`, local runs), else
the container's termination message (`/dev/termination-log`), which the operator reads from the pod's status.
Runs in the evalscope image, which has the modelscope package (evalscope depends on it).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from servelab.workers.common import WorkerError

TERMINATION_LOG = Path("/dev/termination-log")
TERMINATION_LIMIT = 4096  # bytes of a termination message kept by the kubelet


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--modelscope", default=None, metavar="ID", help="a ModelScope repository id to fetch")
    p.add_argument("--revision", default=None, help="its branch, tag or commit")
    p.add_argument("--file", default=None, help="one file of the repository instead of all of it")
    p.add_argument("--link", type=Path, default=None, help="the link to create to the fetched snapshot")
    p.add_argument("--path", type=Path, default=None, help="a model path to measure (nothing to fetch)")
    p.add_argument("--report", type=Path, default=None, help="where to write the JSON report")


def measure(path: Path) -> tuple[int, int]:
    """(bytes, files) of a file or a directory tree: apparent sizes, links followed, each file once."""
    seen: set[tuple[int, int]] = set()
    total = files = 0
    targets = (
        [path]
        if path.is_file()
        else [Path(r) / f for r, _, fs in os.walk(path, followlinks=True) for f in fs]
    )
    for target in targets:
        try:
            st = target.stat()
        except OSError:
            continue  # a dangling link
        if (st.st_dev, st.st_ino) in seen:
            continue
        seen.add((st.st_dev, st.st_ino))
        total, files = total + st.st_size, files + 1
    return total, files


def fetch_modelscope(repo: str, revision: str | None, file: str | None) -> tuple[Path, str]:
    """The local snapshot directory of a ModelScope repository (holding `file`, when one is named), and
    how it was obtained: from the cache when it is there, else downloaded."""
    from modelscope import model_file_download, snapshot_download  # type: ignore[import-not-found]

    try:  # the cache first: no request at all (local_files_only also skips resolving the revision)
        root = Path(snapshot_download(repo, revision=revision, local_files_only=True))
        if file is None or (root / file).is_file():
            return root, f"ModelScope cache {root}"
    except Exception:  # modelscope_hub's CacheNotFound, or no cache at all
        pass
    where = f"{repo}" + (f"@{revision}" if revision else "") + (f" file {file}" if file else "")
    try:
        if file:
            got = Path(model_file_download(repo, file, revision=revision))
            root = got.parents[len(Path(file).parts) - 1]
        else:
            root = Path(snapshot_download(repo, revision=revision))
    except Exception as exc:
        raise WorkerError(f"cannot download {where} from ModelScope (and it is not in its cache, "
                          f"MODELSCOPE_CACHE): {type(exc).__name__}: {exc}") from exc  # fmt: skip
    return root, f"downloaded from ModelScope into {root}"


def link(dest: Path, target: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.is_symlink() or dest.is_file():
        dest.unlink()
    elif dest.exists():
        raise WorkerError(f"{dest} exists and is not a link: will not replace it")
    dest.symlink_to(target.resolve(), target_is_directory=True)


def report_to(args: argparse.Namespace) -> Path | None:
    if args.report:
        return Path(args.report)
    sink = os.environ.get("SERVELAB_RESULT_SINK", "")
    if sink.startswith("file:"):
        return Path(sink[len("file:") :])
    return TERMINATION_LOG if TERMINATION_LOG.exists() and os.access(TERMINATION_LOG, os.W_OK) else None


def prepare(args: argparse.Namespace) -> dict[str, Any]:
    if args.modelscope:
        if args.link is None:
            raise WorkerError("--modelscope needs --link (where the engine's command expects the model)")
        root, how = fetch_modelscope(args.modelscope, args.revision, args.file)
        link(args.link, root)
        path = args.link / args.file if args.file else args.link
        print(f"model {args.modelscope}: {how}; {args.link} -> {root}")
    elif args.path is not None:
        path, how = args.path, "measured in place"
    else:
        raise WorkerError("give --modelscope ID --link DEST or --path P")
    if not path.exists():
        return {"path": str(path), "bytes": None, "files": None,
                "source": f"{path} is not visible to the model step (a path inside the engine's image?)"}  # fmt: skip
    size, files = measure(path)
    return {"path": str(path), "bytes": size, "files": files, "source": f"{how}; du of {path}"}


def run(args: argparse.Namespace) -> int:
    try:
        report = prepare(args)
    except WorkerError as exc:
        print(f"servelab worker model: {exc}", file=sys.stderr)
        target = report_to(args)
        if target is not None and target == TERMINATION_LOG:
            TERMINATION_LOG.write_text(str(exc)[-TERMINATION_LIMIT:])
        return 1
    text = json.dumps(report, sort_keys=True)
    print(text)
    target = report_to(args)
    if target is not None:
        if target != TERMINATION_LOG:
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.tmp")
            tmp.write_text(text)
            os.replace(tmp, target)
        else:
            target.write_text(text[:TERMINATION_LIMIT])
    return 0
