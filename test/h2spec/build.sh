#!/usr/bin/env bash
# Builds h2spec, the HTTP/2 conformance tester, from the Go module in
# test/h2spec/build/ (a `tool` directive pins its version and go.sum its
# dependencies) into test/h2spec/.cache/bin/h2spec.
#
# Skipped when a stamp file says the binary was built from the same pinned
# versions (hash of go.mod, go.sum, this script and the Go version). Safe to
# call repeatedly and concurrently (a lock serialises builders). Prints how
# long the build took.
#
# Environment:
#   TSMESH_H2SPEC_CACHE    cache folder (default test/h2spec/.cache)
#   TSMESH_H2SPEC_FORCE=1  rebuild even when the stamp matches
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
mod="$here/build"
cache="${TSMESH_H2SPEC_CACHE:-$here/.cache}"
bin="$cache/bin"
stamp="$cache/stamp"
tool=github.com/summerwind/h2spec

if ! command -v go >/dev/null 2>&1; then
  if [ -x /usr/local/go/bin/go ]; then
    export PATH="/usr/local/go/bin:$PATH"
  else
    echo "h2spec build.sh: go not found (install Go >= 1.26 or put it on PATH)" >&2
    exit 2
  fi
fi

export GOTOOLCHAIN="${GOTOOLCHAIN:-local}"
export GOFLAGS="${GOFLAGS:--buildvcs=false}"
export CGO_ENABLED="${CGO_ENABLED:-0}"

mkdir -p "$bin"

want="$({
  go version
  echo "GOTOOLCHAIN=$GOTOOLCHAIN CGO_ENABLED=$CGO_ENABLED GOFLAGS=$GOFLAGS"
  cat "$here/build.sh" "$mod/go.mod" "$mod/go.sum"
} | sha256sum | cut -d' ' -f1)"

up_to_date() {
  [ "${TSMESH_H2SPEC_FORCE:-0}" != 1 ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$bin/h2spec" ]
}

if up_to_date; then
  echo "h2spec build.sh: h2spec up to date in $bin (stamp ${want:0:12})"
  exit 0
fi
# One builder at a time; whoever waited re-checks the stamp.
exec 9>"$cache/build.lock"
flock 9
if up_to_date; then
  echo "h2spec build.sh: h2spec up to date in $bin (stamp ${want:0:12})"
  exit 0
fi

cd "$mod"
version="$(go list -m -f '{{.Version}}' "$tool")"
echo "h2spec build.sh: building h2spec $version with $(go version | cut -d' ' -f3)"
start=$(date +%s)
rm -f "$stamp"
tmp="$(mktemp -d "$cache/build.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
go mod download
go build -trimpath -ldflags "-s -w -X main.VERSION=${version%+incompatible} -X main.COMMIT=module" -o "$tmp/h2spec" "$tool/cmd/h2spec"
mv -f "$tmp/h2spec" "$bin/h2spec"
echo "$want" >"$stamp"
echo "h2spec build.sh: built h2spec $version into $bin in $(($(date +%s) - start))s"
