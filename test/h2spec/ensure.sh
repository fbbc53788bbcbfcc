#!/usr/bin/env bash
# Part of `npm test` (npm run test:h2spec): builds this tier (cached) where Go is
# installed, and says plainly what is skipped where it is not.
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
exec bash "$here/../go-tier.sh" ensure "HTTP/2 conformance tier (h2spec)" "h2spec is built from its Go module and test/h2spec/h2spec.test.ts will be pending" "$here/build.sh"
