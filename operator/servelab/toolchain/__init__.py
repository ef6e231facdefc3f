"""Toolchains the workers run with, built on demand and cached outside the repository.

- `servelab.toolchain.envs`: one Python virtual environment per worker image
  (`images/<name>/requirements.txt`), e.g. `ensure_env("evalscope")`.
- `servelab.toolchain.llamacpp`: llama.cpp's command-line tools (llama-server, llama-quantize,
  llama-imatrix, llama-perplexity, llama-bench) and its `convert_hf_to_gguf.py`, built from the
  llama.cpp source shipped in the llama-cpp-python sdist.

Everything lands under `servelab.paths.cache_root()`; nothing here downloads a model or data set.
"""
