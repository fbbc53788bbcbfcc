#!/usr/bin/env bash
# Builds the Go programs of the node tier's Gateway API mesh conformance run
# (test/node/gamma.test.ts) into DIR/bin (DIR: $1, default
# test/node/.cache/gamma), each module cached by its stamp (test/go-tier.sh):
#
#   conformance.test  `go test -c` of sigs.k8s.io/gateway-api/conformance
#                     (the suite, v1.6.3, pinned in suite/go.mod)
#   server, client    Istio's echo app (istio.io/istio/pkg/test/echo/cmd/...,
#                     pinned in echo/go.mod), the programs of the echo image
#                     the suite's mesh manifests run
#
# test/node/build.sh calls it and makes the echo image from server and client.
set -euo pipefail
# label, mod, cache, force, binaries and go_tier_compile are go_tier_build's inputs.
# shellcheck disable=SC2034,SC2317

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="${1:-$here/../.cache/gamma}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
# shellcheck source-path=SCRIPTDIR source=../../go-tier.sh
. "$here/../../go-tier.sh"
go_tier_find_go || { echo "gamma build.sh: go not found (install Go >= 1.26 or put it on PATH)" >&2; exit 2; }

# Each module in a subshell of its own: go_tier_build sets a trap and exits on failure.
(
  label="gamma build.sh (suite)"
  mod="$here/suite"
  cache="$out/suite"
  force="${TSMESH_NODE_FORCE:-0}"
  binaries=(conformance.test)
  go_tier_compile() {
    echo "$label: go test -c sigs.k8s.io/gateway-api/conformance $(go list -m -f '{{.Version}}' sigs.k8s.io/gateway-api/conformance)"
    nice go test -c -trimpath -ldflags "-s -w" -o "$1/conformance.test" sigs.k8s.io/gateway-api/conformance
  }
  go_tier_build
)
(
  label="gamma build.sh (echo)"
  mod="$here/echo"
  cache="$out/echo"
  force="${TSMESH_NODE_FORCE:-0}"
  binaries=(server client)
  go_tier_compile() {
    echo "$label: Istio's echo server and client from istio.io/istio $(go list -m -f '{{.Version}}' istio.io/istio) (not a release: a commit of its main branch)"
    nice go build -trimpath -ldflags "-s -w" -o "$1/" istio.io/istio/pkg/test/echo/cmd/server istio.io/istio/pkg/test/echo/cmd/client
  }
  go_tier_build
)
