//go:build tools

// Package suite pins the Gateway API conformance suite that build.sh compiles
// with `go test -c sigs.k8s.io/gateway-api/conformance`.
package suite

import _ "sigs.k8s.io/gateway-api/conformance"
