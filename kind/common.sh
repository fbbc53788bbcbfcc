# Shared by kind/up.sh, kind/e2e.sh and kind/down.sh (sourced, not run).
# Settings, all optional:
#   TSMESH_KIND_CLUSTER  cluster name (default tsmesh; kubectl context kind-<name>)
#   TSMESH_IMAGE         image tag built and loaded into the cluster (default tsmesh:kind)
#   KIND_NODE_IMAGE      another kindest/node image (Kubernetes 1.29 or later)
#   TSMESH_KUBE_CONTEXT  e2e.sh on any cluster: this kubeconfig context instead of
#                        kind-<name>, no kind binary needed (KUBECONFIG picks the file)
# shellcheck shell=bash

KIND_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(dirname "$KIND_DIR")"
CLUSTER="${TSMESH_KIND_CLUSTER:-tsmesh}"
CONTEXT="${TSMESH_KUBE_CONTEXT:-kind-$CLUSTER}"
IMAGE="${TSMESH_IMAGE:-tsmesh:kind}"
DEMO_NS=tsmesh-demo
# Exported for the scripts that source this file.
export KIND_DIR REPO CLUSTER CONTEXT IMAGE DEMO_NS

log() { printf '\n==> %s\n' "$*" >&2; }
die() { printf '%s: error: %s\n' "$(basename "$0")" "$*" >&2; exit 1; }
need() { command -v "$1" >/dev/null 2>&1 || die "$1 is not installed; $2"; }

# kubectl and the tsmesh CLI of this checkout, both on the kind cluster's context.
kc() { kubectl --context "$CONTEXT" "$@"; }
tsmesh() {
  [ -f "$REPO/dist/cli/main.js" ] || die "the tsmesh CLI is not built: run npm ci in $REPO"
  node "$REPO/dist/cli/main.js" "$@"
}

cluster_exists() { kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; }

# The demo into namespace $DEMO_NS, what a Deployment mounts before the
# Deployment: the namespace (demo.yaml's first document), ConfigMap demo-app
# (demo-app.mjs), then the rest; waits until every Deployment is rolled out.
deploy_demo() {
  local demo d
  demo="$(sed "s|TSMESH_IMAGE|$IMAGE|g" "$KIND_DIR/demo.yaml")"
  awk '/^---$/ { exit } { print }' <<<"$demo" | kc apply -f -
  kc -n "$DEMO_NS" create configmap demo-app --from-file=demo-app.mjs="$KIND_DIR/demo-app.mjs" \
    --dry-run=client -o yaml | kc apply -f -
  kc apply -f - <<<"$demo"
  for d in frontend backend-v1 backend-v2; do
    kc -n "$DEMO_NS" rollout status "deployment/$d" --timeout=180s
  done
}
