#!/usr/bin/env bash
# Starts or stops a real etcd + kube-apiserver (and optionally
# kube-controller-manager) on 127.0.0.1 for tests.
#
#   apiserver.sh start [DIR]   start in state folder DIR; the last line printed
#                              on stdout is KUBECONFIG=<path>
#   apiserver.sh stop  [DIR]   stop exactly the processes started in DIR (pid
#                              files), then remove DIR
#   apiserver.sh status [DIR]  exit 0 when the API server in DIR is ready
#
# DIR defaults to $TSMESH_APISERVER_DIR, and for start to a fresh temporary
# folder. Binaries come from $TSMESH_CLUSTER_BIN (default
# ${TSMESH_CLUSTER_CACHE:-test/cluster/.cache}/bin, filled by
# test/cluster/build.sh).
#
# Environment for start:
#   TSMESH_APISERVER_CONTROLLERS=1  also run kube-controller-manager (namespace
#                                   deletion, default ServiceAccounts,
#                                   EndpointSlices, ReplicaSets, garbage
#                                   collection)
#   TSMESH_APISERVER_PARENT_PID=N   stop everything when process N exits (so a
#                                   test runner that dies does not leave the
#                                   servers behind)
#   TSMESH_APISERVER_TIMEOUT=S      seconds to wait for /readyz (default 60)
#   TSMESH_APISERVER_EXTRA_ARGS     more kube-apiserver flags (space separated)
#
# Certificates: one self-signed ECDSA P-256 CA signs the serving certificate
# and the client certificates (admin in group system:masters; the controller
# manager). etcd listens on plain HTTP on loopback only.
#
# Service accounts: issuer https://kubernetes.default.svc.cluster.local, API
# audiences that issuer and tsmesh-ca, ECDSA signing key.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bin="${TSMESH_CLUSTER_BIN:-${TSMESH_CLUSTER_CACHE:-$here/.cache}/bin}"
marker=.tsmesh-apiserver
issuer=https://kubernetes.default.svc.cluster.local
audiences="$issuer,tsmesh-ca"

log() { echo "apiserver.sh: $*" >&2; }
die() { log "$*"; exit 1; }

usage() {
  echo "usage: $0 start|stop|status [DIR]" >&2
  exit 2
}

# A TCP port on 127.0.0.1 that nothing listens on, below the ephemeral range so
# outgoing connections do not hold it.
used_ports() {
  awk 'NR > 1 && $4 == "0A" { split($2, a, ":"); print strtonum("0x" a[2]) }' \
    /proc/net/tcp /proc/net/tcp6 2>/dev/null | sort -u
}
# Sets the named variable (no subshell, so ports picked in one start differ).
picked=" "
pick_port() {
  local used p
  used=" $(used_ports | tr '\n' ' ') "
  for _ in $(seq 1 200); do
    p=$((20000 + RANDOM % 12000))
    [[ "$used$picked" == *" $p "* ]] && continue
    picked="$picked$p "
    printf -v "$1" '%s' "$p"
    return 0
  done
  die "no free port found"
}

