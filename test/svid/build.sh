#!/usr/bin/env bash
# Builds test/svid/verify/ (go-spiffe's X.509-SVID checks behind a small JSON
# interface, the independent judge of test/svid/svid.test.ts) into
# test/svid/.cache/bin/svid-verify, cached as test/go-tier.sh describes.
#
# Environment:
#   TSMESH_SVID_CACHE     cache folder (default test/svid/.cache)
#   TSMESH_SVID_FORCE=1   rebuild even when the stamp matches
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
label="svid build.sh"
mod="$here/verify"
cache="${TSMESH_SVID_CACHE:-$here/.cache}"
force="${TSMESH_SVID_FORCE:-0}"
binaries=(svid-verify)
export GOFLAGS='-mod=mod -buildvcs=false'

go_tier_compile() {
  echo "$label: building svid-verify (go-spiffe $(go list -m -f '{{.Version}}' github.com/spiffe/go-spiffe/v2))"
  go build -trimpath -ldflags '-s -w' -o "$1/svid-verify" .
}

# shellcheck source-path=SCRIPTDIR source=../go-tier.sh
. "$here/../go-tier.sh"
go_tier_build
