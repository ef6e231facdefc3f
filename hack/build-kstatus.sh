#!/usr/bin/env bash
# Builds hack/kstatus (kstatus's status.Compute from sigs.k8s.io/cli-utils, the library Flux and kpt wait
# with) into a cache outside the repository, keyed by the cli-utils version. A no-op when it is built.
# The tests run it on captured and live ServeBenchmark/QuantJob objects (tests/gitops_adapters.py).
#
#   hack/build-kstatus.sh            # build it when missing
#   hack/build-kstatus.sh --print    # print the binary's path and exit
#
# Cache root: $SERVELAB_CACHE (default ~/.cache/servelab); the binary: $SERVELAB_CACHE/bin/kstatus-<version>/kstatus.
# Cold build measured on 2 shared cores: 77 s with empty Go module and build caches, 2.5 min under load;
# 0 s when built. (hack/build-binaries.sh runs it, so `make prepare`/`make integration`/.ci/run get it.)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"
cache=${SERVELAB_CACHE:-$HOME/.cache/servelab}
dest=$cache/bin/kstatus-$CLI_UTILS_VERSION
if [[ ${1:-} == --print ]]; then
  echo "$dest/kstatus"
  exit 0
fi
[[ -x $dest/kstatus ]] && exit 0
export CGO_ENABLED=0 GOFLAGS=${GOFLAGS:--mod=mod} GOTOOLCHAIN=local
t0=$SECONDS
printf '[build-kstatus %(%H:%M:%S)T] building kstatus (sigs.k8s.io/cli-utils %s)\n' -1 "$CLI_UTILS_VERSION" >&2
tmp=$dest.tmp.$$
rm -rf "$tmp"; mkdir -p "$tmp"
grep -q "sigs.k8s.io/cli-utils $CLI_UTILS_VERSION\$" "$here/kstatus/go.mod" \
  || { echo "hack/kstatus/go.mod does not require sigs.k8s.io/cli-utils $CLI_UTILS_VERSION (hack/versions.env)" >&2; exit 1; }
(cd "$here/kstatus" && go build -trimpath -ldflags "-s -w" -o "$tmp/kstatus" .)
rm -rf "$dest"; mv "$tmp" "$dest"
printf '[build-kstatus %(%H:%M:%S)T] %s ready (%d s)\n' -1 "$dest/kstatus" "$((SECONDS - t0))" >&2
