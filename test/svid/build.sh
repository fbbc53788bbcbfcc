#!/usr/bin/env bash
# Builds test/svid/verify/ (go-spiffe's X.509-SVID checks behind a small JSON
# interface, the independent judge of test/svid/svid.test.ts) into
# test/svid/.cache/bin/svid-verify.
#
# Skipped when a stamp says the binary was built from the same inputs (hash of
# go.mod, go.sum, main.go, this script and the Go version). Safe to call
# repeatedly and concurrently (a lock serialises builders). Prints how long
# the build took.
#
# Environment:
#   TSMESH_SVID_CACHE     cache folder (default test/svid/.cache)
#   TSMESH_SVID_FORCE=1   rebuild even when the stamp matches
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
mod="$here/verify"
cache="${TSMESH_SVID_CACHE:-$here/.cache}"
bin="$cache/bin/svid-verify"
stamp="$cache/stamp"

if ! command -v go >/dev/null 2>&1; then
  if [ -x /usr/local/go/bin/go ]; then
    export PATH="/usr/local/go/bin:$PATH"
  else
    echo "svid build.sh: go not found (install Go >= 1.26 or put it on PATH)" >&2
    exit 2
  fi
fi

# The installed toolchain, modules from the Go module proxy as go.sum pins them.
export GOTOOLCHAIN=local GOFLAGS='-mod=mod -buildvcs=false' CGO_ENABLED=0

mkdir -p "$cache/bin"

want="$(
  {
    go version
    cat "$here/build.sh" "$mod/go.mod" "$mod/go.sum" "$mod/main.go"
  } | sha256sum | cut -d' ' -f1
)"
up_to_date() {
  [ "${TSMESH_SVID_FORCE:-0}" != 1 ] && [ -x "$bin" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]
}

if up_to_date; then
  echo "svid build.sh: svid-verify up to date in $bin (stamp ${want:0:12})"
  exit 0
fi
# One builder at a time; whoever waited re-checks the stamp.
exec 9>"$cache/build.lock"
flock 9
if up_to_date; then
  echo "svid build.sh: svid-verify up to date in $bin (stamp ${want:0:12})"
  exit 0
fi

cd "$mod"
start=$(date +%s)
rm -f "$stamp"
tmp="$(mktemp -d "$cache/build.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
go build -trimpath -ldflags '-s -w' -o "$tmp/svid-verify" .
mv -f "$tmp/svid-verify" "$bin"
echo "$want" >"$stamp"
echo "svid build.sh: built svid-verify ($(go list -m -f '{{.Path}} {{.Version}}' github.com/spiffe/go-spiffe/v2)) into $bin in $(($(date +%s) - start))s"
