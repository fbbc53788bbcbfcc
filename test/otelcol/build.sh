#!/usr/bin/env bash
# Builds the OpenTelemetry Collector of the span-export tests from the Go
# module in test/otelcol/build/ (the core distribution's OTLP receiver, batch
# processor and debug exporter, and the contrib file exporter, at pinned
# versions) into test/otelcol/.cache/bin/otelcol, cached as test/go-tier.sh
# describes.
#
# Environment:
#   TSMESH_OTELCOL_CACHE   cache folder (default test/otelcol/.cache)
#   TSMESH_OTELCOL_FORCE=1 rebuild even when the stamp matches
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
label="otelcol build.sh"
mod="$here/build"
cache="${TSMESH_OTELCOL_CACHE:-$here/.cache}"
force="${TSMESH_OTELCOL_FORCE:-0}"
binaries=(otelcol)

go_tier_compile() {
  echo "$label: building otelcol $(go list -m -f '{{.Version}}' go.opentelemetry.io/collector/otelcol) with $(go version | cut -d' ' -f3) (a few minutes when cold)"
  go build -trimpath -ldflags "-s -w" -o "$1/otelcol" .
  echo "$label: otelcol is $(du -m "$1/otelcol" | cut -f1) MB"
}

# shellcheck source-path=SCRIPTDIR source=../go-tier.sh
. "$here/../go-tier.sh"
go_tier_build
