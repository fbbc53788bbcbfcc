#!/usr/bin/env bash
# Part of `npm test` (npm run test:node): builds the real-node tier (cached)
# when this machine can run it, and says plainly that the tier is skipped, and
# why, when it cannot. The tests themselves run with the rest (mocha,
# test/node/*.test.ts) and skip with the same reason.
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

skip() { echo "real node tier: SKIPPED ($*)"; exit 0; }
[ "$(uname -s)" = Linux ] || skip "needs Linux"
[ "$(id -u)" = 0 ] || skip "needs root: network and mount namespaces, cgroups, containerd"
if ! command -v go >/dev/null 2>&1 && [ ! -x /usr/local/go/bin/go ]; then
  skip "Go is not installed; kubelet, kube-proxy, kube-scheduler, kubectl and CoreDNS are built from Go modules"
fi
missing=()
have() { command -v "$1" >/dev/null 2>&1; }
have containerd && have ctr || missing+=(containerd)
have runc || missing+=(runc)
[ -x /usr/lib/cni/bridge ] || [ -x /opt/cni/bin/bridge ] || missing+=(containernetworking-plugins)
have iptables || missing+=(iptables)
have conntrack || missing+=(conntrack)
have mmdebstrap || missing+=(mmdebstrap)
have ip || missing+=(iproute2)
have openssl || missing+=(openssl)
have curl || missing+=(curl)
[ ${#missing[@]} -eq 0 ] || skip "missing Debian packages: apt-get install ${missing[*]} (.ci/run installs them)"

if ! bash "$here/build.sh"; then
  echo "real node tier: the build failed (see above)" >&2
  exit 1
fi
