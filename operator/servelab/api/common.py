"""Types shared by QuantJob and ServeBenchmark: model sources, placement, status plumbing.

Kubernetes-syntax values (quantities, names, label keys and values, tolerations, affinity) carry CEL
rules that refuse at admission what the pods the operator renders would be refused for, naming the field.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, ConfigDict, Field, WithJsonSchema

from servelab.api.base import ApiModel

# CEL rules attached to a model class: (rule, message, fieldPath or None). crdgen turns them into
# x-kubernetes-validations; the same rules are checked in Python by servelab.api.validate for local runs.
CelRule = tuple[str, str, str | None]
JsonDict = dict[str, Any]


def cel(*rules: tuple[str, str]) -> JsonDict:
    """CEL rules on one field (json_schema_extra): crdgen keeps them as the field's x-kubernetes-validations."""
    return {"x-kubernetes-validations": [{"rule": r, "message": m} for r, m in rules]}


# Regular expressions (RE2 and Python agree on them: no backslashes, anchored) of Kubernetes' own
# validation (k8s.io/apimachinery/pkg/util/validation).
DNS_LABEL_RE = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
DNS_SUBDOMAIN_RE = f"^{DNS_LABEL_RE}([.]{DNS_LABEL_RE})*$"
LABEL_NAME_RE = "[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
LABEL_KEY_RE = f"^({DNS_LABEL_RE}([.]{DNS_LABEL_RE})*/)?{LABEL_NAME_RE}$"
LABEL_VALUE_RE = f"^({LABEL_NAME_RE})?$"
CONFIG_KEY_RE = "^[-._a-zA-Z0-9]+$"
# resource.Quantity without a sign: digits, then a binary (Ki..Ei) or decimal (n u m k M G T P E) suffix
# or a decimal exponent
QUANTITY_RE = (
    "^(([0-9]+([.][0-9]*)?)|([.][0-9]+))"
    "(([KMGTPE]i)|[numkMGTPE]|([eE][+-]?(([0-9]+([.][0-9]*)?)|([.][0-9]+))))?$"
)
# Hugging Face repository ids (huggingface_hub.utils.validate_repo_id)
HF_ID_RE = "^([A-Za-z0-9_]([-A-Za-z0-9_.]*[A-Za-z0-9_])?/)?[A-Za-z0-9_]([-A-Za-z0-9_.]{0,94}[A-Za-z0-9_])?$"

DNS_SUBDOMAIN_MSG = (
    "must be a DNS-1123 subdomain (lowercase letters, digits, '-' and '.', starting and ending with a "
    "letter or digit)"
)
LABEL_KEY_MSG = (
    "must be a label key: an optional DNS-subdomain prefix and '/', then 1-63 letters, digits, '-', '_' "
    "or '.', starting and ending with a letter or digit"
)
LABEL_VALUE_MSG = (
    "must be a label value: at most 63 letters, digits, '-', '_' or '.', starting and ending with a "
    "letter or digit"
)

DnsSubdomain = Annotated[
    str,
    Field(
        min_length=1,
        max_length=253,
        json_schema_extra=cel((f"self.matches('{DNS_SUBDOMAIN_RE}')", DNS_SUBDOMAIN_MSG)),
    ),
]
LabelKey = Annotated[
    str,
    Field(
        min_length=1,
        max_length=317,
        json_schema_extra=cel((f"self.matches('{LABEL_KEY_RE}')", LABEL_KEY_MSG)),
    ),
]
LabelValue = Annotated[
    str, Field(max_length=63, json_schema_extra=cel((f"self.matches('{LABEL_VALUE_RE}')", LABEL_VALUE_MSG)))
]
ConfigKey = Annotated[
    str,
    Field(
        min_length=1,
        max_length=253,
        json_schema_extra=cel(
            (f"self.matches('{CONFIG_KEY_RE}')", "must consist of letters, digits, '-', '_' or '.'")
        ),
    ),
]
# A path inside a volume: '..' would leave it (the file would be written off the volume, or read from
# somewhere else)
SUBPATH_RULE = ("!self.matches('(^|/)[.][.](/|$)')", "must not contain a '..' path segment")
SubPath = Annotated[str, Field(max_length=1024, json_schema_extra=cel(SUBPATH_RULE))]
HubId = Annotated[
    str,
    Field(
        min_length=1,
        max_length=256,
        json_schema_extra=cel(
            (
                f"self.matches('{HF_ID_RE}') && !self.contains('--') && !self.contains('..')"
                " && !self.endsWith('.git')",
                "must be a Hugging Face repository id: 'name' or 'namespace/name' (letters, digits, '-', '_' "
                "and '.'; no '--' or '..'; at most 96 characters each)",
            )
        ),
    ),
]


