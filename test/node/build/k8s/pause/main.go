// Command pause is the sandbox (infrastructure) container of every pod on the
// test node: it holds the pod's namespaces, reaps orphans (it is PID 1 when the
// pod shares its process namespace) and exits on SIGINT or SIGTERM, as
// Kubernetes' own pause does. Built static (CGO_ENABLED=0) into a scratch image
// by test/node/build.sh, so no registry is needed.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "-v" {
		os.Stdout.WriteString("pause (tsmesh test node)\n")
		return
	}
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for s := range sigs {
		if s != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			var ws syscall.WaitStatus
			pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
