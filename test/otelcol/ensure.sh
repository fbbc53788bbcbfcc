#!/usr/bin/env bash
# Part of `npm test` (npm run test:otelcol): builds this tier (cached) where Go is
# installed, and says plainly what is skipped where it is not.
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
exec bash "$here/../go-tier.sh" ensure "OpenTelemetry Collector tier" "the span-export tests that need the collector will be pending" "$here/build.sh"
