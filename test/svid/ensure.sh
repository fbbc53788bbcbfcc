#!/usr/bin/env bash
# Part of `npm test` (npm run test:svid): builds go-spiffe's SVID judge
# (cached) where Go is installed; where it is not, says plainly that
# test/svid/svid.test.ts will compare tsmesh with the specifications alone.
set -uo pipefail
if command -v go >/dev/null 2>&1 || [ -x /usr/local/go/bin/go ]; then
  bash "$(dirname "${BASH_SOURCE[0]}")/build.sh" && exit 0
  echo "SVID comparison with go-spiffe: the build failed (see above)" >&2
  exit 1
fi
echo "SVID comparison with go-spiffe: SKIPPED (Go is not installed; test/svid/svid.test.ts checks tsmesh's verdicts against the specifications alone)"