# pid of a process we started, only if it is still the same process: its
# command line names the state folder.
live_pid() {
  local dir="$1" name="$2" pid
  [ -f "$dir/$name.pid" ] || return 1
  pid="$(cat "$dir/$name.pid")"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  [ -r "/proc/$pid/cmdline" ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$dir" || return 1
  echo "$pid"
}

# True while pid runs (a zombie waiting for its new parent to reap it counts
# as gone).
running() {
  local st
  st="$(cut -d')' -f2 "/proc/$1/stat" 2>/dev/null)" || return 1
  [[ "$st" != " Z"* ]]
}

# Stops the named processes started in dir: SIGTERM, a short grace period
# (the state is thrown away, so a clean shutdown buys nothing), then SIGKILL.
stop_procs() {
  local dir="$1" name pid alive
  shift
  local pids=()
  for name in "$@"; do
    if pid="$(live_pid "$dir" "$name")"; then
      kill -TERM "$pid" 2>/dev/null || true
      pids+=("$pid")
    fi
  done
  for _ in $(seq 1 $(( ${TSMESH_APISERVER_STOP_GRACE_MS:-1500} / 100 ))); do
    alive=0
    for pid in "${pids[@]}"; do running "$pid" && alive=1; done
    [ $alive = 1 ] || break
    sleep 0.1
  done
  for pid in "${pids[@]}"; do
    if running "$pid"; then kill -KILL "$pid" 2>/dev/null || true; fi
  done
  for name in "$@"; do rm -f "$dir/$name.pid"; done
}

cmd_stop() {
  local dir="$1"
  [ -d "$dir" ] || { log "nothing to stop: $dir does not exist"; return 0; }
  [ -f "$dir/$marker" ] || die "$dir is not an API server state folder (no $marker); not touching it"
  stop_procs "$dir" watchdog kube-controller-manager kube-apiserver etcd
  if [ "${TSMESH_APISERVER_KEEP:-0}" = 1 ]; then
    log "stopped; kept $dir"
  else
    rm -rf "$dir"
    log "stopped; removed $dir"
  fi
}

# The end of a program's log: its error lines when it has some (klog E/F
# lines, etcd error JSON), else its last lines.
show_log() {
  local f="$1/$2.log" n="${3:-15}"
  [ -f "$f" ] || return 0
  if grep -qE '^[EF][0-9]{4} |"level":"(error|fatal|panic)"' "$f"; then
    grep -E '^[EF][0-9]{4} |"level":"(error|fatal|panic)"' "$f" | tail -n "$n" >&2
  else
    tail -n "$n" "$f" >&2
  fi
}

readyz() {
  local dir="$1" url
  url="$(cat "$dir/url" 2>/dev/null)" || return 1
  curl -sf --max-time 2 --cacert "$dir/pki/ca.crt" --cert "$dir/pki/admin.crt" \
    --key "$dir/pki/admin.key" "$url/readyz" >/dev/null 2>&1
}

# Starts a program in the background with its own log and pid file. Its
# command line contains the state folder (live_pid relies on it). Without job
# control, background programs ignore SIGINT: stop (or the watchdog) ends them.
launch() {
  local dir="$1" name="$2"
  shift 2
  "$@" </dev/null >"$dir/$name.log" 2>&1 &
  local pid=$!
  echo "$pid" >"$dir/$name.pid"
  # Until the forked shell has exec'd the program, its command line is this
  # script's: wait for the exec so live_pid does not take it for gone.
  for _ in $(seq 1 100); do
    live_pid "$dir" "$name" >/dev/null && return 0
    running "$pid" || return 0
    sleep 0.02
  done
}

gen_certs() {
  local pki="$1" sans
  mkdir -p "$pki"
  (
    cd "$pki"
    ec() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
    ec ca.key
    openssl req -x509 -new -key ca.key -days 3650 -subj "/CN=tsmesh-test-ca" \
      -addext "basicConstraints=critical,CA:TRUE" \
      -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" \
      -out ca.crt 2>/dev/null
    sign() { # name subject extensions
      ec "$1.key"
      openssl req -new -key "$1.key" -subj "$2" -out "$1.csr" 2>/dev/null
      printf '%s\n' "$3" >"$1.ext"
      openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial \
        -days 3650 -extfile "$1.ext" -out "$1.crt" 2>/dev/null
      rm -f "$1.csr" "$1.ext"
    }
    sans="DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,IP:127.0.0.1,IP:10.96.0.1"
    sign apiserver "/CN=kube-apiserver" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=$sans"
    sign admin "/O=system:masters/CN=tsmesh-test-admin" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth"
    sign controller-manager "/CN=system:kube-controller-manager" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth"
    # Service account token signing key (ES256).
    ec sa.key
    openssl pkey -in sa.key -pubout -out sa.pub 2>/dev/null
    chmod 600 ./*.key
  )
}

b64() { base64 -w0 <"$1"; }

write_kubeconfig() { # path url user-cert user-key user-name
  cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: tsmesh-test
  cluster:
    server: $2
    certificate-authority-data: $(b64 "$(dirname "$3")/ca.crt")
users:
- name: $5
  user:
    client-certificate-data: $(b64 "$3")
    client-key-data: $(b64 "$4")
contexts:
- name: tsmesh-test
  context:
    cluster: tsmesh-test
    user: $5
current-context: tsmesh-test
EOF
  chmod 600 "$1"
}

# Returns 1 (retry with other ports) when the program's log says its port was
# taken meanwhile, else 2.
port_clash() {
  grep -q 'address already in use' "$1/$2.log" 2>/dev/null && return 1
  return 2
}

# One attempt at starting everything; returns 1 when a port was taken
# meanwhile (the caller retries with other ports), 2 on other failures.
try_start() {
  local dir="$1" etcd_port peer_port api_port url deadline name extra=()
  pick_port etcd_port
  pick_port peer_port
  pick_port api_port
  url="https://127.0.0.1:$api_port"
  echo "$url" >"$dir/url"
  rm -rf "$dir/etcd-data"

  launch "$dir" etcd "$bin/etcd" \
    --name tsmesh-test \
    --data-dir "$dir/etcd-data" \
    --listen-client-urls "http://127.0.0.1:$etcd_port" \
    --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$peer_port" \
    --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
    --initial-cluster "tsmesh-test=http://127.0.0.1:$peer_port" \
    --unsafe-no-fsync \
    --log-level warn

  deadline=$((SECONDS + 20))
  until curl -sf --max-time 1 "http://127.0.0.1:$etcd_port/health" >/dev/null 2>&1; do
    live_pid "$dir" etcd >/dev/null || { log "etcd exited early:"; show_log "$dir" etcd; port_clash "$dir" etcd; return; }
    [ $SECONDS -lt $deadline ] || { log "etcd not healthy after 20s:"; show_log "$dir" etcd; return 2; }
    sleep 0.1
  done

  if [ -n "${TSMESH_APISERVER_EXTRA_ARGS:-}" ]; then
    read -r -a extra <<<"$TSMESH_APISERVER_EXTRA_ARGS"
  fi
  launch "$dir" kube-apiserver "$bin/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$etcd_port" \
    --bind-address 127.0.0.1 \
    --advertise-address 127.0.0.1 \
    --secure-port "$api_port" \
    --cert-dir "$dir/pki/generated" \
    --tls-cert-file "$dir/pki/apiserver.crt" \
    --tls-private-key-file "$dir/pki/apiserver.key" \
    --client-ca-file "$dir/pki/ca.crt" \
    --authorization-mode Node,RBAC \
    --anonymous-auth=true \
    --service-account-issuer "$issuer" \
    --service-account-key-file "$dir/pki/sa.pub" \
    --service-account-signing-key-file "$dir/pki/sa.key" \
    --api-audiences "$audiences" \
    --service-cluster-ip-range 10.96.0.0/16 \
    --endpoint-reconciler-type none \
    --allow-privileged=true \
    --profiling=false \
    --v 1 \
    "${extra[@]}"

  deadline=$((SECONDS + ${TSMESH_APISERVER_TIMEOUT:-60}))
  until readyz "$dir"; do
    for name in etcd kube-apiserver; do
      live_pid "$dir" "$name" >/dev/null || {
        log "$name exited early:"; show_log "$dir" "$name"; port_clash "$dir" "$name"; return; }
    done
    [ $SECONDS -lt $deadline ] || {
      log "kube-apiserver not ready after ${TSMESH_APISERVER_TIMEOUT:-60}s:"
      show_log "$dir" kube-apiserver 30; return 2; }
    sleep 0.2
  done
}

# The controllers a mesh test needs: default ServiceAccounts and their
# kube-root-ca.crt, namespace deletion, Deployments -> ReplicaSets -> Pods,
# Endpoints/EndpointSlices, garbage collection, aggregated ClusterRoles.
controllers=serviceaccount-controller,serviceaccount-token-controller,root-ca-certificate-publisher-controller
controllers+=,namespace-controller,garbage-collector-controller,deployment-controller,replicaset-controller
controllers+=,endpoints-controller,endpointslice-controller,endpointslice-mirroring-controller
controllers+=,clusterrole-aggregation-controller

start_controllers() {
  local dir="$1"
  write_kubeconfig "$dir/controller-manager.kubeconfig" "$(cat "$dir/url")" \
    "$dir/pki/controller-manager.crt" "$dir/pki/controller-manager.key" system:kube-controller-manager
  launch "$dir" kube-controller-manager "$bin/kube-controller-manager" \
    --kubeconfig "$dir/controller-manager.kubeconfig" \
    --authentication-kubeconfig "$dir/controller-manager.kubeconfig" \
    --authorization-kubeconfig "$dir/controller-manager.kubeconfig" \
    --bind-address 127.0.0.1 \
    --secure-port 0 \
    --leader-elect=false \
    --use-service-account-credentials=true \
    --service-account-private-key-file "$dir/pki/sa.key" \
    --root-ca-file "$dir/pki/ca.crt" \
    --cluster-signing-cert-file "$dir/pki/ca.crt" \
    --cluster-signing-key-file "$dir/pki/ca.key" \
    --controllers "$controllers" \
    --v 1
  sleep 0.3
  live_pid "$dir" kube-controller-manager >/dev/null || {
    log "kube-controller-manager exited early:"; show_log "$dir" kube-controller-manager; return 1; }
}

start_watchdog() {
  local dir="$1" ppid="$2"
  # The loop's command line names the folder so that stop can verify it.
  launch "$dir" watchdog bash -c '
    dir="$1"; ppid="$2"; script="$3"
    while kill -0 "$ppid" 2>/dev/null && [ -d "$dir" ]; do sleep 1; done
    [ -d "$dir" ] && rm -f "$dir/watchdog.pid" && exec bash "$script" stop "$dir"
  ' tsmesh-apiserver-watchdog "$dir" "$ppid" "$here/apiserver.sh"
}

cmd_start() {
  local dir="$1" attempt rc t0
  t0=$(date +%s%N)
  for b in etcd kube-apiserver; do
    [ -x "$bin/$b" ] || die "$bin/$b missing: run test/cluster/build.sh first"
  done
  if [ "${TSMESH_APISERVER_CONTROLLERS:-0}" = 1 ]; then
    [ -x "$bin/kube-controller-manager" ] || die "$bin/kube-controller-manager missing: run test/cluster/build.sh first"
  fi
  command -v openssl >/dev/null || die "openssl not found"
  command -v curl >/dev/null || die "curl not found"

  if [ -z "$dir" ]; then
    dir="$(mktemp -d "${TMPDIR:-/tmp}/tsmesh-apiserver.XXXXXX")"
  else
    mkdir -p "$dir"
    [ -z "$(ls -A "$dir")" ] || [ -f "$dir/$marker" ] || die "$dir is not empty and not an API server state folder"
    if [ -f "$dir/$marker" ]; then cmd_stop "$dir"; mkdir -p "$dir"; fi
  fi
  dir="$(cd "$dir" && pwd)"
  touch "$dir/$marker"
  # From here on a failed start leaves nothing running. (A global: the trap
  # may run after this function's locals are gone.)
  starting_dir="$dir"
  trap 'rc=$?; if [ $rc -ne 0 ]; then log "start failed (exit $rc); stopping what was started"; cmd_stop "$starting_dir"; fi' EXIT

  gen_certs "$dir/pki"
  for attempt in 1 2 3; do
    rc=0
    try_start "$dir" || rc=$?
    [ $rc -eq 0 ] && break
    stop_procs "$dir" kube-apiserver etcd
    [ $rc -eq 1 ] && [ $attempt -lt 3 ] || exit 1
    log "retrying with other ports"
  done

  if [ "${TSMESH_APISERVER_CONTROLLERS:-0}" = 1 ]; then
    start_controllers "$dir"
  fi
  if [ -n "${TSMESH_APISERVER_PARENT_PID:-}" ]; then
    start_watchdog "$dir" "$TSMESH_APISERVER_PARENT_PID"
  fi

  local url
  url="$(cat "$dir/url")"
  write_kubeconfig "$dir/admin.kubeconfig" "$url" "$dir/pki/admin.crt" "$dir/pki/admin.key" tsmesh-test-admin
  cat >"$dir/env" <<EOF
TSMESH_APISERVER_DIR=$dir
TSMESH_APISERVER_URL=$url
KUBECONFIG=$dir/admin.kubeconfig
EOF
  trap - EXIT
  log "ready at $url in $(( ($(date +%s%N) - t0) / 1000000 )) ms (state in $dir)"
  echo "TSMESH_APISERVER_DIR=$dir"
  echo "TSMESH_APISERVER_URL=$url"
  echo "KUBECONFIG=$dir/admin.kubeconfig"
}

action="${1:-}"
dir="${2:-${TSMESH_APISERVER_DIR:-}}"
case "$action" in
  start) cmd_start "$dir" ;;
  stop)
    [ -n "$dir" ] || die "stop needs the state folder (argument or TSMESH_APISERVER_DIR)"
    cmd_stop "$dir" ;;
  status)
    [ -n "$dir" ] || die "status needs the state folder (argument or TSMESH_APISERVER_DIR)"
    readyz "$dir" ;;
  *) usage ;;
esac
