"""A catalogue of plausible wrong specs (and tricky right ones), each with the field a refusal must name.

Used twice: tests/unit/test_validate.py runs every case through local validation alone (fast);
tests/integration/test_api_validation.py applies every case to the real apiserver (server-side
dry-run create, strict field validation) and to `servelab validate`, and asserts that both give the
same verdict and both name the field.

A case is a whole object (apiVersion, kind, metadata, spec). `field` is the field path the refusal
must name (as the apiserver writes it: `spec.load.parallel[0]`), None for a valid case.
RAW_INVALID are documents refused before any schema is looked at (kubectl refuses them too).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

API = "servelab.dev/v1alpha1"


@dataclass(frozen=True)
class Case:
    id: str
    body: dict[str, Any]
    field: str | None  # None: valid

    @property
    def valid(self) -> bool:
        return self.field is None


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """`over` merged into a copy of `base`; a value of DELETE removes the key."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        if value is DELETE:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict) and not value.get(REPLACE):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(
                {k: v for k, v in value.items() if k != REPLACE} if isinstance(value, dict) else value
            )
    return out


DELETE = object()
REPLACE = "__replace__"

SB_SPEC: dict[str, Any] = {
    "model": {"huggingFace": {"id": "Qwen/Qwen3-4B-Instruct-2507"}},
    "engine": {"name": "vllm"},
    "load": {"parallel": [1, 4], "number": [4, 16]},
}
QJ_SPEC: dict[str, Any] = {
    "model": {"huggingFace": {"id": "Qwen/Qwen3-4B-Instruct-2507"}},
    "method": "gguf",
    "gguf": {"imatrix": False, "variants": [{"type": "Q4_K_M"}]},
    "output": {"pvc": {"claimName": "models", "path": "qwen3-4b"}},
}


def sb(spec: dict[str, Any] | None = None, name: str = "cat", meta: dict[str, Any] | None = None,
       **top: Any) -> dict[str, Any]:  # fmt: skip
    body = {"apiVersion": API, "kind": "ServeBenchmark", "metadata": {"name": name, **(meta or {})},
            "spec": _merge(SB_SPEC, spec or {})}  # fmt: skip
    return _merge(body, top) if top else body


def qj(
    spec: dict[str, Any] | None = None, name: str = "cat", meta: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {"apiVersion": API, "kind": "QuantJob", "metadata": {"name": name, **(meta or {})},
            "spec": _merge(QJ_SPEC, spec or {})}  # fmt: skip


def r(value: dict[str, Any]) -> dict[str, Any]:
    """Replace the sub-object instead of merging into it."""
    return {**value, REPLACE: True}


LLAMA = {"engine": r({"name": "llamacpp"})}
NODE_TERM = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
    {"matchExpressions": [{"key": "nvidia.com/gpu.product", "operator": "In", "values": ["NVIDIA-H100-80GB-HBM3"]}]}
]}}}  # fmt: skip
REQ = "spec.placement.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution"
ANTI = "spec.placement.affinity.podAntiAffinity"


def _no_spec() -> dict[str, Any]:
    body = sb()
    del body["spec"]
    return body


def _no_name() -> dict[str, Any]:
    body = sb()
    del body["metadata"]["name"]
    return body


