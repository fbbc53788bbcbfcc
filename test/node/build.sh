#!/usr/bin/env bash
# Builds what the real-node tier (test/node/) runs, into test/node/.cache/:
#
#   bin/      kubelet, kube-proxy, kube-scheduler, kubectl and pause from the Go
#             module build/k8s (Kubernetes of test/cluster/build, the same
#             versions, so the Go build cache is shared), coredns from
#             build/coredns (only the plugins the cluster DNS uses); etcd,
#             kube-apiserver and kube-controller-manager come from
#             test/cluster/build.sh
#   layers/   the layers of the tsmesh image: a Debian minbase rootfs
#             (mmdebstrap, with iptables, ca-certificates and iproute2), the
#             host's node binary, the production node_modules; and the test
#             apps (esbuild bundles, with @grpc/grpc-js and ws)
#   images/   OCI archives for `ctr images import`: pause, coredns, tsmesh,
#             testapps (rootfs, node and the test apps)
#   gamma/    the Gateway API mesh conformance run (gamma/build.sh): the
#             suite's test binary, Istio's echo server and client; and
#             images/echo.tar, the echo image the suite's mesh manifests name
#
# Each part is cached under a stamp: the Go binaries by go.mod, go.sum, the
# sources and the Go version; the rootfs by its package list and the Debian
# sources; node by its binary; node_modules by package-lock.json and the node
# version; the test apps by their sources, package-lock.json, node and esbuild. Only the tsmesh image's app layer (dist/, manifests/,
# package.json) is rebuilt on every call (dist/ compiled first). Nothing is
# pulled from an image registry. Safe to call concurrently (a lock). Prints
# the time of each part.
#
#   build.sh [all|go|images|gamma]     (default all)
#
# Environment:
#   TSMESH_NODE_CACHE     cache folder (default test/node/.cache)
#   TSMESH_NODE_FORCE=1   rebuild every part
#   TSMESH_NODE_NO_TSC=1  do not recompile dist/ (use it as it is)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cache="${TSMESH_NODE_CACHE:-$here/.cache}"
what="${1:-all}"
case "$what" in all|go|images|gamma) ;; *) echo "usage: $0 [all|go|images|gamma]" >&2; exit 2 ;; esac

# The tsmesh image's Debian packages (the rootfs is keyed by this list).
ROOTFS_SUITE=bookworm
ROOTFS_PACKAGES=iptables,ca-certificates,iproute2
# Image names as the kubelet and containerd see them.
PAUSE_IMAGE=docker.io/library/tsmesh-pause:node
COREDNS_IMAGE=docker.io/library/tsmesh-coredns:node
TSMESH_IMAGE=docker.io/library/tsmesh:node
TESTAPPS_IMAGE=docker.io/library/tsmesh-testapps:node
# Exactly as the Gateway API conformance suite's mesh/manifests.yaml names it.
ECHO_IMAGE=registry.k8s.io/gateway-api/echo-advanced:v1.5.1

log() { echo "build.sh (node): $*"; }
die() { echo "build.sh (node): $*" >&2; exit 1; }
ms() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }

if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then export PATH="/usr/local/go/bin:$PATH"; fi
export GOTOOLCHAIN="${GOTOOLCHAIN:-local}"
export GOFLAGS="${GOFLAGS:--buildvcs=false}"
export CGO_ENABLED="${CGO_ENABLED:-0}"

mkdir -p "$cache/bin" "$cache/layers" "$cache/images"
exec 9>"$cache/build.lock"
flock 9

# fresh NAME HASH: true when the stamp of NAME says HASH (and no force).
fresh() { [ "${TSMESH_NODE_FORCE:-0}" != 1 ] && [ -f "$cache/stamp.$1" ] && [ "$(cat "$cache/stamp.$1")" = "$2" ]; }
stamp() { echo "$2" >"$cache/stamp.$1"; }
sha() { sha256sum | cut -d' ' -f1; }
all_executable() { local b; for b in "$@"; do [ -x "$cache/bin/$b" ] || return 1; done; }

