"""SGLang: `python3 -m sglang.launch_server --model-path MODEL ...` (metrics need --enable-metrics)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from servelab.engines.base import (
    GIB,
    CelRule,
    EngineAdapter,
    MetricNames,
    ServedModel,
    flag,
    flag_value,
    get_json,
    last_match,
)

if TYPE_CHECKING:
    from servelab.api.engine import Engine

ALGORITHMS = {
    "eagle": "EAGLE",
    "eagle3": "EAGLE3",
    "mtp": "NEXTN",
    "nextn": "NEXTN",
    "ngram": "NGRAM",
    "draft-model": "STANDALONE",
}
MODULE = "sglang.launch_server"


class Sglang(EngineAdapter):
    name = "sglang"
    title = "SGLang"
    default_port = 30000
    default_image = "lmsysorg/sglang:v0.5.5"
    metric_names = MetricNames(
        prompt_tokens=("sglang:prompt_tokens_total",),
        generation_tokens=("sglang:generation_tokens_total",),
        requests=("sglang:num_requests_total",),
        ttft_sum=("sglang:time_to_first_token_seconds_sum",),
        ttft_count=("sglang:time_to_first_token_seconds_count",),
        running=("sglang:num_running_reqs",),
        waiting=("sglang:num_queue_reqs",),
    )
    owned_flags = ("--host", "--port", "--served-model-name", "--model-path", "--model", "--tokenizer-path",
                   "--api-key")  # fmt: skip

    hub_revision = True  # --revision
    modelscope_env = (
        "SGLANG_USE_MODELSCOPE",
        "true",
    )  # model.modelScope: the model id, fetched by the engine from ModelScope

    def engine_rules(self) -> list[CelRule]:
        return [(
            "self.name != 'sglang' || !has(self.speculative) || has(self.speculative.model) || "
            "!(self.speculative.method in ['eagle3', 'draft-model'])",
            "engine.speculative.model (the draft model) is required by sglang for methods eagle3 and "
            "draft-model",
            ".speculative.model",
        ), (
            "self.name != 'sglang' || !has(self.speculative) || (!has(self.speculative.draftMax) && "
            "!has(self.speculative.draftMin) && !has(self.speculative.draftTensorParallelSize))",
            "engine.speculative.draftMax, draftMin and draftTensorParallelSize are not sglang options (use "
            "numSteps, eagleTopk, numDraftTokens)",
            ".speculative",
        )]  # fmt: skip

    def owns(self, command: list[str]) -> bool:
        return MODULE in command[:3]

    def gpu_memory(self, log: str) -> tuple[int, str] | None:
        """'Load weight end. ... mem usage=X GB' (weights) plus 'KV Cache is allocated. dtype: ..., #tokens: N, K
        size: A GB, V size: B GB' (or 'KV size: C GB' for MLA models); SGLang's GB are GiB (bytes / 2**30)."""
        weights = last_match(r"Load weight end\..*?mem usage=([0-9.]+) GB", log)
        if weights is None:
            return None
        kv = last_match(
            r"KV Cache is allocated\..*?(?:K size: ([0-9.]+) GB, V size: ([0-9.]+) GB|KV size: ([0-9.]+) GB)",
            log,
        )
        kv_gb = (float(kv[1]) + float(kv[2]) if kv[1] else float(kv[3])) if kv else 0.0
        said = f"server log: weights mem usage {weights[1]} GB" + (f", KV cache {kv_gb:.2f} GB" if kv else "")
        return int((float(weights[1]) + kv_gb) * GIB), said

    def args(self, engine: Engine, model: ServedModel, host: str, port: int) -> list[str]:
        a = ["python3", "-m", MODULE, "--model-path", model.location]
        flag(a, "--revision", model.revision)
        flag(a, "--tokenizer-path", model.tokenizer)
        if engine.tensor_parallel_size != 1:
            flag(a, "--tp-size", engine.tensor_parallel_size)
        flag(a, "--tool-call-parser", engine.tool_call_parser)
        flag(a, "--reasoning-parser", engine.reasoning_parser)
        if engine.speculative:
            s = engine.speculative
            flag(a, "--speculative-algorithm", ALGORITHMS[s.method])
            flag(a, "--speculative-draft-model-path", s.model)
            flag(a, "--speculative-num-steps", s.num_steps)
            flag(a, "--speculative-eagle-topk", s.eagle_topk)
            flag(a, "--speculative-num-draft-tokens", s.num_draft_tokens or s.num_speculative_tokens)
        flag(a, "--mem-fraction-static", engine.gpu_memory_utilization)
        flag(a, "--context-length", engine.max_model_len)
        flag(a, "--quantization", engine.quantization)
        flag(a, "--dtype", engine.dtype)
        flag(a, "--kv-cache-dtype", engine.kv_cache_dtype)
        flag(a, "--chat-template", engine.chat_template)
        flag(a, "--trust-remote-code", engine.trust_remote_code)
        flag(a, "--served-model-name", engine.served_model_name)
        a += ["--host", host, "--port", str(port), "--enable-metrics"]
        if engine.api_key_secret_ref:
            # $(VAR) is expanded from the container's environment by the kubelet (and by the local executor)
            a += ["--api-key", "$(SGLANG_API_KEY)"]
        return a + list(engine.extra_args)

    def secret_env(self, engine: Engine) -> dict[str, tuple[str, str]]:
        ref = engine.api_key_secret_ref
        return {"SGLANG_API_KEY": (ref.name, ref.key)} if ref else {}

    def concurrency_limit(
        self, root_url: str | None, command: list[str] | None
    ) -> tuple[int | None, str | None]:
        """SGLang runs at most `max_running_requests` at a time (/get_server_info states the value in
        effect, set by --max-running-requests or derived from the KV pool); the rest queue
        (`sglang:num_queue_reqs`)."""
        value = flag_value(command, "--max-running-requests")
        setting = (
            f"sglang --max-running-requests {value}" if value else "SGLang's default --max-running-requests"
        )
        info = get_json(root_url.rstrip("/") + "/get_server_info") if root_url else None
        stated = None
        if isinstance(info, dict):
            states = info.get("internal_states")
            inner = states[0] if isinstance(states, list) and states and isinstance(states[0], dict) else {}
            stated = inner.get("max_running_requests") or info.get("max_running_requests")
        if isinstance(stated, int) and stated > 0:
            return stated, f"{setting} (max_running_requests {stated})"
        if value and value.isdigit():
            return int(value), setting
        return None, setting if command is not None else None


ADAPTER = Sglang