INVALID: list[Case] = [
    # ---- metadata
    Case("name-uppercase", sb(name="Qwen3-4B"), "metadata.name"),
    Case("name-underscore", sb(name="qwen3_4b"), "metadata.name"),
    Case("name-254-chars", sb(name="a" * 254), "metadata.name"),
    Case("name-leading-dash", sb(name="-qwen"), "metadata.name"),
    Case("name-double-dot", sb(name="qwen..4b"), "metadata.name"),
    Case("name-slash", sb(name="../etc"), "metadata.name"),
    Case("name-missing", _no_name(), "metadata.name"),
    Case("label-key-space", sb(meta={"labels": {"team name": "x"}}), "metadata.labels"),
    Case("label-value-64", sb(meta={"labels": {"team": "x" * 64}}), "metadata.labels"),
    Case("metadata-unknown-field", sb(meta={"nmae": "x"}), "metadata.nmae"),
    # ---- shape, strictness
    Case("spec-missing", _no_spec(), "spec"),
    Case("spec-a-list", sb(spec=None) | {"spec": [SB_SPEC]}, "spec"),
    Case("unknown-field-typo", sb({"engine": {"tensorParalelSize": 2}}), "spec.engine.tensorParalelSize"),
    Case("snake-case-field", sb({"engine": {"tensor_parallel_size": 2}}), "spec.engine.tensor_parallel_size"),
    Case("snake-case-top", sb({"server_policy": "Keep"}), "spec.server_policy"),
    Case(
        "snake-case-source",
        sb({"model": r({"hugging_face": {"id": "Qwen/Qwen3-4B"}})}),
        "spec.model.hugging_face",
    ),
    Case("quoted-true", sb({"load": {"ignoreEos": "true"}}), "spec.load.ignoreEos"),
    Case("quoted-number", sb({"load": {"number": ["10", "20"]}}), "spec.load.number[0]"),
    Case("quoted-tp", sb({"engine": {"tensorParallelSize": "2"}}), "spec.engine.tensorParallelSize"),
    Case("int-for-string", sb({"engine": {"servedModelName": 5}}), "spec.engine.servedModelName"),
    Case("bool-for-int", sb({"load": {"maxTokens": True}}), "spec.load.maxTokens"),
    Case("fraction-for-int", sb({"load": {"maxTokens": 1.5}}), "spec.load.maxTokens"),
    Case("list-for-object", sb({"load": [1]}), "spec.load"),
    Case("string-for-list", sb({"load": {"parallel": "1", "number": [4]}}), "spec.load.parallel"),
    # ---- engine
    Case("engine-unknown", sb({"engine": {"name": "tgi"}}), "spec.engine.name"),
    Case("engine-missing", sb({"engine": DELETE}), "spec.engine"),
    Case("tp-zero", sb({"engine": {"tensorParallelSize": 0}}), "spec.engine.tensorParallelSize"),
    Case(
        "memory-fraction", sb({"engine": {"gpuMemoryUtilization": 1.5}}), "spec.engine.gpuMemoryUtilization"
    ),
    Case("dtype-fp16", sb({"engine": {"dtype": "fp16"}}), "spec.engine.dtype"),
    Case("port-too-big", sb({"engine": {"port": 70000}}), "spec.engine.port"),
    Case(
        "env-name-digit", sb({"engine": {"env": [{"name": "1FOO", "value": "x"}]}}), "spec.engine.env[0].name"
    ),
    Case("extra-args-port", sb({"engine": {"extraArgs": ["--port", "9000"]}}), "spec.engine.extraArgs"),
    Case(
        "tp-over-gpus",
        sb({"engine": {"tensorParallelSize": 4}, "resources": {"gpus": 2}}),
        "spec.engine.tensorParallelSize",
    ),
    Case(
        "llamacpp-tp",
        sb({"engine": r({"name": "llamacpp", "tensorParallelSize": 2})}),
        "spec.engine.tensorParallelSize",
    ),
    Case("vllm-gpus-zero", sb({"resources": {"gpus": 0}}), "spec.engine.tensorParallelSize"),
    Case(
        "api-key-secret-name",
        sb({"engine": {"apiKeySecretRef": {"name": "Bad_Secret"}}}),
        "spec.engine.apiKeySecretRef.name",
    ),
    Case(
        "api-key-secret-key",
        sb({"engine": {"apiKeySecretRef": {"name": "s", "key": "a/b"}}}),
        "spec.engine.apiKeySecretRef.key",
    ),
    # ---- model sources
    Case("two-model-sources", sb({"model": {"path": "/models/x"}}), "spec.model"),
    Case("model-and-ref", sb({"quantJobRef": {"name": "q"}}), "spec"),
    Case("neither-model-nor-ref", sb({"model": DELETE}), "spec"),
    Case(
        "hub-id-space", sb({"model": {"huggingFace": {"id": "Qwen/Qwen3 4B"}}}), "spec.model.huggingFace.id"
    ),
    Case("hub-id-three-parts", sb({"model": {"huggingFace": {"id": "a/b/c"}}}), "spec.model.huggingFace.id"),
    Case(
        "hub-id-double-dash",
        sb({"model": {"huggingFace": {"id": "Qwen/Qwen3--4B"}}}),
        "spec.model.huggingFace.id",
    ),
    Case(
        "hub-file-absolute",
        sb({"model": {"huggingFace": {"file": "/etc/passwd"}}}),
        "spec.model.huggingFace.file",
    ),
    Case(
        "hub-file-dotdot",
        sb({"model": {"huggingFace": {"file": "../x.gguf"}}}),
        "spec.model.huggingFace.file",
    ),
    Case(
        "pvc-claim-uppercase",
        sb({"model": r({"pvc": {"claimName": "My_Claim"}})}),
        "spec.model.pvc.claimName",
    ),
    Case(
        "pvc-path-dotdot",
        sb({"model": r({"pvc": {"claimName": "models", "path": "../other"}})}),
        "spec.model.pvc.path",
    ),
    Case(
        "pvc-path-inner-dotdot",
        sb({"model": r({"pvc": {"claimName": "models", "path": "a/../../b"}})}),
        "spec.model.pvc.path",
    ),
    Case("s3-model-removed", sb({"model": r({"s3": "s3://bucket/model"})}), "spec.model.s3"),
    Case("quantjobref-name", sb({"model": DELETE, "quantJobRef": {"name": "Bad"}}), "spec.quantJobRef.name"),
    # ---- load
    Case(
        "parallel-number-length", sb({"load": {"parallel": [1, 2, 4], "number": [4, 8]}}), "spec.load.number"
    ),
    Case("parallel-zero", sb({"load": {"parallel": [0, 4]}}), "spec.load.parallel[0]"),
    Case(
        "prompt-range",
        sb({"load": {"minPromptLength": 2048, "maxPromptLength": 1024}}),
        "spec.load.minPromptLength",
    ),
    Case("min-over-max-tokens", sb({"load": {"minTokens": 2048, "maxTokens": 1024}}), "spec.load.minTokens"),
    Case("parallel-empty", sb({"load": {"parallel": [], "number": []}}), "spec.load.parallel"),
    Case("dataset-sharegpt", sb({"load": {"dataset": "sharegpt"}}), "spec.load.dataset"),
    Case("endpoint-responses", sb({"load": {"endpoint": "responses"}}), "spec.load.endpoint"),
    Case("success-rate", sb({"load": {"minSuccessRate": 1.5}}), "spec.load.minSuccessRate"),
    Case("point-timeout", sb({"load": {"pointTimeoutSeconds": 5}}), "spec.load.pointTimeoutSeconds"),
    Case("rate-zero", sb({"load": {"rate": 0}}), "spec.load.rate"),
    Case(
        "prompt-beyond-context",
        sb({"engine": {"maxModelLen": 2048}, "load": {"maxPromptLength": 2048}}),
        "spec.load.maxPromptLength",
    ),
    Case("nothing-to-run", sb({"load": DELETE}), "spec"),
    Case(  # llama-server -np 64 -c 4096: 64 tokens of context per slot (found on the H200 run)
        "llamacpp-slot-context",
        sb({**LLAMA, "engine": r({"name": "llamacpp", "maxModelLen": 4096, "llamacpp": {"parallelSlots": 64}}),
            "load": {"maxPromptLength": 1024, "maxTokens": 1024}}),
        "spec.load.maxPromptLength",
    ),

    # ---- context sweep
    Case(
        "depth-beyond-context",
        sb({"load": DELETE, "engine": {"maxModelLen": 32768}, "contextSweep": {"depths": [0, 32768]}}),
        "spec.contextSweep.depths",
    ),
    Case("depths-empty", sb({"load": DELETE, "contextSweep": {"depths": []}}), "spec.contextSweep.depths"),
    Case(
        "sweep-runs-zero",
        sb({"load": DELETE, "contextSweep": {"depths": [0], "runs": 0}}),
        "spec.contextSweep.runs",
    ),
    # ---- evaluations
    Case(
        "eval-dataset-unknown",
        sb({"evaluations": [{"datasets": [{"name": "mmlu-pro"}]}]}),
        "spec.evaluations[0].datasets[0].name",
    ),
    Case(
        "eval-dataset-case",
        sb({"evaluations": [{"datasets": [{"name": "GSM8K"}]}]}),
        "spec.evaluations[0].datasets[0].name",
    ),
    Case(
        "eval-max-tokens-context",
        sb(
            {
                "engine": {"maxModelLen": 4096},
                "evaluations": [{"datasets": [{"name": "gsm8k"}], "generation": {"maxTokens": 4096}}],
            }
        ),
        "spec.evaluations",
    ),
    Case("eval-no-datasets", sb({"evaluations": [{"datasets": []}]}), "spec.evaluations[0].datasets"),
    Case(
        "eval-batch-zero",
        sb({"evaluations": [{"datasets": [{"name": "gsm8k"}], "batchSize": 0}]}),
        "spec.evaluations[0].batchSize",
    ),
    # ---- resources
    Case("memory-GB", sb({"resources": {"memory": "64GB"}}), "spec.resources.memory"),
    Case("memory-space", sb({"resources": {"memory": "64 Gi"}}), "spec.resources.memory"),
    Case("cpu-negative-string", sb({"resources": {"cpu": "-1"}}), "spec.resources.cpu"),
    Case("cpu-negative-int", sb({"resources": {"cpu": -2}}), "spec.resources.cpu"),
    Case("cpu-word", sb({"resources": {"cpu": "eight"}}), "spec.resources.cpu"),
    Case("memory-bool", sb({"resources": {"memory": True}}), "spec.resources.memory"),
    Case("gpus-65", sb({"resources": {"gpus": 65}}), "spec.resources.gpus"),
    Case("gpus-negative", sb({"resources": {"gpus": -1}}), "spec.resources.gpus"),
    Case("shm-GB", sb({"shmSize": "16GB"}), "spec.shmSize"),
    Case("shm-two-dots", sb({"shmSize": "1.5.5Gi"}), "spec.shmSize"),
    # ---- placement
    Case(
        "node-selector-key",
        sb({"placement": {"nodeSelector": {"gpu product": "H100"}}}),
        "spec.placement.nodeSelector",
    ),
    Case(
        "node-selector-value",
        sb({"placement": {"nodeSelector": {"gpu": "H100 80GB"}}}),
        "spec.placement.nodeSelector",
    ),
    Case(
        "node-selector-value-long",
        sb({"placement": {"nodeSelector": {"gpu": "x" * 64}}}),
        "spec.placement.nodeSelector",
    ),
    Case(
        "node-selector-value-int",
        sb({"placement": {"nodeSelector": {"gpus": 8}}}),
        "spec.placement.nodeSelector",
    ),
    Case(
        "toleration-operator",
        sb({"placement": {"tolerations": [{"key": "gpu", "operator": "Equals"}]}}),
        "spec.placement.tolerations[0].operator",
    ),
    Case(
        "toleration-effect",
        sb({"placement": {"tolerations": [{"key": "gpu", "effect": "NoSchedul"}]}}),
        "spec.placement.tolerations[0].effect",
    ),
    Case(
        "toleration-key",
        sb({"placement": {"tolerations": [{"key": "nvidia gpu", "operator": "Exists"}]}}),
        "spec.placement.tolerations[0].key",
    ),
    Case(
        "toleration-no-key-equal",
        sb({"placement": {"tolerations": [{"operator": "Equal", "value": "x"}]}}),
        "spec.placement.tolerations[0].operator",
    ),
    Case(
        "toleration-exists-value",
        sb({"placement": {"tolerations": [{"key": "gpu", "operator": "Exists", "value": "yes"}]}}),
        "spec.placement.tolerations[0].value",
    ),
    Case(
        "toleration-seconds-noschedule",
        sb(
            {
                "placement": {
                    "tolerations": [
                        {"key": "gpu", "operator": "Exists", "effect": "NoSchedule", "tolerationSeconds": 60}
                    ]
                }
            }
        ),
        "spec.placement.tolerations[0].effect",
    ),
    Case(
        "affinity-typo",
        sb({"placement": {"affinity": {"nodeAfinity": {}}}}),
        "spec.placement.affinity.nodeAfinity",
    ),
    Case(
        "affinity-operator",
        sb(
            {
                "placement": {
                    "affinity": _merge(
                        NODE_TERM,
                        {
                            "nodeAffinity": {
                                "requiredDuringSchedulingIgnoredDuringExecution": {
                                    "nodeSelectorTerms": [
                                        {
                                            "matchExpressions": [
                                                {"key": "gpu", "operator": "Equals", "values": ["a"]}
                                            ]
                                        }
                                    ]
                                }
                            }
                        },
                    )
                }
            }
        ),
        f"{REQ}.nodeSelectorTerms[0].matchExpressions[0].operator",
    ),
    Case(
        "affinity-in-no-values",
        sb(
            {
                "placement": {
                    "affinity": {
                        "nodeAffinity": {
                            "requiredDuringSchedulingIgnoredDuringExecution": {
                                "nodeSelectorTerms": [
                                    {"matchExpressions": [{"key": "gpu", "operator": "In"}]}
                                ]
                            }
                        }
                    }
                }
            }
        ),
        f"{REQ}.nodeSelectorTerms[0].matchExpressions[0]",
    ),
    Case(
        "affinity-no-terms",
        sb(
            {
                "placement": {
                    "affinity": {
                        "nodeAffinity": {
                            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": []}
                        }
                    }
                }
            }
        ),
        f"{REQ}.nodeSelectorTerms",
    ),
    Case(
        "anti-affinity-no-topology",
        sb(
            {
                "placement": {
                    "affinity": {
                        "podAntiAffinity": {
                            "requiredDuringSchedulingIgnoredDuringExecution": [
                                {"labelSelector": {"matchLabels": {"app": "x"}}}
                            ]
                        }
                    }
                }
            }
        ),
        f"{ANTI}.requiredDuringSchedulingIgnoredDuringExecution[0].topologyKey",
    ),
    Case(
        "affinity-weight-zero",
        sb(
            {
                "placement": {
                    "affinity": {
                        "podAntiAffinity": {
                            "preferredDuringSchedulingIgnoredDuringExecution": [
                                {"weight": 0, "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname"}}
                            ]
                        }
                    }
                }
            }
        ),
        f"{ANTI}.preferredDuringSchedulingIgnoredDuringExecution[0].weight",
    ),
    Case("affinity-a-list", sb({"placement": {"affinity": [NODE_TERM]}}), "spec.placement.affinity"),
    Case(
        "runtime-class",
        sb({"placement": {"runtimeClassName": "Nvidia_Runtime"}}),
        "spec.placement.runtimeClassName",
    ),
    Case(
        "priority-class",
        sb({"placement": {"priorityClassName": "high priority"}}),
        "spec.placement.priorityClassName",
    ),
    # ---- the rest of a ServeBenchmark
    Case("server-policy", sb({"serverPolicy": "Never"}), "spec.serverPolicy"),
    Case("ready-timeout", sb({"timeouts": {"serverReadySeconds": 5}}), "spec.timeouts.serverReadySeconds"),
    Case("hf-token-secret", sb({"hfTokenSecretRef": {"name": "HF Token"}}), "spec.hfTokenSecretRef.name"),
    Case("pull-policy-case", sb({"images": {"pullPolicy": "always"}}), "spec.images.pullPolicy"),
    # ---- QuantJob
    Case("qj-method", qj({"method": "int4"}), "spec.method"),
    Case(
        "qj-gguf-on-gptq", qj({"method": "gptq", "calibration": {"source": {"path": "/c.txt"}}}), "spec.gguf"
    ),
    Case("qj-gguf-missing", qj({"gguf": DELETE}), "spec.gguf"),
    Case("qj-gptq-no-calibration", qj({"method": "gptq", "gguf": DELETE}), "spec.calibration"),
    Case("qj-gguf-type", qj({"gguf": {"variants": [{"type": "Q4_K_X"}]}}), "spec.gguf.variants[0].type"),
    Case(
        "qj-gguf-duplicate",
        qj({"gguf": {"variants": [{"type": "IQ4_XS"}, {"type": "IQ4_XS", "imatrix": False}]}}),
        "spec.gguf.variants",
    ),
    Case("qj-compressor-on-gguf", qj({"compressor": {"scheme": "W4A16"}}), "spec.compressor"),
    Case(
        "qj-scheme-unknown",
        qj(
            {
                "method": "gptq",
                "gguf": DELETE,
                "compressor": {"scheme": "W4A16G128"},
                "calibration": {"source": {"path": "/c.txt"}},
            }
        ),
        "spec.compressor.scheme",
    ),
    Case("qj-output-dotdot", qj({"output": {"pvc": {"path": "../../tmp/out"}}}), "spec.output.pvc.path"),
    Case("qj-output-two", qj({"output": {"path": "/out"}}), "spec.output"),
    Case("qj-output-s3-removed", qj({"output": r({"s3": "s3://bucket/out"})}), "spec.output.s3"),
    Case(
        "qj-calibration-pvc-dotdot",
        qj(
            {
                "gguf": {"imatrix": True},
                "calibration": {"source": {"pvc": {"claimName": "data", "path": "../calib.txt"}}},
            }
        ),
        "spec.calibration.source.pvc.path",
    ),
    Case(
        "qj-calibration-configmap-name",
        qj(
            {
                "gguf": {"imatrix": True},
                "calibration": {"source": {"configMap": {"name": "Calib", "key": "calib.txt"}}},
            }
        ),
        "spec.calibration.source.configMap.name",
    ),
    Case(
        "qj-calibration-configmap-key",
        qj(
            {
                "gguf": {"imatrix": True},
                "calibration": {"source": {"configMap": {"name": "calib", "key": "data/calib.txt"}}},
            }
        ),
        "spec.calibration.source.configMap.key",
    ),
    Case(
        "qj-calibration-hub-id",
        qj(
            {
                "gguf": {"imatrix": True},
                "calibration": {"source": {"huggingFace": {"id": "wikitext wikitext-2"}}},
            }
        ),
        "spec.calibration.source.huggingFace.id",
    ),
    Case(
        "qj-calibration-two-sources",
        qj(
            {
                "gguf": {"imatrix": True},
                "calibration": {"source": {"path": "/c.txt", "configMap": {"name": "calib", "key": "c.txt"}}},
            }
        ),
        "spec.calibration.source",
    ),
    Case(
        "qj-eval-variant-never-made",
        qj({"evaluation": {"variants": ["IQ4_XS"], "evalscope": {"datasets": [{"name": "gsm8k"}]}}}),
        "spec.evaluation.variants",
    ),
    Case(
        "qj-eval-variants-without-evalscope",
        qj({"evaluation": {"variants": ["Q4_K_M"]}}),
        "spec.evaluation.variants",
    ),
    Case(
        "qj-eval-engine-without-evalscope",
        qj({"evaluation": {"engine": {"name": "llamacpp"}}}),
        "spec.evaluation.engine",
    ),
    Case(
        "qj-eval-dataset-unknown",
        qj({"evaluation": {"evalscope": {"datasets": [{"name": "math500"}]}}}),
        "spec.evaluation.evalscope.datasets[0].name",
    ),
    Case(
        "qj-perplexity-context",
        qj({"evaluation": {"perplexity": {"text": {"path": "/t.txt"}, "contextSize": 8}}}),
        "spec.evaluation.perplexity.contextSize",
    ),
    Case(
        "qj-perplexity-pvc-dotdot",
        qj({"evaluation": {"perplexity": {"text": {"pvc": {"claimName": "data", "path": "wiki/../../x"}}}}}),
        "spec.evaluation.perplexity.text.pvc.path",
    ),
    Case("qj-memory-GB", qj({"resources": {"memory": "2GB"}}), "spec.resources.memory"),
    Case("qj-env-name", qj({"env": [{"name": "HF HOME", "value": "/x"}]}), "spec.env[0].name"),
    Case("qj-backoff", qj({"backoffLimit": 11}), "spec.backoffLimit"),
    Case("qj-timeout", qj({"timeoutSeconds": 10}), "spec.timeoutSeconds"),
    Case("qj-outtype", qj({"gguf": {"outtype": "q4"}}), "spec.gguf.outtype"),
    Case(
        "qj-bits",
        qj(
            {
                "method": "gptq",
                "gguf": DELETE,
                "compressor": {"bits": 1},
                "calibration": {"source": {"path": "/c.txt"}},
            }
        ),
        "spec.compressor.bits",
    ),
    Case(
        "qj-actorder",
        qj(
            {
                "method": "gptq",
                "gguf": DELETE,
                "compressor": {"actorder": "dynamic"},
                "calibration": {"source": {"path": "/c.txt"}},
            }
        ),
        "spec.compressor.actorder",
    ),
    Case(
        "qj-toleration-effect",
        qj({"placement": {"tolerations": [{"key": "gpu", "effect": "Never"}]}}),
        "spec.placement.tolerations[0].effect",
    ),
    Case("qj-snake-case", qj({"output": r({"pvc": {"claim_name": "models"}})}), "spec.output.pvc.claim_name"),
    Case("qj-quoted-false", qj({"gguf": {"imatrix": "false"}}), "spec.gguf.imatrix"),
    # ---- fields an engine, a generator or a kind cannot honour (issue 9: refused, not ignored)
    Case("hub-file-vllm", sb({"model": {"huggingFace": {"file": "m-Q4_K_M.gguf"}}}), "spec.model.huggingFace.file"),
    Case("hub-revision-llamacpp", sb({"model": {"huggingFace": {"revision": "v1"}}, **LLAMA}),
         "spec.model.huggingFace.revision"),
    Case("qj-hub-file", qj({"model": {"huggingFace": {"file": "model.safetensors"}}}), "spec.model.huggingFace.file"),
    Case("load-custom-no-path", sb({"load": {"dataset": "custom"}}), "spec.load.datasetPath"),
    Case("load-random-with-path", sb({"load": {"datasetPath": "/p.txt"}}), "spec.load.datasetPath"),
    Case("load-dataset-prefix", sb({"load": {"dataset": "openqa", "prefixLength": 64}}), "spec.load.prefixLength"),
    Case("vllm-bench-no-stream", sb({"load": {"generator": "vllm-bench", "stream": False}}), "spec.load.generator"),
    Case("vllm-eagle-no-draft", sb({"engine": {"speculative": {"method": "eagle3"}}}),
         "spec.engine.speculative.model"),
    Case("llamacpp-eagle1", sb({"engine": r({"name": "llamacpp", "speculative": {"method": "eagle", "model": "/d"}})}),
         "spec.engine.speculative"),
    Case("llamacpp-draft-no-model", sb({"engine": r({"name": "llamacpp", "speculative": {"method": "draft-model"}})}),
         "spec.engine.speculative"),
    Case("sglang-draft-max", sb({"engine": r({"name": "sglang", "speculative": {"method": "ngram", "draftMax": 4}})}),
         "spec.engine.speculative"),
    Case("llamacpp-gpu-memory", sb({"engine": r({"name": "llamacpp", "gpuMemoryUtilization": 0.9})}), "spec.engine"),
    Case("sb-quantize-image", sb({"images": {"quantize": "q:1"}}), "spec.images.quantize"),
    Case("endpoint-hf-token", sb({"model": DELETE, "endpoint": {"url": "http://e:8000", "servedModelName": "m",
                                  "tokenizer": "/t"}, "hfTokenSecretRef": {"name": "hf"}}), "spec.endpoint"),
    Case("hf-split-with-at", qj({"gguf": {"imatrix": True}, "calibration": {"source": {
        "huggingFace": {"id": "org/data", "split": "train@x"}}}}), "spec.calibration.source.huggingFace.split"),
]  # fmt: skip

