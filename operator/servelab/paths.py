"""Where servelab keeps what it builds and caches, always outside the repository."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def cache_root() -> Path:
    """Cache root for binaries, environments and models: $SERVELAB_CACHE or ~/.cache/servelab."""
    root = Path(os.environ.get("SERVELAB_CACHE") or Path.home() / ".cache" / "servelab")
    root.mkdir(parents=True, exist_ok=True)
    return root


def repo_path(*parts: str) -> Path:
    """A path inside the source checkout (crds/, images/, hack/, examples/)."""
    return REPO_ROOT.joinpath(*parts)


def write_or_check(files: dict[Path, str], check: bool) -> list[Path]:
    """Write generated files (printing what changed), or with check only report the stale ones (a diff
    excerpt each, on stderr); return the stale ones either way."""
    import difflib
    import sys

    stale = []
    for path, text in files.items():
        current = path.read_text() if path.exists() else ""
        if current == text:
            continue
        stale.append(path)
        if check:
            diff = difflib.unified_diff(
                current.splitlines(), text.splitlines(), str(path), "generated", lineterm=""
            )
            print("\n".join(list(diff)[:40]), file=sys.stderr)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(f"wrote {path.relative_to(REPO_ROOT)}")
    return stale
