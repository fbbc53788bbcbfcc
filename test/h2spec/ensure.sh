#!/usr/bin/env bash
# Part of `npm test` (npm run test:h2spec): builds h2spec (cached) when Go is
# on this machine, and says plainly that the HTTP/2 conformance tier is
# skipped when it is not. The tests run with the rest (mocha,
# test/h2spec/h2spec.test.ts) and skip with the same reason.
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if ! command -v go >/dev/null 2>&1 && [ ! -x /usr/local/go/bin/go ]; then
  echo "HTTP/2 conformance tier (h2spec): SKIPPED (Go is not installed; h2spec is built from its Go module)"
  exit 0
fi
if ! bash "$here/build.sh"; then
  echo "HTTP/2 conformance tier (h2spec): the build failed (see above)" >&2
  exit 1
fi
