#!/usr/bin/env bash
# Builds etcd, kube-apiserver and kube-controller-manager from the Go module in
# test/cluster/build/ into test/cluster/.cache/bin/.
#
# The build is skipped when a stamp file says the binaries were built from the
# same pinned versions (hash of go.mod, go.sum, the sources in build/, this
# script and the Go version). Safe to call repeatedly and concurrently (a lock
# serialises builders). Prints how long the build took.
#
# Environment:
#   TSMESH_CLUSTER_CACHE   cache folder (default test/cluster/.cache)
#   TSMESH_CLUSTER_FORCE=1 rebuild even when the stamp matches
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
mod="$here/build"
cache="${TSMESH_CLUSTER_CACHE:-$here/.cache}"
bin="$cache/bin"
stamp="$cache/stamp"
binaries=(etcd kube-apiserver kube-controller-manager)

if ! command -v go >/dev/null 2>&1; then
  if [ -x /usr/local/go/bin/go ]; then
    export PATH="/usr/local/go/bin:$PATH"
  else
    echo "build.sh: go not found (install Go >= 1.26 or put it on PATH)" >&2
    exit 2
  fi
fi

# Build with the toolchain that is installed unless the caller chose one.
export GOTOOLCHAIN="${GOTOOLCHAIN:-local}"
export GOFLAGS="${GOFLAGS:--buildvcs=false}"
export CGO_ENABLED="${CGO_ENABLED:-0}"

mkdir -p "$bin"

want_stamp() {
  {
    go version
    echo "GOTOOLCHAIN=$GOTOOLCHAIN CGO_ENABLED=$CGO_ENABLED GOFLAGS=$GOFLAGS"
    cat "$here/build.sh"
    (cd "$mod" && find . -type f \( -name '*.go' -o -name go.mod -o -name go.sum \) | LC_ALL=C sort | xargs cat)
  } | sha256sum | cut -d' ' -f1
}

up_to_date() {
  [ "${TSMESH_CLUSTER_FORCE:-0}" != 1 ] || return 1
  [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$1" ] || return 1
  for b in "${binaries[@]}"; do [ -x "$bin/$b" ] || return 1; done
}

want="$(want_stamp)"
if up_to_date "$want"; then
  echo "build.sh: binaries up to date in $bin (stamp ${want:0:12})"
  exit 0
fi

# One builder at a time; whoever waited re-checks the stamp.
exec 9>"$cache/build.lock"
flock 9
if up_to_date "$want"; then
  echo "build.sh: binaries up to date in $bin (stamp ${want:0:12})"
  exit 0
fi

cd "$mod"
k8s_version="$(go list -m -f '{{.Version}}' k8s.io/kubernetes)"
etcd_version="$(go list -m -f '{{.Version}}' go.etcd.io/etcd/server/v3)"
major="${k8s_version#v}"; major="${major%%.*}"
minor="${k8s_version#v*.}"; minor="${minor%%.*}"
vpkg=k8s.io/component-base/version
ldflags="-s -w -X $vpkg.gitVersion=$k8s_version -X $vpkg.gitMajor=$major -X $vpkg.gitMinor=$minor -X $vpkg.gitTreeState=clean"

echo "build.sh: building etcd $etcd_version, kubernetes $k8s_version with $(go version | cut -d' ' -f3) (this can take a long while)"
start=$(date +%s)
rm -f "$stamp"
tmp="$(mktemp -d "$cache/build.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
go mod download
go build -trimpath -ldflags "$ldflags" -o "$tmp/" \
  ./etcd \
  k8s.io/kubernetes/cmd/kube-apiserver \
  k8s.io/kubernetes/cmd/kube-controller-manager
for b in "${binaries[@]}"; do mv -f "$tmp/$b" "$bin/$b"; done
echo "$want" >"$stamp"
end=$(date +%s)
echo "build.sh: built ${binaries[*]} into $bin in $((end - start))s"
