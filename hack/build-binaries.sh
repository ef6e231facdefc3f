#!/usr/bin/env bash
# Builds the test control plane's pinned upstream binaries from their Go modules into a cache outside
# the repository, keyed by version. Does nothing for a component whose binaries are already cached.
#
#   hack/build-binaries.sh            # build whatever is missing
#   hack/build-binaries.sh --print    # print the bin directories (one per component) and exit
#
# Cache root: $SERVELAB_CACHE (default ~/.cache/servelab); binaries land in $SERVELAB_CACHE/bin/<name>-<version>/.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"
cache=${SERVELAB_CACHE:-$HOME/.cache/servelab}
bin=$cache/bin
export CGO_ENABLED=0 GOFLAGS=${GOFLAGS:--mod=mod} GOTOOLCHAIN=local

kube_dir=$bin/kube-$KUBE_VERSION
etcd_dir=$bin/etcd-$ETCD_VERSION
kwok_dir=$bin/kwok-$KWOK_VERSION
helm_dir=$bin/helm-$HELM_VERSION

if [[ ${1:-} == --print ]]; then
  printf '%s\n' "$kube_dir" "$etcd_dir" "$kwok_dir" "$helm_dir"
  exit 0
fi

log() { printf '[build-binaries %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

# ensure_module DIR MODULE_PATH REQUIRE... : write go.mod for a wrapper module when it is missing.
kube_module() {
  local d=$here/kube
  [[ -f $d/go.mod ]] && return 0
  log "generating hack/kube/go.mod for k8s.io/kubernetes $KUBE_VERSION"
  (cd "$d" && go mod init servelab.dev/hack/kube >/dev/null 2>&1 && go mod edit -go=1.26.0 -require=k8s.io/kubernetes@"$KUBE_VERSION")
  local gomod
  gomod=$(cd "$d" && go mod download -json k8s.io/kubernetes@"$KUBE_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
  # every staging module upstream maps to ./staging/src/... is pinned to its published v0.x release
  grep -E '^\s*k8s\.io/[^ ]+ => \./staging/' "$gomod" | awk '{print $1}' | sort -u | while read -r m; do
    (cd "$d" && go mod edit -replace="$m=$m@$KUBE_STAGING_VERSION")
  done
  (cd "$d" && go mod tidy)
}
etcd_module() {
  local d=$here/etcd
  [[ -f $d/go.mod ]] && return 0
  log "generating hack/etcd/go.mod for etcd $ETCD_VERSION"
  (cd "$d" && go mod init servelab.dev/hack/etcd >/dev/null 2>&1 && go mod edit -go=1.26.0 -require=go.etcd.io/etcd/server/v3@"$ETCD_VERSION" && go mod tidy)
}
tools_module() {
  local d=$here/tools
  [[ -f $d/go.mod ]] && return 0
  log "generating hack/tools/go.mod for kwok $KWOK_VERSION, helm $HELM_VERSION"
  (cd "$d" && go mod init servelab.dev/hack/tools >/dev/null 2>&1 && go mod edit -go=1.26.0 \
      -require=sigs.k8s.io/kwok@"$KWOK_VERSION" -require=helm.sh/helm/v3@"$HELM_VERSION" && go mod tidy)
}

build_into() { # DEST MODULE_DIR LDFLAGS PKG...
  local dest=$1 mdir=$2 ldflags=$3; shift 3
  local tmp=$dest.tmp.$$
  rm -rf "$tmp"; mkdir -p "$tmp"
  (cd "$mdir" && go build -trimpath -ldflags "$ldflags" -o "$tmp/" "$@")
  rm -rf "$dest"; mv "$tmp" "$dest"
}

mkdir -p "$bin"
t0=$SECONDS
if [[ ! -x $etcd_dir/etcd ]]; then
  etcd_module
  log "building etcd $ETCD_VERSION"
  build_into "$etcd_dir" "$here/etcd" "-s -w" go.etcd.io/etcd/server/v3
  for n in server v3; do [[ -x $etcd_dir/$n ]] && mv "$etcd_dir/$n" "$etcd_dir/etcd"; done
  [[ -x $etcd_dir/etcd ]] || { ls "$etcd_dir"; exit 1; }
fi
if [[ ! -x $kube_dir/kube-apiserver || ! -x $kube_dir/kubectl || ! -x $kube_dir/kube-scheduler || ! -x $kube_dir/kube-controller-manager ]]; then
  kube_module
  minor=${KUBE_VERSION#v1.}; minor=${minor%%.*}
  ld="-s -w -X k8s.io/component-base/version.gitVersion=$KUBE_VERSION -X k8s.io/component-base/version.gitMajor=1"
  ld+=" -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean"
  ld+=" -X k8s.io/client-go/pkg/version.gitVersion=$KUBE_VERSION -X k8s.io/client-go/pkg/version.gitMajor=1"
  ld+=" -X k8s.io/client-go/pkg/version.gitMinor=$minor"
  log "building kube-apiserver, kube-controller-manager, kube-scheduler, kubectl $KUBE_VERSION"
  build_into "$kube_dir" "$here/kube" "$ld" k8s.io/kubernetes/cmd/kube-apiserver \
    k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl
fi
if [[ ! -x $kwok_dir/kwok ]]; then
  tools_module
  log "building kwok $KWOK_VERSION"
  build_into "$kwok_dir" "$here/tools" "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=$KWOK_VERSION" sigs.k8s.io/kwok/cmd/kwok
fi
if [[ ! -x $helm_dir/helm ]]; then
  tools_module
  log "building helm $HELM_VERSION"
  build_into "$helm_dir" "$here/tools" "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" helm.sh/helm/v3/cmd/helm
fi
# kstatus for the GitOps gate tests (tests/gitops_adapters.py); a no-op when built
"$here/build-kstatus.sh"
log "binaries ready in $bin ($((SECONDS - t0)) s)"