def _quantity_in(value: Any) -> Any:
    # x-kubernetes-int-or-string: `cpu: 8` (a YAML integer) is a quantity too; the models keep strings
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


# A Kubernetes quantity (int or string, like core/v1's resources): `64Gi`, `500m`, `8`; not `64GB`.
Quantity = Annotated[
    str,
    BeforeValidator(_quantity_in),
    WithJsonSchema(
        {
            "x-kubernetes-int-or-string": True,
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "maxLength": 32,
            **cel(
                (
                    f"type(self) == int ? self >= 0 : self.matches('{QUANTITY_RE}')",
                    "must be a Kubernetes quantity such as 64Gi, 512Mi, 500m or 8 (binary units Ki Mi Gi Ti, "
                    "decimal k M G T; not GB or MB)",
                )
            ),
        }
    ),
]


class SecretKeyRef(ApiModel):
    """A key of a Secret in the resource's namespace. Its value is never copied into spec, status or logs."""

    name: DnsSubdomain = Field(..., description="Secret name.")
    key: ConfigKey = Field("token", description="Key inside the Secret.")


class HuggingFaceSource(ApiModel):
    id: HubId = Field(..., description="Repository id, e.g. Qwen/Qwen3-4B-Instruct-2507.")
    revision: str | None = Field(None, max_length=128, description="Branch, tag or commit.")
    file: str | None = Field(
        None,
        max_length=512,
        description="One file of the repository (e.g. a .gguf), instead of all of it.",
        json_schema_extra=cel(
            ("!self.startsWith('/')", "must be a path relative to the repository's root"), SUBPATH_RULE
        ),
    )


# ModelScope repository ids: always 'owner/name' (modelscope's own check), names as on the Hugging Face Hub
MS_ID_RE = "^[A-Za-z0-9_]([-A-Za-z0-9_.]*[A-Za-z0-9_])?/[A-Za-z0-9_]([-A-Za-z0-9_.]{0,94}[A-Za-z0-9_])?$"
ModelScopeId = Annotated[
    str,
    Field(
        min_length=3,
        max_length=256,
        json_schema_extra=cel(
            (
                f"self.matches('{MS_ID_RE}') && !self.contains('..')",
                "must be a ModelScope repository id: 'owner/name' (letters, digits, '-', '_' and '.'; no '..')",
            )
        ),
    ),
]


class ModelScopeSource(ApiModel):
    """A ModelScope (modelscope.cn) model repository (write-up 002's VLLM_USE_MODELSCOPE). vLLM and SGLang
    fetch it themselves (their environment switch, VLLM_USE_MODELSCOPE / SGLANG_USE_MODELSCOPE); for every
    other engine, and for a QuantJob, a step downloads it first with the modelscope package
    (snapshot_download, or model_file_download for one file) into the model volume, from its cache
    (MODELSCOPE_CACHE) when the snapshot is there."""

    id: ModelScopeId = Field(..., description="Repository id, e.g. Qwen/Qwen3-8B.")
    revision: str | None = Field(
        None,
        max_length=128,
        pattern=r"^[^/]+$",
        description="Branch, tag or commit (default: the repository's).",
    )
    file: str | None = Field(
        None,
        max_length=512,
        description="One file of the repository (e.g. a .gguf), instead of all of it; not with vLLM or SGLang, "
        "which load whole repositories.",
        json_schema_extra=cel(
            ("!self.startsWith('/')", "must be a path relative to the repository's root"), SUBPATH_RULE
        ),
    )


class PvcSource(ApiModel):
    claim_name: DnsSubdomain = Field(..., description="PersistentVolumeClaim name.")
    path: SubPath = Field("", description="Path inside the volume (no '..' segments).")


class ModelSource(ApiModel):
    """Where a model comes from: exactly one of huggingFace, modelScope, pvc or path."""

    __cel__ = [
        (
            "[has(self.huggingFace), has(self.modelScope), has(self.pvc), has(self.path)].filter(x, x).size() == 1",
            "set exactly one of huggingFace, modelScope, pvc or path",
            None,
        )
    ]

    hugging_face: HuggingFaceSource | None = Field(None, description="A Hugging Face Hub repository.")
    model_scope: ModelScopeSource | None = Field(
        None, description="A ModelScope repository (engines' environment switch, or a download step first)."
    )
    pvc: PvcSource | None = Field(None, description="A directory or file on a PersistentVolumeClaim.")
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
    id: HubId = Field(
        ...,
        description="Data set id (its data files are downloaded: parquet, jsonl, json, csv "
        "or txt; a data set made by a loading script only cannot be read).",
    )
    subset: str | None = Field(
        None, max_length=128, pattern=r"^[^@#]+$", description="Configuration/subset name."
    )
    split: str = Field(
        "train", min_length=1, max_length=128, pattern=r"^[^@#]+$", description="Split to read."
    )
    column: str | None = Field(None, max_length=128, description="Text or messages column.")


