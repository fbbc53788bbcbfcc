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
cache="${TSMESH_SVID_CACHE:-$here/.cache}"
bin="$cache/bin/svid-verify"
stamp="$cache/stamp"

# Go from PATH, else where its tarball installs it; the installed toolchain,
# modules from the Go module proxy as go.sum pins them.
PATH="$PATH:/usr/local/go/bin"
command -v go >/dev/null || { echo "svid build.sh: go not found (install Go >= 1.26 or put it on PATH)" >&2; exit 2; }
export GOTOOLCHAIN=local GOFLAGS='-mod=mod -buildvcs=false' CGO_ENABLED=0

mkdir -p "$cache/bin"
want="$( (go version && cd "$here" && cat build.sh verify/go.mod verify/go.sum verify/main.go) | sha256sum | cut -d' ' -f1)"
fresh() { [ "${TSMESH_SVID_FORCE:-0}" != 1 ] && [ -x "$bin" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; }
say_fresh() { echo "svid build.sh: svid-verify up to date in $bin (stamp ${want:0:12})"; }

fresh && { say_fresh; exit 0; }
# One builder at a time; whoever waited finds the stamp written.
exec 9>"$cache/build.lock"
flock 9
fresh && { say_fresh; exit 0; }

start=$(date +%s)
rm -f "$stamp"
tmp="$(mktemp -d "$cache/build.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
(cd "$here/verify" && go build -trimpath -ldflags '-s -w' -o "$tmp/svid-verify" .)
mv -f "$tmp/svid-verify" "$bin"
echo "$want" >"$stamp"
version="$(cd "$here/verify" && go list -m -f '{{.Version}}' github.com/spiffe/go-spiffe/v2)"
echo "svid build.sh: built svid-verify (go-spiffe $version) into $bin in $(($(date +%s) - start))s"