# --- Go binaries -----------------------------------------------------------
build_go() {
  local t0 want k8s_version major minor ldflags vpkg tmp b
  t0=$(date +%s%N)
  command -v go >/dev/null || die "go not found (install Go >= 1.26 or put it on PATH)"
  bash "$repo/test/cluster/build.sh" >/dev/null || die "test/cluster/build.sh failed"
  want="$({
    go version
    echo "GOTOOLCHAIN=$GOTOOLCHAIN CGO_ENABLED=$CGO_ENABLED GOFLAGS=$GOFLAGS"
    sed -n '/^# --- Go binaries/,/^# --- end Go binaries/p' "$here/build.sh"
    (cd "$here/build" && find . -type f \( -name '*.go' -o -name go.mod -o -name go.sum \) | LC_ALL=C sort | xargs cat)
  } | sha)"
  local bins=(kubelet kube-proxy kube-scheduler kubectl pause coredns)
  if fresh go "$want" && all_executable "${bins[@]}"; then
    log "Go binaries up to date (stamp ${want:0:12}) in $(ms "$t0") ms"
    return
  fi
  tmp="$(mktemp -d "$cache/go.XXXXXX")"
  trap 'rm -rf "$tmp"' RETURN
  cd "$here/build/k8s"
  k8s_version="$(go list -m -f '{{.Version}}' k8s.io/kubernetes)"
  major="${k8s_version#v}"; major="${major%%.*}"
  minor="${k8s_version#v*.}"; minor="${minor%%.*}"
  vpkg=k8s.io/component-base/version
  ldflags="-s -w -X $vpkg.gitVersion=$k8s_version -X $vpkg.gitMajor=$major -X $vpkg.gitMinor=$minor -X $vpkg.gitTreeState=clean"
  log "building kubelet, kube-proxy, kube-scheduler, kubectl $k8s_version, pause and coredns with $(go version | cut -d' ' -f3) (minutes when the Go build cache is cold)"
  go mod download
  nice go build -trimpath -ldflags "$ldflags" -o "$tmp/" \
    k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-proxy \
    k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl ./pause
  cd "$here/build/coredns"
  go mod download
  nice go build -trimpath -ldflags "-s -w" -o "$tmp/coredns" .
  cd "$repo"
  for b in "${bins[@]}"; do mv -f "$tmp/$b" "$cache/bin/$b"; done
  stamp go "$want"
  log "built ${bins[*]} in $(ms "$t0") ms"
}
# --- end Go binaries

# --- image layers ----------------------------------------------------------
# tar of a folder as an image layer: root-owned, fixed times, sorted, readable by all.
layer_tar() { # DIR OUT
  tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner --mode='go+rX,go-w' \
    -C "$1" -cf "$2.tmp" . && mv -f "$2.tmp" "$2"
}

