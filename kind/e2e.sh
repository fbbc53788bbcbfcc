#!/usr/bin/env bash
# End to end on the kind cluster of kind/up.sh:
#   1. every demo pod carries tsmesh-init and tsmesh-proxy and is ready;
#   2. the frontend's calls to backend flow (no errors) and about 10% reach
#      v2, as the TrafficPolicy says (1000 calls; 5% to 15% passes);
#   3. the proxies' metrics show the traffic over mTLS between the
#      frontend's and the backend's SPIFFE identities;
#   4. tsmesh check passes.
# Exit status 0 when all pass. The helpers below are tested by
# test/k8s/kind.test.ts, which sources this file without running main.
#
# On a cluster other than kind's (no kind binary needed):
#   kind/e2e.sh --context NAME        or  TSMESH_KUBE_CONTEXT=NAME kind/e2e.sh
# with KUBECONFIG naming the file when it is not ~/.kube/config, and the demo
# deployed there (up.sh's deploy_demo does it, from kind/common.sh).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

TD=cluster.local
FRONTEND_ID="spiffe://$TD/ns/$DEMO_NS/sa/frontend"
BACKEND_ID="spiffe://$TD/ns/$DEMO_NS/sa/backend"
CALLS=1000

# "<pod> <init containers...> ready=<Ready condition>": the proxy is injected and the pod ready.
pod_line_ok() {
  local line=" $1 "
  [[ $line == *" tsmesh-init "* && $line == *" tsmesh-proxy "* && $line == *" ready=True "* ]]
}

# The frontend's /split answer (JSON) -> "<v1> <v2> <errors>".
split_counts() {
  # shellcheck disable=SC2016 # JavaScript, not shell
  node -e 'const c = JSON.parse(process.argv[1]); console.log(`${c.v1 ?? 0} ${c.v2 ?? 0} ${c.errors ?? 0}`);' "$1"
}

# V2 CALLS: v2's share is about 10% (5% to 15%). 10% of 1000 is 100 with a
# standard deviation of about 9.5: 50 to 150 fails by chance less than once
# in a million runs.
share_ok() { [ "$1" -ge $(($2 / 20)) ] && [ "$1" -le $(($2 * 3 / 20)) ]; }

# DIRECTION SOURCE_ID DESTINATION_ID, metrics on stdin: a tsmesh_requests_total
# series between the two identities with tls="true" (other labels may follow it).
mtls_requests() {
  grep -Eq "^tsmesh_requests_total\{direction=\"$1\",source_identity=\"$2\",destination_identity=\"$3\",[^}]*tls=\"true\"[,}]"
}

main() {
  while [ $# -gt 0 ]; do
    case "$1" in
      --context) [ $# -ge 2 ] || die "--context needs a kubeconfig context"; TSMESH_KUBE_CONTEXT="$2"; CONTEXT="$2"; shift 2 ;;
      --context=*) TSMESH_KUBE_CONTEXT="${1#*=}"; CONTEXT="${1#*=}"; shift ;;
      *) die "unknown argument $1 (usage: e2e.sh [--context NAME])" ;;
    esac
  done
  need kubectl "see https://kubernetes.io/docs/tasks/tools/"
  need node "Node.js 20.18 or later"
  if [ -n "${TSMESH_KUBE_CONTEXT:-}" ]; then
    kc get namespace "$DEMO_NS" >/dev/null || die "no namespace $DEMO_NS in context $CONTEXT: deploy the demo first (deploy_demo in kind/common.sh)"
  else
    need kind "see https://kind.sigs.k8s.io/docs/user/quick-start/#installation"
    cluster_exists || die "no kind cluster $CLUSTER: run kind/up.sh first"
  fi

  local failures=0 pods name rest result v1 v2 errors frontend_pod v2_pod text
  pass() { printf '  PASS  %s\n' "$*"; }
  fail() { printf '  FAIL  %s\n' "$*"; failures=$((failures + 1)); }
  metrics() { kc get --raw "/api/v1/namespaces/$DEMO_NS/pods/$1:15020/proxy/metrics"; }

  log "1. every demo pod has its proxy and is ready"
  pods="$(kc -n "$DEMO_NS" get pods -l 'app in (frontend,backend)' \
    -o jsonpath='{range .items[*]}{.metadata.name} {.spec.initContainers[*].name} ready={.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}')"
  [ -n "$pods" ] || fail "no demo pod in namespace $DEMO_NS (run kind/up.sh)"
  while read -r name rest; do
    [ -n "$name" ] || continue
    if pod_line_ok "$name $rest"; then pass "$name: tsmesh-init, tsmesh-proxy, ready"; else fail "$name: $rest (want tsmesh-init and tsmesh-proxy, ready=True)"; fi
  done <<<"$pods"

  log "2. $CALLS calls from the frontend to backend: no errors, about 10% to v2"
  result="$(kc -n "$DEMO_NS" exec deploy/frontend -c app -- \
    node -e "fetch('http://127.0.0.1:8080/split?n=$CALLS').then(r => r.text()).then(t => process.stdout.write(t))")"
  printf '  frontend says: %s\n' "$result"
  read -r v1 v2 errors < <(split_counts "$result")
  if [ "$errors" -eq 0 ] && [ $((v1 + v2)) -eq "$CALLS" ]; then pass "$CALLS calls answered ($v1 by v1, $v2 by v2)"; else fail "$errors of $CALLS calls failed"; fi
  if share_ok "$v2" "$CALLS"; then pass "v2 got $v2 of $CALLS (want about 10%)"; else fail "v2 got $v2 of $CALLS (want 5% to 15%)"; fi

  log "3. the traffic is mTLS between the frontend's and the backend's identities"
  frontend_pod="$(kc -n "$DEMO_NS" get pods -l app=frontend -o jsonpath='{.items[0].metadata.name}')"
  v2_pod="$(kc -n "$DEMO_NS" get pods -l app=backend,version=v2 -o jsonpath='{.items[0].metadata.name}')"
  # Into a variable first: with pipefail, grep -q quitting early would fail the pipe.
  text="$(metrics "$frontend_pod")"
  if mtls_requests outbound "$FRONTEND_ID" "$BACKEND_ID" <<<"$text"; then
    pass "$frontend_pod: outbound requests $FRONTEND_ID -> $BACKEND_ID, tls=true"
  else
    fail "$frontend_pod: no outbound mTLS requests to $BACKEND_ID in its metrics"
  fi
  text="$(metrics "$v2_pod")"
  if mtls_requests inbound "$FRONTEND_ID" "$BACKEND_ID" <<<"$text"; then
    pass "$v2_pod: inbound requests from $FRONTEND_ID, tls=true"
  else
    fail "$v2_pod: no inbound mTLS requests from $FRONTEND_ID in its metrics"
  fi

  log "4. tsmesh check"
  if tsmesh check --context "$CONTEXT"; then pass "tsmesh check"; else fail "tsmesh check (see above)"; fi

  echo
  if [ "$failures" -eq 0 ]; then
    echo "e2e: PASS"
  else
    echo "e2e: $failures check(s) FAILED"
    return 1
  fi
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then main "$@"; fi
