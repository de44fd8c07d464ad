#!/usr/bin/env bash
# Builds the Temporal CLI (dev server + Web UI) at a pinned version from the Go
# module proxy into a cache outside the clone, keyed by version and Go version,
# and prints the binary's path. A cached binary is reused.
set -euo pipefail
version=${TEMPORAL_CLI_VERSION:-v1.5.1}
cache=${HEADSTART_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/headstart}
gover=$(go env GOVERSION)
dir="$cache/temporal-cli-$version-$gover"
bin="$dir/temporal"
if [ ! -x "$bin" ]; then
  echo "building temporal CLI $version into $dir (about 8 minutes cold)" >&2
  mkdir -p "$dir"
  tmp=$(mktemp -d "$dir/.build.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  GOBIN="$tmp" CGO_ENABLED=0 go install -trimpath "github.com/temporalio/cli/cmd/temporal@$version" >&2
  mv "$tmp/temporal" "$bin"
fi
echo "$bin"
