#!/usr/bin/env bash
# Part of `npm test`: builds the real API server tier (cached) when Go is on
# this machine, and says plainly that the tier will be skipped when it is not.
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if ! command -v go >/dev/null 2>&1 && [ ! -x /usr/local/go/bin/go ]; then
  echo "real API server tier: SKIPPED (Go is not installed; the tests that need kube-apiserver will be pending)"
  exit 0
fi
if ! bash "$here/build.sh"; then
  echo "real API server tier: the build failed (see above)" >&2
  exit 1
fi
