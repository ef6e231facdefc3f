"""servelab: a Kubernetes operator for LLM serving experiments."""

from __future__ import annotations

GROUP = "servelab.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
__version__ = "0.1.0"
