#!/usr/bin/env bash
# make image: the headstart and headstart-sample images from the Dockerfile,
# with BuildKit (its cache mounts keep Go's module and build caches between
# builds). HEADSTART_IMAGE and HEADSTART_SAMPLE_IMAGE name them (default
# headstart:dev, headstart-sample:dev), GO_IMAGE is the toolchain image
# (default golang:1.26-bookworm), GOPROXY the module proxy (default: go env
# GOPROXY). DOCKER is the client (default docker): one with buildx, or an
# engine's 20.10–22 client (DOCKER_BUILDKIT=1); Debian's /usr/bin/docker is
# tried after it.
set -euo pipefail
cd "$(dirname "$0")/.."
args=(--build-arg "GO_IMAGE=${GO_IMAGE:-golang:1.26-bookworm}" --network host)
proxy=${GOPROXY:-$(go env GOPROXY 2>/dev/null || true)}
[ -z "$proxy" ] || args+=(--build-arg "GOPROXY=$proxy")

build=()
for d in "${DOCKER:-docker}" /usr/bin/docker; do
  command -v "$d" >/dev/null || continue
  if "$d" buildx version >/dev/null 2>&1; then
    build=("$d" buildx build --load)
    break
  fi
  v=$("$d" version --format '{{.Client.Version}}' 2>/dev/null || true)
  if [[ $v =~ ^([0-9]+)\. ]] && [ "${BASH_REMATCH[1]}" -ge 20 ] && [ "${BASH_REMATCH[1]}" -lt 23 ]; then
    build=(env DOCKER_BUILDKIT=1 "$d" build)
    break
  fi
done
if [ ${#build[@]} = 0 ]; then
  echo "make image needs BuildKit: install the buildx plugin (docker-buildx)" >&2
  exit 1
fi
"${build[@]}" "${args[@]}" --target headstart -t "${HEADSTART_IMAGE:-headstart:dev}" .
"${build[@]}" "${args[@]}" --target headstart-sample -t "${HEADSTART_SAMPLE_IMAGE:-headstart-sample:dev}" .
