#!/usr/bin/env bash
# Builds the offline stand-ins of the compose stack's public images
# (deploy/docker/offline/README.md) into the Docker engine DOCKER_HOST names,
# and prints them as the compose file's variables, one NAME=image per line.
# Tags carry a hash of what each image is built from, so an image already
# there is reused until its inputs change; the Debian base's root file system
# is kept in the cache outside the clone.
set -euo pipefail
cd "$(dirname "$0")/.."
cache=${HEADSTART_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/headstart}
offline=deploy/docker/offline
gover=$(go env GOVERSION)
server_version=${TEMPORAL_SERVER_VERSION:-v1.29.1}
ui_version=${TEMPORAL_UI_VERSION:-v2.42.1}

have() { docker image inspect "$1" >/dev/null 2>&1; }
key() { cat "$@" | sha256sum | cut -c1-10; } # of an image's inputs
build() { # tag, context (a folder, or - for a tar on stdin)
  echo "building $1" >&2
  docker build --network host -q -t "$1" "$2" >/dev/null
  # Older builds of the same role go: the engine's data lives in the cache.
  docker image ls --format '{{.Repository}}:{{.Tag}}' "${1%:*}" | grep -vxF "$1" | xargs -r docker rmi >/dev/null || true
}
ctx=$(mktemp -d)
trap 'chmod -R u+w "$ctx"; rm -rf "$ctx"' EXIT # the module cache's copies are read-only

base=local/debian:bookworm
if ! have $base; then
  rootfs_tar="$cache/debian-bookworm-minbase.tar"
  if [ ! -s "$rootfs_tar" ]; then
    echo "debootstrap bookworm into $rootfs_tar (about a minute)" >&2
    mirror=$(sed -n 's/^URIs: *//p; s/^deb \(http[^ ]*\) bookworm .*/\1/p' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null | grep -v security | head -1)
    rootfs=$(mktemp -d)
    debootstrap --variant=minbase bookworm "$rootfs" "${mirror:-http://deb.debian.org/debian}" >&2
    tar -C "$rootfs" -cf "$rootfs_tar.tmp" . && mv "$rootfs_tar.tmp" "$rootfs_tar"
    rm -rf "$rootfs"
  fi
  docker import "$rootfs_tar" $base >/dev/null
fi

goroot=$(go env GOROOT)
ca=${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}
golang=local/golang:${gover#go}-$(key $offline/golang/Dockerfile "$ca" "$goroot/VERSION")
if ! have "$golang"; then
  cp $offline/golang/Dockerfile "$ctx/"
  cp "$ca" "$ctx/ca-certificates.crt"
  tar -c -C "$ctx" Dockerfile ca-certificates.crt -C "$(dirname "$goroot")" --transform "s|^$(basename "$goroot")|go|" "$(basename "$goroot")" |
    build "$golang" -
fi

postgres=local/postgres:15-$(key $offline/postgres/*)
have "$postgres" || build "$postgres" $offline/postgres
prometheus=local/prometheus:2.42-$(key $offline/prometheus/*)
have "$prometheus" || build "$prometheus" $offline/prometheus

temporal=local/temporal-auto-setup:${server_version#v}-$(key $offline/temporal/*)
ui=local/temporal-ui:${ui_version#v}-$(key $offline/temporal-ui/*)
if ! have "$temporal" || ! have "$ui"; then
  bin=$(scripts/build-temporal-server.sh)
  cli=$(scripts/build-temporal.sh)
  moddir() { go mod download -json "$1" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p'; }
  mkdir -p "$ctx/temporal/config/dynamicconfig" "$ctx/ui"
  server_dir=$(moddir "go.temporal.io/server@$server_version")
  cp $offline/temporal/Dockerfile $offline/temporal/auto-setup.sh "$bin/temporal-server" "$bin/temporal-sql-tool" "$cli" "$ctx/temporal/"
  cp "$server_dir/config/docker.yaml" "$ctx/temporal/config/"
  cp "$server_dir/config/dynamicconfig/docker.yaml" "$ctx/temporal/config/dynamicconfig/"
  build "$temporal" "$ctx/temporal"
  cp -r "$(moddir "github.com/temporalio/ui-server/v2@$ui_version")/config" "$ctx/ui/"
  cp $offline/temporal-ui/Dockerfile "$bin/ui-server" "$ctx/ui/"
  build "$ui" "$ctx/ui"
fi

cat <<VARS
GO_IMAGE=$golang
POSTGRES_IMAGE=$postgres
PROMETHEUS_IMAGE=$prometheus
TEMPORAL_IMAGE=$temporal
TEMPORAL_UI_IMAGE=$ui
VARS
