"""Publish what a worker Job would publish, for tests and benchmarks where no worker runs (KWOK pods).

A worker publishes its result into the ConfigMap its Job's environment names (`SERVELAB_RESULT_SINK`),
with the labels and owner the operator gave it (`SERVELAB_RESULT_LABELS`, `SERVELAB_OWNER_REF`), as
`servelab.workers.publish.ConfigMapSink` writes it. This does the same with an admin client.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from servelab.workers.publish import encode


def job_env(job: Any) -> dict[str, str]:
    """The worker container's plain environment variables (a V1Job, as the client lists it)."""
    return {e.name: e.value for e in job.spec.template.spec.containers[0].env or [] if e.value is not None}


def publish_job_result(
    core: client.CoreV1Api, job: Any, result: Mapping[str, Any], replace: bool = True
) -> bool:
    """The Job's result ConfigMap, created, or (`replace`) given this result when one exists, as a
    worker's later publication replaces its earlier one. Returns False when it already existed and was
    left as it was, or its namespace is gone."""
    env = job_env(job)
    ns, name, key = env["SERVELAB_RESULT_SINK"].removeprefix("configmap:").split("/")
    labels = {**json.loads(env["SERVELAB_RESULT_LABELS"]), "app.kubernetes.io/managed-by": "servelab",
              "servelab.dev/result": "true"}  # fmt: skip
    data = {key: encode(result)}
    cm = {"apiVersion": "v1", "kind": "ConfigMap",
          "metadata": {"name": name, "namespace": ns, "labels": labels,
                       "ownerReferences": [json.loads(env["SERVELAB_OWNER_REF"])]},
          "data": data}  # fmt: skip
    try:
        core.create_namespaced_config_map(ns, cm)
        return True
    except ApiException as err:
        if err.status == 404:
            return False
        if err.status != 409:
            raise
    if not replace:
        return False
    core.patch_namespaced_config_map(name, ns, {"data": data})
    return True