VALID: list[Case] = [
    Case(  # llama-server -np 64 -c 4096 -kvu: one KV cache shared by the slots
        "llamacpp-slot-context-unified",
        sb({**LLAMA, "engine": r({"name": "llamacpp", "maxModelLen": 4096, "llamacpp": {"parallelSlots": 64},
                                  "extraArgs": ["-kvu"]}),
            "load": {"maxPromptLength": 1024, "maxTokens": 1024}}),
        None,
    ),
    Case("dotted-name", sb(name="qwen3.5-4b-vllm-mtp"), None),
    Case("name-253-chars", sb(name="q" * 253), None),
    Case("digit-first-name", sb(name="0-bench.1"), None),
    Case("llamacpp-on-cpu", sb({**LLAMA, "resources": {"gpus": 0}}), None),
    Case("quantities-as-integers", sb({"resources": {"cpu": 8, "memory": 68719476736}}), None),
    Case(
        "quantities-suffixes", sb({"resources": {"cpu": "500m", "memory": "1.5Gi"}, "shmSize": "512M"}), None
    ),
    Case("quantity-exponent", sb({"resources": {"memory": "1e9"}, "shmSize": "8E"}), None),
    Case(
        "node-selector-prefixed",
        sb(
            {
                "placement": {
                    "nodeSelector": {
                        "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3",
                        "example.com/empty": "",
                    }
                }
            }
        ),
        None,
    ),
    Case("tolerate-everything", sb({"placement": {"tolerations": [{"operator": "Exists"}]}}), None),
    Case(
        "toleration-noexecute-seconds",
        sb(
            {
                "placement": {
                    "tolerations": [
                        {
                            "key": "node.kubernetes.io/unreachable",
                            "operator": "Exists",
                            "effect": "NoExecute",
                            "tolerationSeconds": 300,
                        }
                    ]
                }
            }
        ),
        None,
    ),
    Case(
        "affinity-full",
        sb(
            {
                "placement": {
                    "affinity": _merge(
                        NODE_TERM,
                        {
                            "podAntiAffinity": {
                                "preferredDuringSchedulingIgnoredDuringExecution": [
                                    {
                                        "weight": 100,
                                        "podAffinityTerm": {
                                            "labelSelector": {
                                                "matchExpressions": [{"key": "app", "operator": "Exists"}]
                                            },
                                            "topologyKey": "kubernetes.io/hostname",
                                        },
                                    }
                                ]
                            }
                        },
                    )
                }
            }
        ),
        None,
    ),
    Case("integral-float", sb({"engine": {"tensorParallelSize": 2.0}, "resources": {"gpus": 2}}), None),
    Case("nulls-pruned", sb({"serverPolicy": None, "load": {"rate": None}}), None),
    Case(
        "context-exactly-full",
        sb(
            {
                "load": DELETE,
                "engine": {"maxModelLen": 34848},
                "contextSweep": {"depths": [0, 32768], "promptTokens": 2048, "genTokens": 32},
            }
        ),
        None,
    ),
    Case(
        "pvc-path-dots-in-names",
        sb({"model": r({"pvc": {"claimName": "models.v2", "path": "a/..b/c.d/"}})}),
        None,
    ),
    Case("hub-id-no-namespace", sb({"model": {"huggingFace": {"id": "gpt2"}}}), None),
    Case(
        "labels-and-annotations",
        sb(
            meta={
                "labels": {"app.kubernetes.io/part-of": "bench", "empty": ""},
                "annotations": {"example.com/note": "free text: anything"},
            }
        ),
        None,
    ),
    Case(
        "eval-own-data",
        sb({"evaluations": [{"datasets": [{"name": "general_qa", "localPath": "/data/qa"}]}]}),
        None,
    ),
    Case(
        "qj-scheme-lowercase",
        qj(
            {
                "method": "gptq",
                "gguf": DELETE,
                "compressor": {"scheme": "w4a16"},
                "calibration": {"source": {"path": "/c.txt"}},
            }
        ),
        None,
    ),
    Case(
        "qj-eval-variants-named",
        qj(
            {
                "gguf": {"imatrix": True, "variants": [{"type": "IQ4_XS"}, {"type": "Q4_K_M"}]},
                "calibration": {"source": {"configMap": {"name": "calib", "key": "c.txt"}}},
                "evaluation": {
                    "variants": ["iq4_xs+imatrix", "F16"],
                    "evalscope": {"datasets": [{"name": "math_500"}]},
                },
            }
        ),
        None,
    ),
    Case("llamacpp-hub-file", sb({"model": {"huggingFace": {"id": "org/m-GGUF", "file": "m-Q4_K_M.gguf"}},
                                  **LLAMA}), None),
    Case("vllm-revision", sb({"model": {"huggingFace": {"revision": "main"}}}), None),
    Case("load-completions-custom", sb({"load": {"dataset": "custom", "datasetPath": "/p.txt",
                                                 "endpoint": "completions", "stream": False}}), None),
    Case("sglang-eagle-own-heads", sb({"engine": r({"name": "sglang", "speculative": {"method": "eagle"}})}), None),
    Case("llamacpp-mtp", sb({"engine": r({"name": "llamacpp", "speculative": {"method": "mtp", "draftMax": 3}})}),
         None),
    Case("qj-hf-calibration", qj({"gguf": {"imatrix": True}, "calibration": {"source": {"huggingFace": {
        "id": "Salesforce/wikitext", "subset": "wikitext-2-raw-v1", "split": "test", "column": "text"}}}}), None),
]  # fmt: skip

# Documents refused before any schema applies: (id, YAML text, what the local message must say)
RAW_INVALID: list[tuple[str, str, str]] = [
    ("yaml-list", "- apiVersion: servelab.dev/v1alpha1\n  kind: QuantJob\n", "document 1: is a list"),
    ("yaml-scalar", "just a string\n", "document 1: is a str scalar"),
    ("kind-misspelt", "apiVersion: servelab.dev/v1alpha1\nkind: Servebenchmark\nmetadata: {name: x}\nspec: {}\n",
     "unknown kind 'Servebenchmark'"),
    ("api-version-wrong", "apiVersion: servelab.io/v1\nkind: ServeBenchmark\nmetadata: {name: x}\nspec: {}\n",
     "does not serve ServeBenchmark"),
    ("kind-missing", "apiVersion: servelab.dev/v1alpha1\nmetadata: {name: x}\nspec: {}\n", "kind not set"),
    ("alias-bomb", "a: &a [x,x,x,x,x,x,x,x,x]\n" + "".join(
        f"{c}: &{c} [{','.join(['*' + p] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi", strict=True)),
     "alias bomb"),
]  # fmt: skip
