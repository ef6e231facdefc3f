"""Types shared by QuantJob and ServeBenchmark: model sources, placement, status plumbing."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from servelab.api.base import ApiModel

# CEL rules attached to a model class: (rule, message, fieldPath or None). crdgen turns them into
# x-kubernetes-validations; the same rules are checked in Python by servelab.api.validate for local runs.
CelRule = tuple[str, str, str | None]

Name = Field(..., min_length=1, max_length=253, pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")


class SecretKeyRef(ApiModel):
    """A key of a Secret in the resource's namespace. Its value is never copied into spec, status or logs."""

    name: str = Field(..., min_length=1, max_length=253, description="Secret name.")
    key: str = Field("token", min_length=1, max_length=253, description="Key inside the Secret.")


class HuggingFaceSource(ApiModel):
    id: str = Field(
        ..., min_length=1, max_length=256, description="Repository id, e.g. Qwen/Qwen3-4B-Instruct-2507."
    )
    revision: str | None = Field(None, max_length=128, description="Branch, tag or commit.")
    file: str | None = Field(
        None, max_length=512, description="One file of the repository (e.g. a .gguf), instead of all of it."
    )


class PvcSource(ApiModel):
    claim_name: str = Field(..., min_length=1, max_length=253, description="PersistentVolumeClaim name.")
    path: str = Field("", max_length=1024, description="Path inside the volume.")


class ModelSource(ApiModel):
    """Where a model comes from: exactly one of huggingFace, pvc, s3 or path."""

    __cel__ = [
        (
            "[has(self.huggingFace), has(self.pvc), has(self.s3), has(self.path)].filter(x, x).size() == 1",
            "set exactly one of huggingFace, pvc, s3 or path",
            None,
        )
    ]

    hugging_face: HuggingFaceSource | None = Field(None, description="A Hugging Face Hub repository.")
    pvc: PvcSource | None = Field(None, description="A directory or file on a PersistentVolumeClaim.")
    s3: str | None = Field(None, max_length=1024, pattern=r"^s3://", description="An s3:// URI.")
    path: str | None = Field(
        None,
        max_length=1024,
        description="A path already present in the image or on the node (local runs: a local directory).",
    )
    tokenizer: str | None = Field(
        None,
        max_length=1024,
        description="Tokenizer to use instead of the model's own (a Hub id or path; e.g. for GGUF files).",
    )


class DataSource(ApiModel):
    """Data for calibration, perplexity or evaluation: exactly one of huggingFace, path, pvc or configMap."""

    __cel__ = [
        (
            "[has(self.huggingFace), has(self.path), has(self.pvc), has(self.configMap)]"
            ".filter(x, x).size() == 1",
            "set exactly one of huggingFace, path, pvc or configMap",
            None,
        )
    ]

    hugging_face: HuggingFaceDataset | None = Field(None, description="A Hugging Face data set.")
    path: str | None = Field(None, max_length=1024, description="A file or directory in the image/locally.")
    pvc: PvcSource | None = Field(None, description="A file or directory on a PersistentVolumeClaim.")
    config_map: ConfigMapKeyRef | None = Field(None, description="A key of a ConfigMap (small text files).")


class HuggingFaceDataset(ApiModel):
    id: str = Field(..., min_length=1, max_length=256, description="Data set id.")
    subset: str | None = Field(None, max_length=128, description="Configuration/subset name.")
    split: str = Field("train", max_length=128, description="Split to read.")
    column: str | None = Field(None, max_length=128, description="Text or messages column.")


class ConfigMapKeyRef(ApiModel):
    name: str = Field(..., min_length=1, max_length=253, description="ConfigMap name.")
    key: str = Field(..., min_length=1, max_length=253, description="Key inside the ConfigMap.")


DataSource.model_rebuild()


class Toleration(ApiModel):
    key: str | None = Field(None, max_length=317)
    operator: Literal["Exists", "Equal"] | None = None
    value: str | None = Field(None, max_length=63)
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    toleration_seconds: int | None = None


class Placement(ApiModel):
    """Where pods run. GPU product selection is a node selector on nvidia.com/gpu.product."""

    node_selector: dict[str, str] = Field(default_factory=dict, description="Node labels pods must match.")
    tolerations: list[Toleration] = Field(default_factory=list, max_length=32, description="Pod tolerations.")
    affinity: dict[str, Any] | None = Field(
        None, description="A core/v1 Affinity, passed to the pods as it is."
    )
    runtime_class_name: str | None = Field(None, max_length=253, description="Pod runtimeClassName.")
    priority_class_name: str | None = Field(None, max_length=253, description="Pod priorityClassName.")


class Resources(ApiModel):
    gpus: int | None = Field(
        None, ge=0, le=64, description="nvidia.com/gpu per pod (default: the tensor-parallel size)."
    )
    cpu: str | None = Field(None, max_length=32, description="CPU request and limit, e.g. '8'.")
    memory: str | None = Field(None, max_length=32, description="Memory request and limit, e.g. '64Gi'.")


class EnvVar(ApiModel):
    name: str = Field(..., min_length=1, max_length=256, pattern=r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
    value: str = Field("", max_length=4096)


class Condition(ApiModel):
    """A standard Kubernetes condition (metav1.Condition)."""

    type: str = Field(..., max_length=316)
    status: Literal["True", "False", "Unknown"]
    reason: str = Field(..., max_length=1024)
    message: str = Field("", max_length=32768)
    last_transition_time: str = Field(..., description="RFC 3339 time the status last changed.")
    observed_generation: int | None = Field(None, ge=0)


Phase = Literal["Pending", "Waiting", "Running", "Succeeded", "Failed"]


class Progress(ApiModel):
    step: str | None = Field(None, description="The step running now, e.g. 'load 2/5'.")
    completed: int = Field(0, ge=0, description="Steps finished.")
    total: int = Field(0, ge=0, description="Steps in the plan.")
    summary: str | None = Field(None, description="completed/total, for kubectl get.")


class CommonStatus(ApiModel):
    phase: Phase | None = Field(None, description="Pending, Waiting, Running, Succeeded or Failed.")
    observed_generation: int | None = Field(
        None, ge=0, description="The spec generation this status is about."
    )
    conditions: list[Condition] = Field(
        default_factory=list, max_length=16, description="Ready, Succeeded, Failed (standard conditions)."
    )
    start_time: str | None = Field(None, description="When the run started (RFC 3339).")
    completion_time: str | None = Field(None, description="When the run finished (RFC 3339).")
    progress: Progress | None = Field(None, description="Where the run is.")
    message: str | None = Field(None, description="A human summary of the current state.")
    artifacts: str | None = Field(None, description="Where the full artifacts of the run are.")
