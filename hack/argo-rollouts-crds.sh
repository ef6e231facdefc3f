#!/usr/bin/env bash
# Prints the directory of Argo Rollouts' CRDs (manifests/crds/*.yaml of the module source, from the Go module
# proxy into the Go module cache; a no-op when cached). Nothing of Argo Rollouts is kept in this repository:
# tests/integration/test_gitops_gates.py installs these CRDs into the test cluster and applies the
# AnalysisTemplates of examples/gitops/ against them.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"
dir=$(cd "${TMPDIR:-/tmp}" && GOFLAGS= GOTOOLCHAIN=local go mod download -json \
  "github.com/argoproj/argo-rollouts@$ARGO_ROLLOUTS_VERSION" \
  | python3 -c 'import json, sys; d = json.load(sys.stdin); print(d.get("Dir") or sys.exit(d.get("Error", "no Dir")))')
[[ -d $dir/manifests/crds ]] || { echo "no manifests/crds in $dir" >&2; exit 1; }
echo "$dir/manifests/crds"
