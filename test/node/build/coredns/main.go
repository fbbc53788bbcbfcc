// Command coredns is CoreDNS with only the plugins the test node's cluster DNS
// uses (see the Corefile in test/node/node.sh): kubernetes, cache, errors,
// health, ready, hosts, log and reload. Built from Go modules by
// test/node/build.sh, its k8s.io modules pinned to the release of
// test/node/build/k8s so the Go build cache is shared.
package main

import (
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/hosts"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/ready"
	_ "github.com/coredns/coredns/plugin/reload"

	"github.com/coredns/coredns/coremain"
)

func main() {
	coremain.Run()
}
