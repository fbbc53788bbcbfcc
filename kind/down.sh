#!/usr/bin/env bash
# Deletes the kind cluster of kind/up.sh, and with it everything in it. To
# remove only the mesh and keep the cluster: tsmesh uninstall --context kind-tsmesh
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

need kind "see https://kind.sigs.k8s.io/docs/user/quick-start/#installation"
if cluster_exists; then
  log "deleting kind cluster $CLUSTER"
  kind delete cluster --name "$CLUSTER"
else
  log "no kind cluster $CLUSTER; nothing to delete"
fi
