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
