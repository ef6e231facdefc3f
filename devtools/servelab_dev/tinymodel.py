"""A tiny random-weight Qwen3 model made locally, for tests and demos; nothing is downloaded.

`ensure_tiny_model()` (main venv, no torch needed) makes it once under
`cache_root()/models/tiny-qwen3-<hash>` by running `python -m servelab_dev.tinymodel --out DIR` in the
`llamacpp` worker environment (torch, transformers, tokenizers; `devenv.dev_environ()` puts this
package on its PYTHONPATH). The hash covers this file and the
Python version, so editing the recipe makes a new model.

The model: Qwen3ForCausalLM, hidden 256, intermediate 512, 2 layers, 4 attention heads / 2 KV heads,
head_dim 64, vocab 4096, untied embeddings, bf16, seed 0 (~3.3 M parameters). Every linear layer's
input size is a multiple of 128 so group-128 quantization applies. The tokenizer is a byte-level BPE
trained here on Python standard-library sources, with Qwen2's pre-tokenizer regex (so llama.cpp's
`qwen2` pre-tokenizer reproduces it exactly), special tokens <|endoftext|>, <|im_start|>, <|im_end|>
and a ChatML chat template.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from servelab.paths import cache_root

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
VOCAB_SIZE = 4096
SEED = 0
# Qwen2's pre-tokenizer split pattern (llama.cpp LLAMA_VOCAB_PRE_TYPE_QWEN2 uses the same regex).
QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
    r"|\s+(?!\S)|\s+"
)
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
CONFIG = {
    "vocab_size": VOCAB_SIZE,
    "hidden_size": 256,
    "intermediate_size": 512,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 64,
    "max_position_embeddings": 4096,
    "tie_word_embeddings": False,
    "rope_theta": 1000000.0,
    "rms_norm_eps": 1e-6,
}
CORPUS_BYTES = 3_000_000
DONE = "SERVELAB_MODEL.json"


def _recipe_hash() -> str:
    h = hashlib.sha256(Path(__file__).read_bytes())
    h.update(platform.python_version().encode())
    return h.hexdigest()[:12]


def tiny_model_dir() -> Path:
    return cache_root() / "models" / f"tiny-qwen3-{_recipe_hash()}"


def ensure_tiny_model() -> Path:
    """Make (once) and return the tiny model's HF directory."""
    from servelab.toolchain.envs import _locked, env_python
    from servelab_dev.devenv import dev_environ

    final = tiny_model_dir()
    if (final / DONE).is_file():
        return final
    python = env_python("llamacpp")
    with _locked(final.parent / f".{final.name}.lock"):
        if (final / DONE).is_file():
            return final
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
        try:
            cmd = [str(python), "-m", "servelab_dev.tinymodel", "--out", str(tmp)]
            proc = subprocess.run(cmd, env=dev_environ(), capture_output=True, text=True)
            if proc.returncode != 0:
                raise RuntimeError(
                    f"tiny model creation failed (rc={proc.returncode}):\n{proc.stderr[-3000:]}"
                )
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return final


def ensure_tiny_gguf(outtype: str = "f16") -> Path:
    """The tiny model converted to GGUF (cached next to it), via the llamacpp environment."""
    from servelab.toolchain import llamacpp
    from servelab.toolchain.envs import _locked, env_python, worker_environ

    hf = ensure_tiny_model()
    out = hf.parent / f"{hf.name}-{outtype}.gguf"
    if out.is_file():
        return out
    with _locked(hf.parent / f".{out.name}.lock"):
        if out.is_file():
            return out
        tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
        try:
            llamacpp.convert_hf_to_gguf(
                hf, tmp, outtype=outtype, python=env_python("llamacpp"), env=worker_environ()
            )
            os.replace(tmp, out)
        finally:
            tmp.unlink(missing_ok=True)
    return out


