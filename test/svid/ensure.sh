#!/usr/bin/env bash
# Part of `npm test` (npm run test:svid): builds this tier (cached) where Go is
# installed, and says plainly what is skipped where it is not.
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
exec bash "$here/../go-tier.sh" ensure "SVID comparison with go-spiffe" "test/svid/svid.test.ts checks tsmesh's verdicts against the specifications alone" "$here/build.sh"
