#!/usr/bin/env bash
# Builds the OpenTelemetry Collector of the span-export tests from the Go
# module in test/otelcol/build/ (the core distribution's OTLP receiver, batch
# processor and debug exporter, and the contrib file exporter, at pinned
# versions) into test/otelcol/.cache/bin/otelcol.
#
# The build is skipped when a stamp file says the binary was built from the
# same pinned versions (hash of go.mod, go.sum, the sources in build/, this
# script and the Go version). Safe to call repeatedly and concurrently (a lock
# serialises builders). Prints how long the build took and the binary's size.
#
# Environment:
#   TSMESH_OTELCOL_CACHE   cache folder (default test/otelcol/.cache)
#   TSMESH_OTELCOL_FORCE=1 rebuild even when the stamp matches
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
mod="$here/build"
cache="${TSMESH_OTELCOL_CACHE:-$here/.cache}"
bin="$cache/bin"
stamp="$cache/stamp"

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
  [ "${TSMESH_OTELCOL_FORCE:-0}" != 1 ] || return 1
  [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$1" ] && [ -x "$bin/otelcol" ]
}

want="$(want_stamp)"
if up_to_date "$want"; then
  echo "build.sh: otelcol up to date in $bin (stamp ${want:0:12})"
  exit 0
fi

# One builder at a time; whoever waited re-checks the stamp.
exec 9>"$cache/build.lock"
flock 9
if up_to_date "$want"; then
  echo "build.sh: otelcol up to date in $bin (stamp ${want:0:12})"
  exit 0
fi

cd "$mod"
version="$(go list -m -f '{{.Version}}' go.opentelemetry.io/collector/otelcol)"
echo "build.sh: building otelcol $version with $(go version | cut -d' ' -f3) (a few minutes when cold)"
start=$(date +%s)
rm -f "$stamp"
tmp="$(mktemp -d "$cache/build.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
go mod download
go build -trimpath -ldflags "-s -w" -o "$tmp/otelcol" .
mv -f "$tmp/otelcol" "$bin/otelcol"
echo "$want" >"$stamp"
end=$(date +%s)
echo "build.sh: built otelcol into $bin in $((end - start))s ($(du -m "$bin/otelcol" | cut -f1) MB)"
