"""`servelab worker quantize`: llm-compressor `oneshot` -> a compressed-tensors checkpoint (+ perplexity).

Runs in the `llmcompressor` image/environment (torch, transformers, llmcompressor, compressed-tensors).
Methods and their default preset schemes (compressed-tensors' PRESET_SCHEMES):

- `gptq`        GPTQModifier, W4A16 (4-bit int weights, group 128, symmetric, actorder static).
- `awq`         AWQModifier + QuantizationModifier, W4A16_ASYM (4-bit, group 128, asymmetric).
- `fp8-dynamic` QuantizationModifier, FP8_DYNAMIC (FP8 weights per channel, dynamic per-token FP8
                activations); needs no calibration data.
- `w8a8`        SmoothQuantModifier (strength 0.8, `--smoothquant 0` to skip) + GPTQModifier, W8A8 (int8).
- `w4a8`        GPTQModifier, W4A8 (4-bit group-128 weights, dynamic int8 activations).

`--bits`, `--group-size` (-1 = per output channel), `--symmetric/--asymmetric` and `--actorder`
override the preset's weight arguments; the resulting scheme is passed as `config_groups`, so the
saved `quantization_config` says exactly what was asked.

Calibration data (`--calibration PATH`): a `.jsonl` file (one object per line with `messages`,
`text`, `prompt` + `response`/`completion`, or the field named by `--text-field`), a `.json` list
of such objects, a directory saved with `datasets.Dataset.save_to_disk` (a DatasetDict's `train`
split, else its first), or any other file read as plain text and cut into `--max-seq-length` token
windows. Samples are tokenized here (chat-templated when they have `messages`), truncated to
`--max-seq-length`, and the first `--num-samples` are used, in file order.

Output: `<out>/` holds the checkpoint saved with `save_compressed=True` plus the tokenizer;
`<out>/result.json` (or `--result`) gets the compact result:
`{kind, ok, method, scheme, variants: [base?, quantized], reason?, durationSeconds, ...}`, each variant a
`QuantVariantResult` (wire form). With `--eval-text`, perplexity (and the mean KL divergence against
the unquantized model) is measured on the HF model in memory before and after quantization, with a
plain torch loop over `--eval-ctx`-token chunks. Any exception exits 1 with `reason`
"ExceptionClass: message" in the published result.

CPU without an accelerator: llm-compressor 0.14's AWQ pins its cached activations with
`Tensor.pin_memory()` unconditionally (`IntermediatesCache.pin_memory` in
llmcompressor/pipelines/cache.py, called for every mapping from `AWQModifier._apply_smoothing`),
which raises "Cannot access accelerator device when none is available" with a +cpu torch and
"Found no NVIDIA driver on your system" with PyPI's CUDA torch. `apply_cpu_guards()` replaces that
method with a no-op while no accelerator is present (recorded as `cpuGuards` in the result);
pinning only speeds up host-to-device copies, so skipping it changes no result.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from servelab.api.results import QuantVariantResult

METHODS = ("gptq", "awq", "fp8-dynamic", "w8a8", "w4a8")
DEFAULT_SCHEME = {
    "gptq": "W4A16",
    "awq": "W4A16_ASYM",
    "fp8-dynamic": "FP8_DYNAMIC",
    "w8a8": "W8A8",
    "w4a8": "W4A8",
}
NEEDS_CALIBRATION = {"gptq", "awq", "w8a8", "w4a8"}
ACTORDER = ("static", "group", "weight", "none")
TEXT_FIELDS = ("text", "content", "prompt", "question", "query", "instruction")
# Keep the in-memory base log-probabilities for the KL divergence under this many bytes.
KL_MEMORY_LIMIT = 1 << 30


class QuantizeError(RuntimeError):
    """A quantization request that cannot be carried out as given."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", type=Path, help="Hugging Face model directory to quantize")
    src.add_argument("--hf-repo", default=None, help="a Hugging Face Hub model to download and quantize")
    p.add_argument("--revision", default=None, help="the --hf-repo branch, tag or commit")
    p.add_argument("--method", choices=METHODS, required=True, help="quantization method")
    p.add_argument("--out", type=Path, required=True, help="output directory for the quantized checkpoint")
    p.add_argument("--name", default=None, help="variant name (default: from scheme and group, W4A16-G128)")
    p.add_argument("--scheme", default=None, help="preset scheme (default per method: " + _defaults() + ")")
    p.add_argument("--bits", type=int, default=None, help="weight bits, overriding the scheme's")
    p.add_argument("--group-size", type=int, default=None, help="weight group size; -1 = per channel")
    sym = p.add_mutually_exclusive_group()
    sym.add_argument("--symmetric", dest="symmetric", action="store_true", default=None)
    sym.add_argument("--asymmetric", dest="symmetric", action="store_false")
    p.add_argument("--actorder", choices=ACTORDER, default=None, help="GPTQ activation ordering")
    p.add_argument("--dampening-frac", type=float, default=None, help="GPTQ Hessian dampening fraction")
    p.add_argument(
        "--smoothquant",
        type=float,
        default=0.8,
        help="SmoothQuant strength before w8a8 (0 = no SmoothQuant)",
    )
    p.add_argument("--ignore", nargs="*", default=["lm_head"], help="modules left unquantized")
    p.add_argument("--targets", nargs="+", default=["Linear"], help="target module types/names")
    p.add_argument("--calibration", default=None,
                   help="calibration data (jsonl/json/text/dir, or hf:ID[:SUBSET]@SPLIT[#COLUMN])")  # fmt: skip
    p.add_argument("--num-samples", type=int, default=512, help="calibration samples")
    p.add_argument("--max-seq-length", type=int, default=2048, help="tokens per calibration sample")
    p.add_argument("--text-field", default=None, help="field of jsonl/dataset records holding the text")
    p.add_argument(
        "--no-chat-template", action="store_true", help="do not apply the chat template to `messages`"
    )
    p.add_argument("--pipeline", default=None, help="llm-compressor calibration pipeline (default: its own)")
    p.add_argument("--eval-text", default=None, help="text for perplexity of base and quantized (or hf:...)")
    p.add_argument("--eval-ctx", type=int, default=512, help="tokens per perplexity chunk")
    p.add_argument("--eval-chunks", type=int, default=None, help="perplexity chunks at most (default: all)")
    p.add_argument("--no-kld", action="store_true", help="skip the KL divergence against the base model")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--result", default=None, help="result sink: file:PATH or configmap:NS/NAME/KEY")


