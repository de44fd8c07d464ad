#!/usr/bin/env bash
# Builds the Temporal server, its SQL schema tool and the Web UI server at the
# versions the pinned Temporal CLI embeds, from the Go module proxy, into a
# cache outside the clone (keyed by version and Go version), and prints the
# folder. They make the offline stand-ins of temporalio/auto-setup and
# temporalio/ui (deploy/docker/offline). Cached binaries are reused.
set -euo pipefail
server=${TEMPORAL_SERVER_VERSION:-v1.29.1}
ui=${TEMPORAL_UI_VERSION:-v2.42.1}
cache=${HEADSTART_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/headstart}
gover=$(go env GOVERSION)
dir="$cache/temporal-server-$server-ui-$ui-$gover"
if [ ! -x "$dir/ui-server" ]; then
  echo "building temporal-server $server, temporal-sql-tool and ui-server $ui into $dir (about 5 minutes cold)" >&2
  mkdir -p "$dir"
  tmp=$(mktemp -d "$dir/.build.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  gobuild() { GOBIN="$tmp/$1" CGO_ENABLED=0 go install -trimpath -ldflags '-s -w' "$2" >&2; }
  gobuild server "go.temporal.io/server/cmd/server@$server"
  gobuild sql "go.temporal.io/server/cmd/tools/sql@$server"
  gobuild ui "github.com/temporalio/ui-server/v2/cmd/server@$ui"
  mv "$tmp/server/server" "$dir/temporal-server"
  mv "$tmp/sql/sql" "$dir/temporal-sql-tool"
  mv "$tmp/ui/server" "$dir/ui-server"
fi
echo "$dir"
