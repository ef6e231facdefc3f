"""`servelab worker gguf`: HF model -> f16 GGUF -> (imatrix) -> quantized variants -> perplexity/KLD.

Runs in the `llamacpp` image/environment. The steps follow llama.cpp's own tools:

1. `convert_hf_to_gguf.py HF --outtype f16` (through servelab.toolchain.llamacpp, which maps unknown
   BPE pre-tokenizers to `qwen2`), unless `--f16` gives a GGUF already.
2. `llama-imatrix -m f16.gguf -f CALIB -o imatrix.gguf -c CTX --parse-special`, when a variant asks
   for it (a type written `IQ4_XS+imatrix`).
3. `llama-quantize [--leave-output-tensor] [--imatrix imatrix.gguf] f16.gguf out-TYPE.gguf TYPE`.
4. `llama-perplexity -f EVAL -c CTX --chunks N` on f16 (saving its logits with
   `--kl-divergence-base`) and on each variant (`--kl-divergence` against them), parsing
   `Final estimate: PPL = X +/- Y`, `Mean PPL(Q) : X ± Y` and `Mean    KLD: X ± Y`.

The result lists `QuantVariantResult`s, the f16 base first (duration = conversion time).
"""

from __future__ import annotations

import argparse
import re
import time
from pathlib import Path
from typing import Any

from servelab.api.results import QuantVariantResult
from servelab.workers.common import WorkerError, run_logged

PPL_RE = re.compile(r"Final estimate: PPL = ([0-9.]+(?:[eE][+-]?\d+)?) \+/- ([0-9.]+(?:[eE][+-]?\d+)?)")
KL_PPL_RE = re.compile(r"Mean PPL\(Q\)\s*:\s*([0-9.]+(?:[eE][+-]?\d+)?)\s*±\s*([0-9.]+(?:[eE][+-]?\d+)?)")
KLD_RE = re.compile(r"Mean\s+KLD:\s*(-?[0-9.]+(?:[eE][+-]?\d+)?)\s*±\s*([0-9.]+(?:[eE][+-]?\d+)?)")
IMATRIX_SUFFIX = "+imatrix"


def parse_perplexity(output: str) -> tuple[float | None, float | None]:
    """(PPL, +/-) from llama-perplexity's output; the KL-mode line when the plain one is absent."""
    m = PPL_RE.findall(output)
    if m:
        return float(m[-1][0]), float(m[-1][1])
    k = KL_PPL_RE.findall(output)
    if k:
        return float(k[-1][0]), float(k[-1][1])
    return None, None


def parse_kld(output: str) -> float | None:
    m = KLD_RE.findall(output)
    return float(m[-1][0]) if m else None


