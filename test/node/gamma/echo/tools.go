//go:build tools

// Package echo pins Istio's echo server and client, which build.sh compiles
// into the echo image the conformance suite's mesh manifests name.
package echo

import (
	_ "istio.io/istio/pkg/test/echo/cmd/client"
	_ "istio.io/istio/pkg/test/echo/cmd/server"
)