build_rootfs() {
  local t0 want out="$cache/layers/rootfs.tar"
  t0=$(date +%s%N)
  command -v mmdebstrap >/dev/null || die "mmdebstrap not found (apt-get install mmdebstrap)"
  local sources=/etc/apt/sources.list.d/debian.sources
  [ -f "$sources" ] || sources=/etc/apt/sources.list
  want="$({ echo "$ROOTFS_SUITE $ROOTFS_PACKAGES"; mmdebstrap --version; cat "$sources"; } | sha)"
  if fresh rootfs "$want" && [ -f "$out" ]; then log "rootfs up to date in $(ms "$t0") ms"; return; fi
  log "building the rootfs: Debian $ROOTFS_SUITE minbase + $ROOTFS_PACKAGES (mmdebstrap)"
  # --skip=output/dev: no device nodes in the layer (the runtime makes /dev).
  # A mirror that fails a download now and then is tried again, three times in all.
  local try
  for try in 1 2 3; do
    if nice mmdebstrap --quiet --format=tar --variant=minbase --include="$ROOTFS_PACKAGES" --skip=output/dev \
      --aptopt='Acquire::Languages "none"' --aptopt='Acquire::Retries "3"' \
      --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
      --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/info/*' \
      "$ROOTFS_SUITE" "$out.tmp" "$sources" </dev/null; then break; fi
    rm -f "$out.tmp"
    [ "$try" -lt 3 ] || die "mmdebstrap failed three times: the apt sources in $sources did not serve Debian $ROOTFS_SUITE (check apt-get update)"
    log "mmdebstrap failed (try $try of 3); trying again in $((try * 15)) s"
    sleep $((try * 15))
  done
  mv -f "$out.tmp" "$out"
  stamp rootfs "$want"
  log "built the rootfs ($(du -m "$out" | cut -f1) MB) in $(ms "$t0") ms"
}

# The host's node (the version the tests run on) at /usr/local/bin/node; its
# libraries (libc, libstdc++) come from the Debian rootfs.
build_node_layer() {
  local t0 want node tmp out="$cache/layers/node.tar"
  t0=$(date +%s%N)
  node="$(readlink -f "$(command -v node)")"
  want="$(sha <"$node")"
  if fresh node "$want" && [ -f "$out" ]; then log "node layer up to date in $(ms "$t0") ms"; return; fi
  tmp="$(mktemp -d "$cache/node.XXXXXX")"
  mkdir -p "$tmp/usr/local/bin"
  cp "$node" "$tmp/usr/local/bin/node"
  chmod 0755 "$tmp/usr/local/bin/node"
  layer_tar "$tmp" "$out"
  rm -rf "$tmp"
  stamp node "$want"
  log "node layer ($("$node" --version), the host's binary $node) in $(ms "$t0") ms"
}

build_modules_layer() {
  local t0 want tmp out="$cache/layers/modules.tar"
  t0=$(date +%s%N)
  want="$({ node --version; cat "$repo/package-lock.json"; } | sha)"
  if fresh modules "$want" && [ -f "$out" ]; then log "node_modules layer up to date in $(ms "$t0") ms"; return; fi
  log "installing the production node_modules (npm ci --omit=dev)"
  tmp="$(mktemp -d "$cache/modules.XXXXXX")"
  mkdir -p "$tmp/opt/tsmesh"
  cp "$repo/package.json" "$repo/package-lock.json" "$tmp/opt/tsmesh/"
  (cd "$tmp/opt/tsmesh" && npm ci --omit=dev --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null)
  rm -f "$tmp/opt/tsmesh/package.json" "$tmp/opt/tsmesh/package-lock.json"
  layer_tar "$tmp" "$out"
  rm -rf "$tmp"
  stamp modules "$want"
  log "node_modules layer ($(du -m "$out" | cut -f1) MB) in $(ms "$t0") ms"
}

# dist/ (compiled now), manifests/, package.json; rebuilt on every call.
build_app_layer() {
  local t0 tmp out="$cache/layers/app.tar"
  t0=$(date +%s%N)
  if [ "${TSMESH_NODE_NO_TSC:-0}" != 1 ]; then
    (cd "$repo" && npx tsc -p tsconfig.build.json) || die "tsc -p tsconfig.build.json failed"
  fi
  [ -f "$repo/dist/cli/main.js" ] || die "$repo/dist/cli/main.js missing: run npm run build"
  tmp="$(mktemp -d "$cache/app.XXXXXX")"
  mkdir -p "$tmp/opt/tsmesh" "$tmp/usr/local/bin"
  cp -r "$repo/dist" "$repo/manifests" "$repo/package.json" "$tmp/opt/tsmesh/"
  chmod 0755 "$tmp/opt/tsmesh/dist/cli/main.js"
  ln -s /opt/tsmesh/dist/cli/main.js "$tmp/usr/local/bin/tsmesh"
  layer_tar "$tmp" "$out"
  rm -rf "$tmp"
  log "app layer (dist/ compiled, manifests/) in $(ms "$t0") ms"
}

# --- test apps -------------------------------------------------------------
# The test apps of protocols.test.ts, each bundled by esbuild (tsx's, from
# node_modules) with what it imports, @grpc/grpc-js and ws among them, into
# one ES module at /opt/tsmesh-test/NAME.mjs: the image's node runs them, and
# neither package joins the production node_modules. Keyed by the entries,
# everything local the last bundle read (its metafile), package-lock.json,
# this section of build.sh and the versions of node and esbuild.
TESTAPPS=(test/netns/grpc-app.ts test/netns/ws-app.ts test/netns/ws-client.ts test/node/apps/http-app.ts test/node/apps/calls.ts)
testapps_key() { # ESBUILD META
  cd "$repo" && {
    node --version
    "$1" --version
    sed -n '/^# --- test apps/,/^# --- end test apps/p' "$here/build.sh"
    cat package-lock.json
    [ ! -f "$2" ] || node -e 'for (const f of Object.keys(require(process.argv[1]).inputs).sort()) if (!f.includes("node_modules/")) console.log(f)' "$2" |
      while read -r f; do echo "$f"; cat "$f" 2>/dev/null || echo "(gone)"; done
  } | sha
}
build_testapps_layer() {
  local t0 tmp esbuild="$repo/node_modules/.bin/esbuild" out="$cache/layers/testapps.tar" meta="$cache/layers/testapps.meta.json"
  t0=$(date +%s%N)
  [ -x "$esbuild" ] || die "$esbuild missing: run npm ci (esbuild comes with tsx)"
  if [ -f "$meta" ] && [ -f "$out" ] && fresh testapps "$(testapps_key "$esbuild" "$meta")"; then
    log "test apps layer up to date in $(ms "$t0") ms"
    return
  fi
  tmp="$(mktemp -d "$cache/testapps.XXXXXX")"
  mkdir -p "$tmp/opt/tsmesh-test"
  # ESM output, with a require() for the CommonJS packages bundled in it.
  (cd "$repo" && "$esbuild" "${TESTAPPS[@]}" --bundle --platform=node --format=esm --target=node20 \
    --outdir="$tmp/opt/tsmesh-test" --entry-names="[name]" --out-extension:.js=.mjs --log-level=warning --metafile="$meta" \
    --banner:js="import { createRequire as tsmeshCreateRequire } from 'node:module'; const require = tsmeshCreateRequire(import.meta.url);") ||
    { rm -rf "$tmp" "$meta"; die "esbuild of the test apps failed"; }
  layer_tar "$tmp" "$out"
  rm -rf "$tmp"
  stamp testapps "$(testapps_key "$esbuild" "$meta")"
  log "test apps layer ($(du -k "$out" | cut -f1) KB: ${TESTAPPS[*]##*/}) in $(ms "$t0") ms"
}
# --- end test apps

