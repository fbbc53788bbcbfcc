#!/usr/bin/env bash
# Builds h2spec, the HTTP/2 conformance tester, from the Go module in
# test/h2spec/build/ (a `tool` directive pins its version and go.sum its
# dependencies) into test/h2spec/.cache/bin/h2spec, cached as
# test/go-tier.sh describes.
#
# Environment:
#   TSMESH_H2SPEC_CACHE    cache folder (default test/h2spec/.cache)
#   TSMESH_H2SPEC_FORCE=1  rebuild even when the stamp matches
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
label="h2spec build.sh"
mod="$here/build"
cache="${TSMESH_H2SPEC_CACHE:-$here/.cache}"
force="${TSMESH_H2SPEC_FORCE:-0}"
binaries=(h2spec)
tool=github.com/summerwind/h2spec

go_tier_compile() {
  local version
  version="$(go list -m -f '{{.Version}}' "$tool")"
  echo "$label: building h2spec $version with $(go version | cut -d' ' -f3)"
  go build -trimpath -ldflags "-s -w -X main.VERSION=${version%+incompatible} -X main.COMMIT=module" -o "$1/h2spec" "$tool/cmd/h2spec"
}

# shellcheck source-path=SCRIPTDIR source=../go-tier.sh
. "$here/../go-tier.sh"
go_tier_build
