"""The operator's settings, in one place, read from the environment (the chart sets them)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

from servelab import GROUP, __version__


def _env(name: str, default: str) -> str:
    return os.environ.get(name) or default


@dataclass(frozen=True)
class Settings:
    # identity of what servelab writes: finalizer, progress/diff-base annotations, labels
    prefix: str = GROUP
    # namespaces watched ([] = all); --namespace on the command line adds to these
    namespaces: list[str] = field(default_factory=list)
    # Reconciling is watch-driven: a change of a child (Job, Deployment, server pod, result ConfigMap) or of
    # a referenced QuantJob reconciles its owner at once. Time-based decisions (timeouts, grace periods) wake
    # their resource when they fall due (the decision's `wake_after`). `resync` is the longest a running
    # resource waits without a change or a deadline (a safety net for a missed event: decided from memory,
    # nothing written unless something changed); `interval` is the least time between two reconciles of one
    # resource (a burst of child events is decided once).
    resync: float = 300.0
    interval: float = 0.2
    # kopf watch timeouts (see kopf's notes on silent watch freezes)
    server_timeout: int = 120
    client_timeout: int = 150
    request_timeout: int = 30
    worker_limit: int = 16
    # images of servelab's workers, by plan image name
    worker_images: dict[str, str] = field(default_factory=dict)
    image_pull_policy: str = "IfNotPresent"
    # labels added to every pod servelab creates (e.g. a cost centre, or the test executor's marker)
    extra_pod_labels: dict[str, str] = field(default_factory=dict)
    # metrics endpoint
    metrics_port: int = 8080
    # worker pods' resources (they need no GPU)
    worker_cpu: str = "1"
    worker_memory: str = "2Gi"
    # how long a benchmark waits for a QuantJob it names to be created (it may be applied just after)
    quantjob_grace_seconds: float = 60.0

    @property
    def finalizer(self) -> str:
        return f"{self.prefix}/finalizer"

    def image(self, name: str) -> str:
        return self.worker_images.get(name, f"ghcr.io/servelab/worker-{name}:{__version__}")

    @classmethod
    def from_env(cls) -> Settings:
        ns = [n for n in _env("SERVELAB_NAMESPACES", "").split(",") if n]
        images = {k: v for k, v in json.loads(_env("SERVELAB_WORKER_IMAGES", "{}")).items()}
        labels = {k: v for k, v in json.loads(_env("SERVELAB_EXTRA_POD_LABELS", "{}")).items()}
        return cls(
            namespaces=ns, resync=float(_env("SERVELAB_RESYNC", "300")),
            interval=min(float(_env("SERVELAB_INTERVAL", "0.2")), 1.0),
            server_timeout=int(_env("SERVELAB_WATCH_SERVER_TIMEOUT", "120")),
            client_timeout=int(_env("SERVELAB_WATCH_CLIENT_TIMEOUT", "150")),
            worker_limit=int(_env("SERVELAB_WORKER_LIMIT", "16")), worker_images=images,
            worker_cpu=_env("SERVELAB_WORKER_CPU", "1"), worker_memory=_env("SERVELAB_WORKER_MEMORY", "2Gi"),
            image_pull_policy=_env("SERVELAB_IMAGE_PULL_POLICY", "IfNotPresent"), extra_pod_labels=labels,
            metrics_port=int(_env("SERVELAB_METRICS_PORT", "8080")),
        )  # fmt: skip