def _defaults() -> str:
    return ", ".join(f"{m} {s}" for m, s in DEFAULT_SCHEME.items())


# --------------------------------------------------------------------------- recipe


def weight_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The weight QuantizationArgs fields the arguments override."""
    out: dict[str, Any] = {}
    if args.bits is not None:
        if not 2 <= args.bits <= 8:
            raise QuantizeError(f"--bits must be 2..8, not {args.bits}")
        out["num_bits"] = args.bits
    if args.group_size is not None:
        if args.group_size == -1:
            out.update(strategy="channel", group_size=None)
        elif args.group_size >= 1:
            out.update(strategy="group", group_size=args.group_size)
        else:
            raise QuantizeError(f"--group-size must be -1 or positive, not {args.group_size}")
    if args.symmetric is not None:
        out["symmetric"] = args.symmetric
    return out


def build_scheme(scheme_name: str, targets: list[str], overrides: dict[str, Any]) -> Any:
    """compressed-tensors QuantizationScheme: the preset with the weight overrides applied."""
    from compressed_tensors.quantization import QuantizationScheme, preset_name_to_scheme  # type: ignore[import-not-found]

    try:
        scheme = preset_name_to_scheme(scheme_name, targets)
    except KeyError as exc:
        raise QuantizeError(str(exc).strip("'\"")) from exc
    if overrides:
        if scheme.weights is None:
            raise QuantizeError(f"scheme {scheme_name} quantizes no weights; cannot override {overrides}")
        data = scheme.model_dump()
        data["weights"].update(overrides)
        scheme = QuantizationScheme.model_validate(data)
    return scheme


def build_recipe(args: argparse.Namespace, scheme_name: str) -> list[Any]:
    """The llm-compressor modifiers for the method."""
    scheme = build_scheme(scheme_name, list(args.targets), weight_overrides(args))
    common: dict[str, Any] = {
        "targets": list(args.targets),
        "ignore": list(args.ignore),
        "config_groups": {"group_0": scheme},
    }
    method = args.method
    if method in ("gptq", "w8a8", "w4a8"):
        from llmcompressor.modifiers.gptq import GPTQModifier  # type: ignore[import-not-found]

        gptq: dict[str, Any] = dict(common)
        if args.actorder is not None:
            gptq["actorder"] = None if args.actorder == "none" else args.actorder
        if args.dampening_frac is not None:
            gptq["dampening_frac"] = args.dampening_frac
        recipe: list[Any] = []
        if method == "w8a8" and args.smoothquant > 0:
            from llmcompressor.modifiers.transform.smoothquant import SmoothQuantModifier  # type: ignore[import-not-found]

            recipe.append(SmoothQuantModifier(smoothing_strength=args.smoothquant))
        recipe.append(GPTQModifier(**gptq))
        return recipe
    from llmcompressor.modifiers.quantization import QuantizationModifier  # type: ignore[import-not-found]

    if args.actorder is not None or args.dampening_frac is not None:
        raise QuantizeError("--actorder and --dampening-frac apply to GPTQ methods (gptq, w8a8, w4a8) only")
    if method == "awq":
        from llmcompressor.modifiers.transform.awq import AWQModifier  # type: ignore[import-not-found]

        return [AWQModifier(), QuantizationModifier(**common)]
    if method == "fp8-dynamic":
        return [QuantizationModifier(**common)]
    raise QuantizeError(f"unknown method {method!r}")


def variant_name(scheme_name: str, scheme: Any, overridden: bool = False) -> str:
    """W4A16-G128, W8A8, FP8-DYNAMIC, W4A16-ASYM-G64 ...

    The preset's name, plus the group size; when arguments overrode the preset's weights, the name
    is rebuilt from the resulting scheme instead (W8A16-ASYM-G64 for `--bits 8 --group-size 64
    --asymmetric` on W4A16)."""
    weights = getattr(scheme, "weights", None)
    if overridden and weights is not None:
        kind = "FP" if str(getattr(weights, "type", "int")) in ("float", "QuantizationType.FLOAT") else ""
        acts = getattr(scheme, "input_activations", None)
        abits = getattr(acts, "num_bits", 16) if acts is not None else 16
        name = f"W{kind}{weights.num_bits}A{abits}"
        if not getattr(weights, "symmetric", True):
            name += "-ASYM"
    else:
        name = scheme_name.upper().replace("_", "-")
    if weights is not None and getattr(weights, "group_size", None):
        name += f"-G{weights.group_size}"
    return name


# --------------------------------------------------------------------------- calibration data


def _record_text(record: dict[str, Any], tokenizer: Any, field: str | None, chat: bool) -> str:
    if field:
        if field not in record:
            raise QuantizeError(f"calibration record has no field {field!r} (fields: {sorted(record)})")
        value = record[field]
        if isinstance(value, list) and chat:
            return str(tokenizer.apply_chat_template(value, tokenize=False))
        return str(value)
    if "messages" in record and isinstance(record["messages"], list):
        if chat and getattr(tokenizer, "chat_template", None):
            return str(tokenizer.apply_chat_template(record["messages"], tokenize=False))
        return "\n".join(str(m.get("content", "")) for m in record["messages"] if isinstance(m, dict))
    for key in ("response", "completion", "answer", "output"):
        if key in record:
            prompt = next((record[k] for k in TEXT_FIELDS if k in record), "")
            return f"{prompt}\n{record[key]}".strip()
    for key in TEXT_FIELDS:
        if key in record:
            return str(record[key])
    raise QuantizeError(f"calibration record has none of messages/{'/'.join(TEXT_FIELDS)}: {sorted(record)}")


def _read_records(path: Path) -> list[dict[str, Any]] | None:
    """Records of a jsonl/json file or a saved datasets directory; None for plain text."""
    if path.is_dir():
        import datasets  # type: ignore[import-not-found]

        loaded = datasets.load_from_disk(str(path))
        if isinstance(loaded, datasets.DatasetDict):
            split = "train" if "train" in loaded else next(iter(loaded))
            loaded = loaded[split]
        return [dict(r) for r in loaded]
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        records = []
        with path.open(encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except ValueError as exc:
                    raise QuantizeError(f"{path}:{lineno}: not JSON: {exc}") from exc
                records.append(obj if isinstance(obj, dict) else {"text": str(obj)})
        return records
    if suffix == ".json":
        data = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(data, dict):
            data = next((v for v in data.values() if isinstance(v, list)), [data])
        return [r if isinstance(r, dict) else {"text": str(r)} for r in data]
    return None


def load_calibration(
    path: Path, tokenizer: Any, num_samples: int, max_seq_length: int, field: str | None, chat: bool
) -> Any:
    """A `datasets.Dataset` of tokenized samples (input_ids, attention_mask)."""
    import datasets

    if not path.exists():
        raise FileNotFoundError(f"calibration data {path} does not exist")
    records = _read_records(path)
    samples: list[list[int]] = []
    if records is None:
        ids = tokenizer(path.read_text(encoding="utf-8", errors="replace"), add_special_tokens=False)[
            "input_ids"
        ]
        for start in range(0, len(ids), max_seq_length):
            window = ids[start : start + max_seq_length]
            if len(window) >= min(16, max_seq_length):
                samples.append(window)
            if len(samples) >= num_samples:
                break
    else:
        for record in records:
            text = _record_text(record, tokenizer, field, chat)
            ids = tokenizer(text, add_special_tokens=False, truncation=True, max_length=max_seq_length)[
                "input_ids"
            ]
            if ids:
                samples.append(ids)
            if len(samples) >= num_samples:
                break
    if not samples:
        raise QuantizeError(f"no calibration samples in {path}")
    return datasets.Dataset.from_dict(
        {"input_ids": samples, "attention_mask": [[1] * len(s) for s in samples]}
    )


# --------------------------------------------------------------------------- perplexity


def eval_chunks(tokenizer: Any, text: str, ctx: int, max_chunks: int) -> list[list[int]]:
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    chunks = [ids[i : i + ctx] for i in range(0, len(ids) - ctx + 1, ctx)][:max_chunks]
    if not chunks:
        raise QuantizeError(f"evaluation text has {len(ids)} tokens, fewer than one {ctx}-token chunk")
    return chunks


def measure(
    model: Any, chunks: list[list[int]], base_logprobs: list[Any] | None = None, keep: bool = False
) -> dict[str, Any]:
    """Perplexity (+/- from the standard error of the mean NLL) and, given the base model's
    log-probabilities, the mean KL divergence KL(base || model) per token.

    Every token after the first of each chunk is scored (llama-perplexity scores the second half only;
    the numbers are comparable between variants here, not with llama.cpp's)."""
    import torch  # type: ignore[import-not-found]

    nll_sum = 0.0
    nll_sq = 0.0
    count = 0
    kl_sum = 0.0
    kept: list[Any] = []
    device = next(model.parameters()).device
    with torch.no_grad():
        for i, chunk in enumerate(chunks):
            ids = torch.tensor([chunk], device=device)
            logits = model(input_ids=ids).logits[0, :-1].float()
            logprobs = torch.log_softmax(logits, dim=-1)
            target = ids[0, 1:]
            nll = -logprobs.gather(1, target[:, None])[:, 0]
            nll_sum += float(nll.sum())
            nll_sq += float((nll * nll).sum())
            count += nll.numel()
            if base_logprobs is not None:
                base = base_logprobs[i].float().to(device)
                kl_sum += float((base.exp() * (base - logprobs)).sum())
            if keep:
                kept.append(logprobs.to(torch.bfloat16).cpu())
    mean_nll = nll_sum / count
    var = max(nll_sq / count - mean_nll * mean_nll, 0.0)
    ppl = math.exp(mean_nll)
    out: dict[str, Any] = {
        "perplexity": ppl,
        "perplexity_error": ppl * math.sqrt(var / max(count - 1, 1)),
        "tokens": count,
    }
    if base_logprobs is not None:
        out["kl_divergence"] = kl_sum / count
    if keep:
        out["logprobs"] = kept
    return out


# --------------------------------------------------------------------------- CPU guard


def apply_cpu_guards() -> list[str]:
    """Make llm-compressor 0.14 run on a machine without an accelerator; return what was patched.

    `IntermediatesCache.pin_memory` (llmcompressor/pipelines/cache.py) calls `Tensor.pin_memory()`
    on every cached CPU tensor, which needs an accelerator; AWQ calls it for each mapping. Pinned
    memory only makes host-to-device copies faster, so without an accelerator it becomes a no-op.
    """
    import torch

    if torch.accelerator.is_available():
        return []
    from llmcompressor.pipelines import cache  # type: ignore[import-not-found]

    cls = cache.IntermediatesCache
    if getattr(cls.pin_memory, "_servelab_cpu_guard", False):
        return ["IntermediatesCache.pin_memory"]

    def pin_memory(self: Any, batch_index: int, input_names: list[str] | None = None) -> None:
        return None

    pin_memory._servelab_cpu_guard = True  # type: ignore[attr-defined]
    cls.pin_memory = pin_memory  # type: ignore[method-assign]
    return ["IntermediatesCache.pin_memory"]


# --------------------------------------------------------------------------- pipeline


def dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def quantization_config(out: Path) -> dict[str, Any] | None:
    config = json.loads((out / "config.json").read_text())
    qc = config.get("quantization_config")
    return qc if isinstance(qc, dict) else None


def fetch_inputs(args: argparse.Namespace) -> None:
    """Hub inputs made local (servelab.workers.hub): the model repository into the HF cache, a data set's
    split as a .jsonl of rows (calibration; a few times --num-samples, empty rows are skipped) or as text."""
    from servelab.workers import hub

    if args.hf_repo:
        args.model = hub.download_model(args.hf_repo, args.revision)
    if args.calibration is not None:
        args.calibration = hub.resolve_rows(str(args.calibration), limit=4 * args.num_samples)
    if args.eval_text is not None:
        args.eval_text = hub.resolve_text(str(args.eval_text))


def run_pipeline(args: argparse.Namespace, result: dict[str, Any]) -> None:
    """Quantize and measure, filling `result` as it goes (so a crash still publishes what was done)."""
    fetch_inputs(args)
    out: Path = args.out
    scheme_name = (args.scheme or DEFAULT_SCHEME[args.method]).upper()
    result["scheme"] = scheme_name
    # cheap checks first: a wrong path should not wait for torch and the model to load
    if not (args.model / "config.json").is_file():
        raise FileNotFoundError(f"{args.model} is not a Hugging Face model directory (no config.json)")
    if args.method in NEEDS_CALIBRATION:
        if args.calibration is None:
            raise QuantizeError(f"method {args.method} needs --calibration data")
        if not args.calibration.exists():
            raise FileNotFoundError(f"calibration data {args.calibration} does not exist")
    if args.eval_text is not None and not args.eval_text.is_file():
        raise FileNotFoundError(f"evaluation text {args.eval_text} does not exist")
    weight_overrides(args)

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer  # type: ignore[import-not-found]

    torch.manual_seed(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    result["cpuGuards"] = apply_cpu_guards()

    started = time.monotonic()
    tokenizer = AutoTokenizer.from_pretrained(str(args.model))
    model = AutoModelForCausalLM.from_pretrained(str(args.model), dtype="auto")
    model.eval()
    result["loadSeconds"] = round(time.monotonic() - started, 3)

    chunks: list[list[int]] | None = None
    base_logprobs: list[Any] | None = None
    # a Hub model's base is the repository (what a scoring server loads), not this pod's cached copy
    base = QuantVariantResult(
        name="BASE", path=args.hf_repo or str(args.model), size_bytes=_weights_size(args.model)
    )
    if args.eval_text is not None:
        chunks = eval_chunks(
            tokenizer, args.eval_text.read_text(encoding="utf-8"), args.eval_ctx, args.eval_chunks
        )
        vocab = int(model.config.vocab_size)
        keep = not args.no_kld and len(chunks) * args.eval_ctx * vocab * 2 <= KL_MEMORY_LIMIT
        if not args.no_kld and not keep:
            result.setdefault("notes", []).append("KL divergence skipped: base log-probabilities too large")
        m = measure(model, chunks, keep=keep)
        base.perplexity, base.perplexity_error = m["perplexity"], m["perplexity_error"]
        base_logprobs = m.get("logprobs")
        result["evalTokens"] = m["tokens"]
    result["base"] = base.to_wire()

    recipe = build_recipe(args, scheme_name)
    scheme = recipe[-1].config_groups["group_0"]
    name = args.name or variant_name(scheme_name, scheme, overridden=bool(weight_overrides(args)))
    result["name"] = name
    kwargs: dict[str, Any] = {"model": model, "tokenizer": tokenizer, "recipe": recipe}
    if args.pipeline:
        kwargs["pipeline"] = args.pipeline
    if args.method in NEEDS_CALIBRATION:
        calib_started = time.monotonic()
        dataset = load_calibration(
            args.calibration,
            tokenizer,
            args.num_samples,
            args.max_seq_length,
            args.text_field,
            not args.no_chat_template,
        )
        result["calibration"] = {
            "path": str(args.calibration),
            "samples": len(dataset),
            "tokens": sum(len(x) for x in dataset["input_ids"]),
            "maxSeqLength": args.max_seq_length,
            "prepareSeconds": round(time.monotonic() - calib_started, 3),
        }
        kwargs.update(
            dataset=dataset,
            num_calibration_samples=len(dataset),
            max_seq_length=args.max_seq_length,
            shuffle_calibration_samples=False,
        )

    from llmcompressor import oneshot  # type: ignore[import-not-found]

    q_started = time.monotonic()
    model = oneshot(**kwargs)
    quant_seconds = time.monotonic() - q_started

    variant = QuantVariantResult(name=name, path=str(out), duration_seconds=round(quant_seconds, 3))
    if chunks is not None:
        m = measure(model, chunks, base_logprobs=base_logprobs)
        variant.perplexity, variant.perplexity_error = m["perplexity"], m["perplexity_error"]
        variant.kl_divergence = m.get("kl_divergence")

    save_started = time.monotonic()
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out), save_compressed=True)
    tokenizer.save_pretrained(str(out))
    result["saveSeconds"] = round(time.monotonic() - save_started, 3)
    variant.size_bytes = dir_size(out)
    variant.quantization_config = quantization_config(out)
    if variant.quantization_config is None:
        raise QuantizeError(f"{out}/config.json has no quantization_config after saving")
    result["variants"] = [base.to_wire(), variant.to_wire()]


