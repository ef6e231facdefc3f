#!/usr/bin/env bash
# Builds the Ollama server (github.com/ollama/ollama, the version hack/ollama/go.mod pins) from the Go module
# proxy with its CPU backend (ggml compiled through cgo, as `go run . serve` does upstream) into a cache
# outside the repository, keyed by version. A no-op when it is built.
#
#   hack/build-ollama.sh            # build it when missing
#   hack/build-ollama.sh --print    # print the binary's path and exit
#
# Cache root: $SERVELAB_CACHE (default ~/.cache/servelab); the binary: $SERVELAB_CACHE/bin/ollama-<version>/ollama.
# Needs a C/C++ compiler (cgo). The module zip leaves out llama.cpp's vendor/ directory (Go drops
# directories named vendor from module zips), so its header-only libraries (nlohmann/json, stb_image,
# miniaudio) come from llama.cpp's own vendor/ in the llama-cpp-python sdist that servelab.toolchain.llamacpp
# already fetches from PyPI. Measured: 1562 s with part of the Go build cache warm, over 40 min cold on 2 busy
# cores (cgo compiles ggml, llama.cpp and its model files); hack/prepare.sh builds it only with SERVELAB_OLLAMA=1.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
version=$(awk '$1 == "require" && $2 == "github.com/ollama/ollama" {print $3}' "$here/ollama/go.mod")
[[ -n $version ]] || { echo "hack/ollama/go.mod does not require github.com/ollama/ollama" >&2; exit 1; }
cache=${SERVELAB_CACHE:-$HOME/.cache/servelab}
dest=$cache/bin/ollama-$version
if [[ ${1:-} == --print ]]; then
  echo "$dest/ollama"
  exit 0
fi
[[ -x $dest/ollama ]] && exit 0
py=${PYTHON:-$here/../.venv/bin/python}
src=$(PYTHONPATH="$here/../operator" "$py" -c 'from servelab.toolchain import llamacpp; print(llamacpp.ensure_source())')
[[ -f $src/vendor/nlohmann/json_fwd.hpp ]] || { echo "no nlohmann/json in $src/vendor" >&2; exit 1; }
export CGO_ENABLED=1 GOFLAGS=${GOFLAGS:--mod=mod} GOTOOLCHAIN=local CGO_CPPFLAGS="-I$src/vendor ${CGO_CPPFLAGS:-}"
t0=$SECONDS
printf '[build-ollama %(%H:%M:%S)T] building ollama %s (CPU)\n' -1 "$version" >&2
tmp=$dest.tmp.$$
rm -rf "$tmp"; mkdir -p "$tmp"
(cd "$here/ollama" && go build -trimpath -ldflags "-s -w -X github.com/ollama/ollama/version.Version=${version#v}" \
  -o "$tmp/ollama" github.com/ollama/ollama)
"$tmp/ollama" --version >/dev/null 2>&1 || true
rm -rf "$dest"; mv "$tmp" "$dest"
printf '[build-ollama %(%H:%M:%S)T] %s ready (%d s)\n' -1 "$dest/ollama" "$((SECONDS - t0))" >&2
