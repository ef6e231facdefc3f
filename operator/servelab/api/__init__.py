"""servelab's API (group servelab.dev, version v1alpha1): the one source of the CRD schemas."""

from __future__ import annotations

from servelab.api.quantjob import QuantJobSpec, QuantJobStatus
from servelab.api.servebenchmark import ServeBenchmarkSpec, ServeBenchmarkStatus

__all__ = ["QuantJobSpec", "QuantJobStatus", "ServeBenchmarkSpec", "ServeBenchmarkStatus"]