single_binary_layer() { # BINARY NAME OUT
  local tmp
  tmp="$(mktemp -d "$cache/bin.XXXXXX")"
  cp "$1" "$tmp/$2"
  chmod 0755 "$tmp/$2"
  layer_tar "$tmp" "$3"
  rm -rf "$tmp"
}

oci() { (cd "$repo" && node --import tsx "$here/oci.ts" "$@"); }

build_images() {
  local t0 t1
  t0=$(date +%s%N)
  build_rootfs
  build_node_layer
  build_modules_layer
  build_app_layer
  build_testapps_layer
  t1=$(date +%s%N)
  if ! fresh images-base "$(cat "$cache/stamp.go")" || [ ! -f "$cache/images/pause.tar" ] || [ ! -f "$cache/images/coredns.tar" ]; then
    single_binary_layer "$cache/bin/pause" pause "$cache/layers/pause.tar"
    single_binary_layer "$cache/bin/coredns" coredns "$cache/layers/coredns.tar"
    oci --out "$cache/images/pause.tar" --name "$PAUSE_IMAGE" --layer "$cache/layers/pause.tar" \
      --entrypoint /pause --user 65535:65535
    oci --out "$cache/images/coredns.tar" --name "$COREDNS_IMAGE" --layer "$cache/layers/coredns.tar" \
      --entrypoint /coredns
    stamp images-base "$(cat "$cache/stamp.go")"
  fi
  oci --out "$cache/images/tsmesh.tar" --name "$TSMESH_IMAGE" \
    --layer "$cache/layers/rootfs.tar" --layer "$cache/layers/node.tar" \
    --layer "$cache/layers/modules.tar" --layer "$cache/layers/app.tar" \
    --entrypoint tsmesh --cmd=--help --user 65532:65532 --workdir /opt/tsmesh \
    --env NODE_ENV=production
  # The test apps' image shares the rootfs and node layers (containerd stores them once).
  local key
  key="$(cat "$cache/stamp.rootfs" "$cache/stamp.node" "$cache/stamp.testapps")"
  if ! fresh images-testapps "$key" || [ ! -f "$cache/images/testapps.tar" ]; then
    oci --out "$cache/images/testapps.tar" --name "$TESTAPPS_IMAGE" \
      --layer "$cache/layers/rootfs.tar" --layer "$cache/layers/node.tar" --layer "$cache/layers/testapps.tar" \
      --entrypoint node --user 1000:1000 --workdir /opt/tsmesh-test
    stamp images-testapps "$key"
  fi
  log "OCI archives in $(ms "$t1") ms; images in $(ms "$t0") ms"
}

