#!/usr/bin/env bash
# Builds hack/zeroserver (the zero-work OpenAI-compatible server and reference load client; standard
# library only) into the cache, keyed by its source's hash; prints the binary's path. No-op when cached.
#
#   hack/build-zeroserver.sh      # -> $SERVELAB_CACHE/bin/zeroserver-<hash12>/zeroserver
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${SERVELAB_CACHE:-$HOME/.cache/servelab}
hash=$(cat "$here/zeroserver/go.mod" "$here/zeroserver/main.go" | sha256sum | cut -c1-12)
dest=$cache/bin/zeroserver-$hash
if [[ ! -x $dest/zeroserver ]]; then
  tmp=$dest.tmp.$$
  rm -rf "$tmp"; mkdir -p "$tmp"
  (cd "$here/zeroserver" && CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-mod=mod go build -trimpath -ldflags '-s -w' -o "$tmp/zeroserver" .)
  rm -rf "$dest"; mv "$tmp" "$dest"
fi
echo "$dest/zeroserver"
