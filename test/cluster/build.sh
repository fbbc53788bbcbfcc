#!/usr/bin/env bash
# Builds etcd, kube-apiserver and kube-controller-manager from the Go module in
# test/cluster/build/ into test/cluster/.cache/bin/, cached as test/go-tier.sh
# describes.
#
# Environment:
#   TSMESH_CLUSTER_CACHE   cache folder (default test/cluster/.cache)
#   TSMESH_CLUSTER_FORCE=1 rebuild even when the stamp matches
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
label="cluster build.sh"
mod="$here/build"
cache="${TSMESH_CLUSTER_CACHE:-$here/.cache}"
force="${TSMESH_CLUSTER_FORCE:-0}"
binaries=(etcd kube-apiserver kube-controller-manager)

go_tier_compile() {
  local k8s_version etcd_version major minor vpkg=k8s.io/component-base/version
  k8s_version="$(go list -m -f '{{.Version}}' k8s.io/kubernetes)"
  etcd_version="$(go list -m -f '{{.Version}}' go.etcd.io/etcd/server/v3)"
  major="${k8s_version#v}"; major="${major%%.*}"
  minor="${k8s_version#v*.}"; minor="${minor%%.*}"
  echo "$label: building etcd $etcd_version, kubernetes $k8s_version with $(go version | cut -d' ' -f3) (this can take a long while)"
  go build -trimpath -ldflags "-s -w -X $vpkg.gitVersion=$k8s_version -X $vpkg.gitMajor=$major -X $vpkg.gitMinor=$minor -X $vpkg.gitTreeState=clean" -o "$1/" \
    ./etcd \
    k8s.io/kubernetes/cmd/kube-apiserver \
    k8s.io/kubernetes/cmd/kube-controller-manager
}

# shellcheck source-path=SCRIPTDIR source=../go-tier.sh
. "$here/../go-tier.sh"
go_tier_build
