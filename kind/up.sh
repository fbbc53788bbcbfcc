#!/usr/bin/env bash
# From nothing to a meshed demo app on a local kind cluster:
#   1. create the cluster (kind/kind-config.yaml: Kubernetes 1.33, two nodes)
#   2. build the tsmesh image and load it into the cluster's nodes
#   3. tsmesh install, and wait for the control plane
#   4. deploy the demo (kind/demo.yaml) into namespace tsmesh-demo, labelled
#      for injection: a frontend calling a backend, v1 and v2, and a
#      TrafficPolicy sending 10% of the calls to v2; wait until it is ready
# Needs docker (a running engine), kind, kubectl, node and an `npm ci` of this
# checkout. Running it again reuses the cluster and upgrades in place.
# Then: kind/e2e.sh checks it end to end; kind/down.sh deletes the cluster.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

need docker "see https://docs.docker.com/engine/install/"
need kind "see https://kind.sigs.k8s.io/docs/user/quick-start/#installation"
need kubectl "see https://kubernetes.io/docs/tasks/tools/"
need node "Node.js 20.18 or later"
docker info >/dev/null 2>&1 || die "the Docker engine is not running (docker info fails)"
[ -d "$REPO/node_modules" ] || die "run npm ci in $REPO first (it also builds the tsmesh CLI)"

if cluster_exists; then
  log "kind cluster $CLUSTER exists; reusing it"
else
  log "creating kind cluster $CLUSTER"
  args=(create cluster --name "$CLUSTER" --config "$KIND_DIR/kind-config.yaml" --wait 120s)
  if [ -n "${KIND_NODE_IMAGE:-}" ]; then args+=(--image "$KIND_NODE_IMAGE"); fi
  kind "${args[@]}"
fi

log "building the CLI and the image $IMAGE"
(cd "$REPO" && npm run --silent build)
docker build --tag "$IMAGE" "$REPO"

log "loading $IMAGE into the nodes of $CLUSTER"
kind load docker-image "$IMAGE" --name "$CLUSTER"

log "installing tsmesh"
tsmesh install --context "$CONTEXT" --image "$IMAGE" --wait 180s

# The control plane sets the injector's caBundle when it starts; until then,
# pods of meshed namespaces are refused (failurePolicy Fail).
log "waiting for the injector's caBundle"
for _ in $(seq 1 60); do
  bundle="$(kc get mutatingwebhookconfiguration tsmesh-sidecar-injector -o jsonpath='{.webhooks[0].clientConfig.caBundle}')"
  [ -n "$bundle" ] && break
  sleep 2
done
[ -n "$bundle" ] || die "the control plane did not set the injector's caBundle; see: kubectl --context $CONTEXT -n tsmesh-system logs deployment/tsmesh-control-plane"

log "deploying the demo into namespace $DEMO_NS"
deploy_demo

log "tsmesh check"
tsmesh check --context "$CONTEXT" || die "tsmesh check failed (see above)"

cat <<MSG

The demo runs in namespace $DEMO_NS, every pod with its proxy:
  kubectl --context $CONTEXT -n $DEMO_NS get pods
  kubectl --context $CONTEXT -n $DEMO_NS exec deploy/frontend -c app -- \\
    node -e "fetch('http://127.0.0.1:8080/split?n=200').then(r => r.text()).then(console.log)"
Check it end to end: kind/e2e.sh        Delete the cluster: kind/down.sh
MSG