def _weights_size(model_dir: Path) -> int:
    files = [*model_dir.glob("*.safetensors"), *model_dir.glob("*.bin")]
    return sum(f.stat().st_size for f in files) if files else dir_size(model_dir)


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for dist in ("llmcompressor", "compressed-tensors", "torch", "transformers"):
        try:
            found[dist] = version(dist)
        except PackageNotFoundError:
            continue
    return found


def run(args: argparse.Namespace) -> int:
    from servelab.workers.publish import sink_from_spec

    started = time.monotonic()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    out: Path = args.out
    sink = sink_from_spec(args.result, default_file=out / "result.json")
    result: dict[str, Any] = {"kind": "quantize", "method": args.method, "artifacts": str(out), "ok": False}
    rc = 0
    try:
        run_pipeline(args, result)
        result["ok"] = True
    except Exception as exc:  # report every failure as a result, then exit non-zero
        traceback.print_exc()
        result["reason"] = f"{type(exc).__name__}: {exc}"[:2000]
        rc = 1
    result["versions"] = _versions()
    result["durationSeconds"] = round(time.monotonic() - started, 3)
    sink.publish(result)
    status = "ok" if rc == 0 else f"failed: {result['reason']}"
    print(f"quantize {args.method}: {status}; result published to {sink.describe()}", file=sys.stderr)
    return rc
