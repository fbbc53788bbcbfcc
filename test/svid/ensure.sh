#!/usr/bin/env bash
# Part of `npm test` (npm run test:svid): builds go-spiffe's SVID judge
# (cached) when Go is on this machine, and says plainly that the comparison
# with it will be skipped when it is not.
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if ! command -v go >/dev/null 2>&1 && [ ! -x /usr/local/go/bin/go ]; then
  echo "SVID comparison with go-spiffe: SKIPPED (Go is not installed; test/svid/svid.test.ts checks tsmesh's verdicts alone)"
  exit 0
fi
if ! bash "$here/build.sh"; then
  echo "SVID comparison with go-spiffe: the build failed (see above)" >&2
  exit 1
fi