def _corpus(limit: int = CORPUS_BYTES) -> list[str]:
    """Deterministic local text: the standard library's Python sources, sorted, up to `limit` bytes."""
    import sysconfig

    stdlib = Path(sysconfig.get_paths()["stdlib"])
    texts: list[str] = []
    size = 0
    for path in sorted(stdlib.glob("*.py")):
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        texts.append(text)
        size += len(text.encode())
        if size >= limit:
            break
    if size < 100_000:
        raise RuntimeError(f"too little local text to train a tokenizer ({size} bytes under {stdlib})")
    return texts


def build_tokenizer(out: Path) -> dict[str, int]:
    """Train the byte-level BPE, save it as a transformers fast tokenizer; return special token ids."""
    from tokenizers import (  # type: ignore[import-not-found]
        Regex,
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        trainers,
    )
    from transformers import PreTrainedTokenizerFast  # type: ignore[import-not-found]

    tok = Tokenizer(models.BPE(unk_token=None, fuse_unk=False, byte_fallback=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        min_frequency=2,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>", "<|im_end|>"],
        model_max_length=CONFIG["max_position_embeddings"],
        clean_up_tokenization_spaces=False,
        chat_template=CHATML_TEMPLATE,
    )
    fast.save_pretrained(str(out))
    # transformers >= 4.43 puts the template in chat_template.jinja; keep it in tokenizer_config.json
    # too, where older readers (and gguf-py's SpecialVocab) look first
    cfg_path = out / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["chat_template"] = CHATML_TEMPLATE
    cfg_path.write_text(json.dumps(cfg, indent=2, ensure_ascii=False) + "\n")
    ids = {t: tok.token_to_id(t) for t in SPECIAL_TOKENS}
    if any(v is None for v in ids.values()) or tok.get_vocab_size() > VOCAB_SIZE:
        raise RuntimeError(f"unexpected tokenizer: specials {ids}, size {tok.get_vocab_size()}")
    return {k: int(v) for k, v in ids.items()}


def build_model(out: Path) -> dict[str, object]:
    """Write the tokenizer, config, random bf16 weights and generation config into `out`."""
    import torch  # type: ignore[import-not-found]
    from transformers import GenerationConfig, Qwen3Config, Qwen3ForCausalLM  # type: ignore[import-not-found]

    started = time.monotonic()
    ids = build_tokenizer(out)
    torch.manual_seed(SEED)
    config = Qwen3Config(
        **CONFIG,
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=ids["<|im_end|>"],
        pad_token_id=ids["<|endoftext|>"],
        torch_dtype="bfloat16",
    )
    model = Qwen3ForCausalLM(config).to(torch.bfloat16).eval()
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and module.in_features % 128:
            raise RuntimeError(f"{name} has {module.in_features} inputs, not a multiple of 128")
    model.save_pretrained(str(out), safe_serialization=True)
    GenerationConfig(
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=[ids["<|im_end|>"], ids["<|endoftext|>"]],
        pad_token_id=ids["<|endoftext|>"],
        do_sample=False,
        max_new_tokens=256,
    ).save_pretrained(str(out))
    params = sum(p.numel() for p in model.parameters())
    info: dict[str, object] = {
        "architecture": "Qwen3ForCausalLM",
        "parameters": params,
        "config": CONFIG,
        "seed": SEED,
        "specialTokens": ids,
        "recipeHash": _recipe_hash(),
        "seconds": round(time.monotonic() - started, 1),
        "torch": torch.__version__,
    }
    (out / DONE).write_text(json.dumps(info, indent=2) + "\n")
    return info


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m servelab_dev.tinymodel")
    parser.add_argument("--out", type=Path, help="directory to write the model into (made if missing)")
    parser.add_argument("--ensure", action="store_true", help="make it in the cache (any env) and print it")
    args = parser.parse_args(argv)
    if args.ensure:
        print(ensure_tiny_model())
        return 0
    if args.out is None:
        parser.error("--out or --ensure is required")
    args.out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    info = build_model(args.out)
    print(json.dumps(info))
    return 0


if __name__ == "__main__":
    sys.exit(main())
