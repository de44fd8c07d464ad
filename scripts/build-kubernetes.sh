#!/usr/bin/env bash
# Builds a Kubernetes control plane for tests from the Go module proxy into a
# cache outside the clone, keyed by versions and the Go version, and prints
# the folder holding the binaries: etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler, kwok and kustomize. Cached
# binaries are reused.
# Cold: about 18 minutes on 2 cores (see ../shared/KUBERNETES.md).
set -euo pipefail
k8s=${KUBERNETES_VERSION:-v1.37.2}
staging=${KUBERNETES_STAGING_VERSION:-v0.${k8s#v1.}}
etcd=${ETCD_VERSION:-v3.6.16}
kwok=${KWOK_VERSION:-v0.8.0}
cache=${HEADSTART_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/headstart}
rev=2 # bump when this script builds differently
dir="$cache/kubernetes-$k8s-etcd-$etcd-kwok-$kwok-$(go env GOVERSION)-r$rev"
bins=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok)
have() { for b in "${bins[@]}"; do [ -x "$dir/$b" ] || return 1; done; }
kustomize=${KUSTOMIZE_VERSION:-v5.7.1}
# kustomize renders deploy/kubernetes as kubectl apply -k does (about a minute).
with_kustomize() {
  if [ ! -x "$dir/kustomize" ] || [ "$(cat "$dir/kustomize.version" 2>/dev/null)" != "$kustomize" ]; then
    local bin
    bin=$(mktemp -d)
    GOBIN="$bin" CGO_ENABLED=0 go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kustomize/kustomize/v5@$kustomize" >&2
    mv "$bin/kustomize" "$dir/kustomize" && echo "$kustomize" >"$dir/kustomize.version"
    rm -rf "$bin"
  fi
}
if have; then with_kustomize; echo "$dir"; exit 0; fi
mkdir -p "$dir"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export CGO_ENABLED=0 GOFLAGS=-mod=mod

# kube-apiserver, controller-manager, scheduler: a throwaway module that
# requires k8s.io/kubernetes and points its staging replaces at the proxy.
echo "building kubernetes $k8s control plane into $dir" >&2
mod=$(go mod download -json "k8s.io/kubernetes@$k8s" | sed -n 's/.*"GoMod": "\(.*\)",/\1/p')
mkdir -p "$work/k8s" && cd "$work/k8s"
go mod init headstart.local/k8sbuild >/dev/null 2>&1
go mod edit -require="k8s.io/kubernetes@$k8s"
grep '=> ./staging' "$mod" | awk '{print $1}' | while read -r m; do
  go mod edit -replace="$m=$m@$staging"
done
minor=${k8s#v1.}
minor=${minor%%.*}
ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$k8s -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor"
for cmd in kube-apiserver kube-controller-manager kube-scheduler; do
  go get -tool "k8s.io/kubernetes/cmd/$cmd@$k8s" >&2
done
for cmd in kube-apiserver kube-controller-manager kube-scheduler; do
  go build -trimpath -ldflags "$ldflags" -o "$dir/$cmd" "k8s.io/kubernetes/cmd/$cmd" >&2
done

# etcd: its server module also carries replaces; build it from a scratch module.
mkdir -p "$work/etcd" && cd "$work/etcd"
go mod init headstart.local/etcdbuild >/dev/null 2>&1
go get -tool "go.etcd.io/etcd/server/v3@$etcd" >&2
go build -trimpath -ldflags "-s -w" -o "$dir/etcd" go.etcd.io/etcd/server/v3 >&2

# kwok: a plain install.
GOBIN="$work/bin" go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$kwok" >&2
mv "$work/bin/kwok" "$dir/kwok"
have
with_kustomize
echo "$dir"
