#!/usr/bin/env bash
# Part of `npm test` (npm run test:cluster): builds this tier (cached) where Go is
# installed, and says plainly what is skipped where it is not.
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
exec bash "$here/../go-tier.sh" ensure "real API server tier" "the tests that need kube-apiserver will be pending" "$here/build.sh"