class ConfigMapKeyRef(ApiModel):
    name: DnsSubdomain = Field(..., description="ConfigMap name.")
    key: ConfigKey = Field(..., description="Key inside the ConfigMap.")


DataSource.model_rebuild()


class Toleration(ApiModel):
    """A core/v1 Toleration, checked as the apiserver checks a pod's."""

    __cel__ = [
        ("(has(self.key) && self.key != '') || (has(self.operator) && self.operator == 'Exists')",
         "operator must be Exists when key is empty (which tolerates every taint)", ".operator"),
        ("!has(self.operator) || self.operator != 'Exists' || !has(self.value) || self.value == ''",
         "value must be empty when operator is Exists", ".value"),
        ("!has(self.tolerationSeconds) || (has(self.effect) && self.effect == 'NoExecute')",
         "effect must be NoExecute when tolerationSeconds is set", ".effect"),
    ]  # fmt: skip

    key: str | None = Field(
        None,
        max_length=317,
        description="Taint key (a label key); empty with operator Exists tolerates every taint.",
        json_schema_extra=cel((f"self == '' || self.matches('{LABEL_KEY_RE}')", LABEL_KEY_MSG)),
    )
    operator: Literal["Exists", "Equal"] | None = Field(None, description="Exists or Equal (default).")
    value: LabelValue | None = Field(None, description="Taint value (operator Equal).")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        None, description="Taint effect to match (empty: all)."
    )
    toleration_seconds: int | None = Field(None, description="How long a NoExecute taint is tolerated.")


# ---- core/v1 Affinity, typed so that a wrong shape is refused at admission, not by the pod's creation


def _affinity_rules(*rules: tuple[str, str]) -> ConfigDict:
    return ConfigDict(json_schema_extra=cel(*rules))


class NodeSelectorRequirement(ApiModel):
    model_config = _affinity_rules(
        ("self.operator in ['In', 'NotIn'] ? has(self.values) && size(self.values) > 0 : true",
         "values must be non-empty when operator is In or NotIn"),
        ("self.operator in ['Exists', 'DoesNotExist'] ? !has(self.values) || size(self.values) == 0 : true",
         "values must be empty when operator is Exists or DoesNotExist"),
        ("self.operator in ['Gt', 'Lt'] ? has(self.values) && size(self.values) == 1"
         " && self.values[0].matches('^-?[0-9]+$') : true",
         "values must be one integer when operator is Gt or Lt"),
    )  # fmt: skip

    key: LabelKey = Field(..., description="Node label key.")
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"] = Field(
        ..., description="Operator."
    )
    values: list[Annotated[str, Field(max_length=63)]] = Field(
        default_factory=list, max_length=64, description="Values."
    )


class NodeSelectorTerm(ApiModel):
    match_expressions: list[NodeSelectorRequirement] = Field(
        default_factory=list, max_length=32, description="Requirements on node labels."
    )
    match_fields: list[NodeSelectorRequirement] = Field(
        default_factory=list,
        max_length=32,
        description="Requirements on node fields (metadata.name).",
        json_schema_extra=cel(
            ("self.all(r, r.key == 'metadata.name' && r.operator in ['In', 'NotIn'] && size(r.values) == 1)",
             "the only supported field is metadata.name, with operator In or NotIn and one value"),
        ),
    )  # fmt: skip


class NodeSelector(ApiModel):
    node_selector_terms: list[NodeSelectorTerm] = Field(
        ..., min_length=1, max_length=32, description="Terms, ORed."
    )


class PreferredSchedulingTerm(ApiModel):
    weight: int = Field(..., ge=1, le=100, description="Weight 1-100.")
    preference: NodeSelectorTerm = Field(..., description="The preferred node selector term.")


class NodeAffinity(ApiModel):
    required_during_scheduling_ignored_during_execution: NodeSelector | None = Field(
        None, description="Nodes the pod must run on."
    )
    preferred_during_scheduling_ignored_during_execution: list[PreferredSchedulingTerm] = Field(
        default_factory=list, max_length=32, description="Nodes the pod prefers."
    )


class LabelSelectorRequirement(ApiModel):
    model_config = _affinity_rules(
        ("self.operator in ['In', 'NotIn'] ? has(self.values) && size(self.values) > 0 : true",
         "values must be non-empty when operator is In or NotIn"),
        ("self.operator in ['Exists', 'DoesNotExist'] ? !has(self.values) || size(self.values) == 0 : true",
         "values must be empty when operator is Exists or DoesNotExist"),
    )  # fmt: skip

    key: LabelKey = Field(..., description="Label key.")
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"] = Field(..., description="Operator.")
    # label values are at most 63 characters; their syntax is left to the pod's own validation (a rule on
    # each value of each term of each selector would exceed the apiserver's CEL cost budget)
    values: list[Annotated[str, Field(max_length=63)]] = Field(
        default_factory=list, max_length=64, description="Values."
    )


