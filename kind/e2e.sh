#!/usr/bin/env bash
# End to end on the kind cluster of kind/up.sh:
#   1. every demo pod carries tsmesh-init and tsmesh-proxy and is ready;
#   2. the frontend's calls to backend flow (no errors) and about 10% reach
#      v2, as the TrafficPolicy says (1000 calls; 5% to 15% passes);
#   3. the proxies' metrics show the traffic over mTLS between the
#      frontend's and the backend's SPIFFE identities;
#   4. tsmesh check passes.
# Exit status 0 when all pass.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

need kubectl "see https://kubernetes.io/docs/tasks/tools/"
need node "Node.js 20.18 or later"
need kind "see https://kind.sigs.k8s.io/docs/user/quick-start/#installation"
cluster_exists || die "no kind cluster $CLUSTER: run kind/up.sh first"

TD=cluster.local
FRONTEND_ID="spiffe://$TD/ns/$DEMO_NS/sa/frontend"
BACKEND_ID="spiffe://$TD/ns/$DEMO_NS/sa/backend"
CALLS=1000
failures=0
pass() { printf '  PASS  %s\n' "$*"; }
fail() { printf '  FAIL  %s\n' "$*"; failures=$((failures + 1)); }

log "1. every demo pod has its proxy and is ready"
pods="$(kc -n "$DEMO_NS" get pods -l 'app in (frontend,backend)' \
  -o jsonpath='{range .items[*]}{.metadata.name} {.spec.initContainers[*].name} ready={.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}')"
[ -n "$pods" ] || fail "no demo pod in namespace $DEMO_NS (run kind/up.sh)"
while read -r name containers; do
  [ -n "$name" ] || continue
  case " $containers " in
    *" tsmesh-init "*" tsmesh-proxy "*" ready=True "*) pass "$name: tsmesh-init, tsmesh-proxy, ready" ;;
    *) fail "$name: $containers (want tsmesh-init and tsmesh-proxy, ready=True)" ;;
  esac
done <<<"$pods"

log "2. $CALLS calls from the frontend to backend: no errors, about 10% to v2"
result="$(kc -n "$DEMO_NS" exec deploy/frontend -c app -- \
  node -e "fetch('http://127.0.0.1:8080/split?n=$CALLS').then(r => r.text()).then(t => process.stdout.write(t))")"
printf '  frontend says: %s\n' "$result"
# One line: "<v1> <v2> <errors>". (The quoted text is JavaScript.)
# shellcheck disable=SC2016
read -r v1 v2 errors < <(node -e '
  const c = JSON.parse(process.argv[1]);
  console.log(`${c.v1 ?? 0} ${c.v2 ?? 0} ${c.errors ?? 0}`);
' "$result")
if [ "$errors" -eq 0 ] && [ $((v1 + v2)) -eq "$CALLS" ]; then pass "$CALLS calls answered ($v1 by v1, $v2 by v2)"; else fail "$errors of $CALLS calls failed"; fi
# 10% of 1000 is 100, standard deviation about 9.5: 50 to 150 fails by chance less than once in a million runs.
if [ "$v2" -ge $((CALLS / 20)) ] && [ "$v2" -le $((CALLS * 3 / 20)) ]; then pass "v2 got $v2 of $CALLS (want about 10%)"; else fail "v2 got $v2 of $CALLS (want 5% to 15%)"; fi

log "3. the traffic is mTLS between the frontend's and the backend's identities"
metrics() { kc get --raw "/api/v1/namespaces/$DEMO_NS/pods/$1:15020/proxy/metrics"; }
frontend_pod="$(kc -n "$DEMO_NS" get pods -l app=frontend -o jsonpath='{.items[0].metadata.name}')"
v2_pod="$(kc -n "$DEMO_NS" get pods -l app=backend,version=v2 -o jsonpath='{.items[0].metadata.name}')"
out_re="^tsmesh_requests_total\{direction=\"outbound\",source_identity=\"$FRONTEND_ID\",destination_identity=\"$BACKEND_ID\",[^}]*tls=\"true\"\}"
in_re="^tsmesh_requests_total\{direction=\"inbound\",source_identity=\"$FRONTEND_ID\",destination_identity=\"$BACKEND_ID\",[^}]*tls=\"true\"\}"
if metrics "$frontend_pod" | grep -Eq "$out_re"; then pass "$frontend_pod: outbound requests $FRONTEND_ID -> $BACKEND_ID, tls=true"; else fail "$frontend_pod: no outbound mTLS requests to $BACKEND_ID in its metrics"; fi
if metrics "$v2_pod" | grep -Eq "$in_re"; then pass "$v2_pod: inbound requests from $FRONTEND_ID, tls=true"; else fail "$v2_pod: no inbound mTLS requests from $FRONTEND_ID in its metrics"; fi

log "4. tsmesh check"
if tsmesh check --context "$CONTEXT"; then pass "tsmesh check"; else fail "tsmesh check (see above)"; fi

echo
if [ "$failures" -eq 0 ]; then
  echo "e2e: PASS"
else
  echo "e2e: $failures check(s) FAILED"
  exit 1
fi