# --- gamma -----------------------------------------------------------------
# The echo image of the Gateway API conformance suite's mesh tests, laid out
# as Istio's echo app image (pkg/test/echo/docker/Dockerfile.app): server as
# the entrypoint and client on PATH in /usr/local/bin (the suite runs
# `client URL` in the pod by kubectl exec), a serving certificate at
# /cert.crt and /cert.key (self-signed, made here), user 1338; on the tsmesh
# image's rootfs (containerd stores that layer once). Keyed by the two
# binaries, the rootfs and this section.
build_gamma() {
  local t0 want tmp gamma="$cache/gamma" out="$cache/layers/echo.tar"
  t0=$(date +%s%N)
  bash "$here/gamma/build.sh" "$gamma" || die "test/node/gamma/build.sh failed"
  [ -f "$cache/layers/rootfs.tar" ] || build_rootfs
  want="$({
    cat "$gamma/echo/bin/server" "$gamma/echo/bin/client" "$cache/stamp.rootfs"
    sed -n '/^# --- gamma/,/^# --- end gamma/p' "$here/build.sh"
  } | sha)"
  if fresh echo "$want" && [ -f "$cache/images/echo.tar" ]; then log "echo image up to date in $(ms "$t0") ms"; return; fi
  tmp="$(mktemp -d "$cache/echo.XXXXXX")"
  mkdir -p "$tmp/usr/local/bin"
  cp "$gamma/echo/bin/server" "$gamma/echo/bin/client" "$tmp/usr/local/bin/"
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj /CN=echo -addext subjectAltName=DNS:echo,DNS:localhost \
    -keyout "$tmp/cert.key" -out "$tmp/cert.crt" 2>/dev/null || { rm -rf "$tmp"; die "openssl could not make the echo certificate"; }
  layer_tar "$tmp" "$out"
  rm -rf "$tmp"
  oci --out "$cache/images/echo.tar" --name "$ECHO_IMAGE" \
    --layer "$cache/layers/rootfs.tar" --layer "$out" \
    --entrypoint /usr/local/bin/server --user 1338:1338
  stamp echo "$want"
  log "echo image $ECHO_IMAGE in $(ms "$t0") ms"
}
# --- end gamma

t_all=$(date +%s%N)
case "$what" in
  go) build_go ;;
  images) build_images ;;
  gamma) build_gamma ;;
  all) build_go; build_images; build_gamma ;;
esac
log "done ($what) in $(ms "$t_all") ms"