class LabelSelector(ApiModel):
    match_labels: dict[LabelKey, LabelValue] = Field(
        default_factory=dict,
        max_length=32,
        description="Labels to match.",
        json_schema_extra=cel((f"self.all(k, k.matches('{LABEL_KEY_RE}'))", "keys " + LABEL_KEY_MSG)),
    )
    match_expressions: list[LabelSelectorRequirement] = Field(
        default_factory=list, max_length=32, description="Requirements, ANDed."
    )


class PodAffinityTerm(ApiModel):
    label_selector: LabelSelector | None = Field(None, description="Pods to match.")
    namespace_selector: LabelSelector | None = Field(None, description="Namespaces to look in.")
    namespaces: list[Annotated[str, Field(max_length=63)]] = Field(
        default_factory=list, max_length=32, description="Namespaces to look in."
    )
    topology_key: LabelKey = Field(..., description="Node label that defines the topology domain.")
    match_label_keys: list[LabelKey] = Field(
        default_factory=list, max_length=32, description="matchLabelKeys."
    )
    mismatch_label_keys: list[LabelKey] = Field(
        default_factory=list, max_length=32, description="mismatchLabelKeys."
    )


class WeightedPodAffinityTerm(ApiModel):
    weight: int = Field(..., ge=1, le=100, description="Weight 1-100.")
    pod_affinity_term: PodAffinityTerm = Field(..., description="The term.")


class PodAffinity(ApiModel):
    required_during_scheduling_ignored_during_execution: list[PodAffinityTerm] = Field(
        default_factory=list, max_length=32, description="Terms that must hold."
    )
    preferred_during_scheduling_ignored_during_execution: list[WeightedPodAffinityTerm] = Field(
        default_factory=list, max_length=32, description="Terms preferred."
    )


class Affinity(ApiModel):
    """core/v1 Affinity."""

    node_affinity: NodeAffinity | None = Field(None, description="Node affinity.")
    pod_affinity: PodAffinity | None = Field(None, description="Pod affinity.")
    pod_anti_affinity: PodAffinity | None = Field(None, description="Pod anti-affinity.")


def _inline(schema: Any, defs: dict[str, Any]) -> Any:
    if isinstance(schema, dict):
        if "$ref" in schema:
            target = _inline(defs[schema["$ref"].rsplit("/", 1)[-1]], defs)
            return {**target, **{k: _inline(v, defs) for k, v in schema.items() if k != "$ref"}}
        return {k: _inline(v, defs) for k, v in schema.items() if k != "$defs"}
    if isinstance(schema, list):
        return [_inline(v, defs) for v in schema]
    return schema


def _affinity_schema() -> JsonDict:
    raw = Affinity.model_json_schema(by_alias=True, mode="validation")
    schema: JsonDict = _inline(raw, raw.get("$defs", {}))
    return schema


def _check_affinity(value: Any) -> Any:
    # the typed shape, with the same strictness as the rest of the spec (camelCase names only)
    Affinity.model_validate(value, by_alias=True, by_name=False)
    return value


# Kept a plain dict in Python (the operator passes it to pods as it is), typed in the CRD.
AffinityDict = Annotated[dict[str, Any], BeforeValidator(_check_affinity), WithJsonSchema(_affinity_schema())]


class Placement(ApiModel):
    """Where pods run. GPU product selection is a node selector on nvidia.com/gpu.product."""

    node_selector: dict[str, LabelValue] = Field(
        default_factory=dict,
        max_length=64,
        description="Node labels pods must match.",
        json_schema_extra=cel((f"self.all(k, k.matches('{LABEL_KEY_RE}'))", "keys " + LABEL_KEY_MSG)),
    )
    tolerations: list[Toleration] = Field(default_factory=list, max_length=32, description="Pod tolerations.")
    affinity: AffinityDict | None = Field(
        None, description="A core/v1 Affinity, passed to the pods as it is."
    )
    runtime_class_name: DnsSubdomain | None = Field(None, description="Pod runtimeClassName.")
    priority_class_name: DnsSubdomain | None = Field(None, description="Pod priorityClassName.")


class Resources(ApiModel):
    gpus: int | None = Field(
        None, ge=0, le=64, description="nvidia.com/gpu per pod (default: the tensor-parallel size)."
    )
    cpu: Quantity | None = Field(None, description="CPU request and limit, e.g. 8 or 500m.")
    memory: Quantity | None = Field(None, description="Memory request and limit, e.g. 64Gi.")


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