def add_arguments(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--hf-dir", type=Path, help="Hugging Face model directory to convert")
    src.add_argument("--f16", type=Path, help="an existing f16/bf16 GGUF to start from")
    src.add_argument("--hf-repo", default=None, help="a Hugging Face Hub model to download and convert")
    p.add_argument("--revision", default=None, help="the --hf-repo branch, tag or commit")
    p.add_argument("--out", type=Path, required=True, help="output directory for GGUFs and logs")
    p.add_argument(
        "--types",
        nargs="+",
        required=True,
        help="llama-quantize types; append +imatrix to use the importance matrix (IQ4_XS+imatrix)",
    )
    p.add_argument("--imatrix-text", help="calibration text for llama-imatrix (a file, or hf:ID[:SUBSET]@SPLIT"
                   "[#COLUMN], a Hub data set's split)")  # fmt: skip
    p.add_argument("--eval-text", help="text for llama-perplexity (skipped when absent; a file or hf:...)")
    p.add_argument("--leave-output-tensor", action="store_true", help="keep output.weight unquantized")
    p.add_argument("--ctx", type=int, default=256, help="context for imatrix and perplexity (-c)")
    p.add_argument("--chunks", type=int, default=None, help="perplexity chunks (--chunks; default: all)")
    p.add_argument("--outtype", default="f16", choices=["f32", "f16", "bf16", "q8_0", "auto"],
                   help="convert_hf_to_gguf.py --outtype of the base GGUF")  # fmt: skip
    p.add_argument("--drop-base", action="store_true",
                   help="delete the base GGUF once measured (its row stays, without a path)")  # fmt: skip
    p.add_argument("--quantize-arg", action="append", default=[], metavar="ARG",
                   help="an extra llama-quantize argument, before the positional ones (repeatable)")  # fmt: skip
    p.add_argument("--gpu-layers", type=int, default=None,
                   help="-ngl for llama-imatrix and llama-perplexity (GPU offload)")  # fmt: skip
    p.add_argument("--imatrix-chunks", type=int, default=None, help="imatrix chunks (all when unset)")
    p.add_argument("--no-kld", action="store_true", help="skip the KL divergence against f16")
    p.add_argument("--keep-logits", action="store_true", help="keep the f16 logits file (large)")
    p.add_argument("--threads", type=int, default=None, help="threads for the tools (-t)")
    p.add_argument("--bin-dir", type=Path, default=None, help="llama.cpp tools (default: build/cache)")
    p.add_argument("--result", default=None, help="result sink: file:PATH or configmap:NS/NAME/KEY")


def _tool(bin_dir: Path | None, name: str) -> Path:
    if bin_dir is not None:
        path = bin_dir / name
        if not path.is_file():
            raise WorkerError(f"{path} does not exist")
        return path
    from servelab.toolchain import llamacpp

    return llamacpp.tool(name)


def _perplexity(cmd: list[Any], log: Path, *, kld: bool, attempts: int = 3) -> str:
    """Run llama-perplexity until its summary lines are in the output.

    llama.cpp logs from a background thread; now and then the last lines of a run (the final
    estimate) do not make it out before the process exits. The run is deterministic and takes
    seconds on small inputs, so it is repeated (at most `attempts` times) rather than guessed.
    """
    output = ""
    for attempt in range(attempts):
        output = run_logged(cmd, log if attempt == 0 else log.with_suffix(f".retry{attempt}.log")).output
        if parse_perplexity(output)[1] is not None and (not kld or parse_kld(output) is not None):
            break
    return output


def fetch_inputs(args: argparse.Namespace) -> None:
    """Hub inputs made local: the model repository (HF cache) and data set splits as text files."""
    from servelab.workers import hub

    if args.hf_repo:
        args.hf_dir = hub.download_model(args.hf_repo, args.revision)
    for name in ("imatrix_text", "eval_text"):
        if getattr(args, name) is not None:
            setattr(args, name, hub.resolve_text(str(getattr(args, name))))


def run_pipeline(args: argparse.Namespace) -> dict[str, Any]:
    fetch_inputs(args)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    logs = out / "logs"
    threads = ["-t", str(args.threads)] if args.threads else []
    offload = ["-ngl", str(args.gpu_layers)] if args.gpu_layers is not None else []
    variants: list[QuantVariantResult] = []
    notes: list[str] = []

    # 1. base GGUF
    if args.f16 is not None:
        f16 = Path(args.f16)
        convert_seconds: float | None = None
    else:
        from servelab.toolchain import llamacpp

        f16 = out / f"model-{args.outtype}.gguf"
        convert_seconds = llamacpp.convert_hf_to_gguf(
            args.hf_dir, f16, outtype=args.outtype, log=logs / "convert.log"
        )
    base_name = args.outtype.upper() if args.outtype in ("f32", "f16", "bf16") and args.f16 is None else "F16"
    if args.f16 is None and args.outtype not in ("f32", "f16", "bf16"):
        base_name = (
            "BASE"  # q8_0 / auto: what the converter made is the reference the variants are measured against
        )
    base = QuantVariantResult(
        name=base_name, path=str(f16), size_bytes=f16.stat().st_size, duration_seconds=convert_seconds
    )

    # 2. importance matrix
    wants_imatrix = any(t.endswith(IMATRIX_SUFFIX) for t in args.types)
    imatrix: Path | None = None
    imatrix_seconds: float | None = None
    if wants_imatrix:
        if args.imatrix_text is None:
            raise WorkerError("a +imatrix type needs --imatrix-text")
        imatrix = out / "imatrix.gguf"
        cmd = [_tool(args.bin_dir, "llama-imatrix"), "-m", f16, "-f", args.imatrix_text, "-o", imatrix]
        cmd += ["-c", str(args.ctx), "--parse-special", *threads, *offload]
        if args.imatrix_chunks:
            cmd += ["--chunks", str(args.imatrix_chunks)]
        imatrix_seconds = run_logged(cmd, logs / "imatrix.log").seconds
        if not imatrix.is_file():
            raise WorkerError(f"llama-imatrix wrote no {imatrix}")

    # 3. quantize
    for spec in args.types:
        qtype = spec.removesuffix(IMATRIX_SUFFIX)
        target = out / f"model-{spec.replace('+', '-')}.gguf"
        cmd = [_tool(args.bin_dir, "llama-quantize")]
        if args.leave_output_tensor:
            cmd.append("--leave-output-tensor")
        if spec.endswith(IMATRIX_SUFFIX):
            cmd += ["--imatrix", str(imatrix)]
        cmd += [*args.quantize_arg, f16, target, qtype]
        if args.threads:
            cmd.append(str(args.threads))
        ran = run_logged(cmd, logs / f"quantize-{spec}.log")
        variants.append(
            QuantVariantResult(
                name=spec, path=str(target), size_bytes=target.stat().st_size, duration_seconds=ran.seconds
            )
        )

    # 4. perplexity (+ KL divergence against the f16 logits)
    if args.eval_text is not None:
        ppl = _tool(args.bin_dir, "llama-perplexity")
        common = ["-f", args.eval_text, "-c", str(args.ctx), *threads, *offload]
        if args.chunks:
            common += ["--chunks", str(args.chunks)]
        logits = out / "f16-logits.kld"
        cmd = [ppl, "-m", f16, *common]
        if not args.no_kld:
            cmd += ["--kl-divergence-base", logits]
        output = _perplexity(cmd, logs / "perplexity-F16.log", kld=False)
        base.perplexity, base.perplexity_error = parse_perplexity(output)
        if base.perplexity is None:
            notes.append("no PPL in llama-perplexity output for F16")
        for v in variants:
            cmd = [ppl, "-m", Path(str(v.path)), *common]
            if not args.no_kld and logits.is_file():
                cmd += ["--kl-divergence-base", logits, "--kl-divergence"]
            output = _perplexity(cmd, logs / f"perplexity-{v.name}.log", kld="--kl-divergence" in cmd)
            v.perplexity, v.perplexity_error = parse_perplexity(output)
            v.kl_divergence = parse_kld(output)
            if v.perplexity is None:
                notes.append(f"no PPL in llama-perplexity output for {v.name}")
        if logits.exists() and not args.keep_logits:
            logits.unlink()
    if args.drop_base and args.f16 is None:  # measured; not kept among the outputs
        f16.unlink(missing_ok=True)
        base.path = None
    result: dict[str, Any] = {
        "kind": "gguf",
        "variants": [base.to_wire(), *(v.to_wire() for v in variants)],
        "artifacts": str(out),
    }
    if imatrix is not None:
        result["imatrix"] = {"path": str(imatrix), "durationSeconds": round(float(imatrix_seconds or 0), 3)}
    if notes:
        result["notes"] = notes
    return result


def run(args: argparse.Namespace) -> int:
    from servelab.workers.publish import sink_from_spec

    started = time.monotonic()
    sink = sink_from_spec(args.result, default_file=args.out / "result.json")
    result = run_pipeline(args)
    result["durationSeconds"] = round(time.monotonic() - started, 3)
    sink.publish(result)
    print(f"published {len(result['variants'])} variants to {sink.describe()}")
    return 1 if result.get("notes") else 0
