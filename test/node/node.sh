#!/usr/bin/env bash
# A one-node Kubernetes cluster for tests, isolated from the host: etcd,
# kube-apiserver, kube-controller-manager, kube-scheduler, containerd (with
# runc and the CNI bridge), kubelet and kube-proxy (iptables) run inside a
# network namespace and a private mount namespace of their own, started by
# one anchor process; CoreDNS runs as a pod. Built by test/node/build.sh.
#
#   node.sh start          start a node; prints TSMESH_NODE_DIR=..., KUBECONFIG=...
#                          (the last line) once the node is Ready and DNS serves
#   node.sh stop DIR       stop everything of the node in DIR and remove it
#   node.sh sweep          stop what runs of this script left behind when they
#                          were killed (SIGKILL): state folders whose owner is gone
#                          and cgroups of no live node
#   node.sh enter DIR CMD  run CMD in the node's network and mount namespaces
#   node.sh status DIR     exit 0 while the node's API server answers
#
# Isolation, and what stop removes:
#   - processes: every daemon, containerd shim and container runs in the cgroup
#     tsmesh-node-ID (in each cgroup hierarchy; the kubelet's cgroupRoot), so
#     stop freezes that cgroup and kills exactly its processes, by PID, then
#     removes the cgroups. Nothing is ever killed by name.
#   - network: the node's links (a veth pair with both ends inside, the CNI
#     bridge, the pods' veths), its iptables rules (kube-proxy, the bridge's
#     masquerade, portmap) and its per-namespace sysctls live in the node's
#     network namespace, gone with its last process. The host's API clients
#     reach the API server through a relay: 127.0.0.1:PORT on the host -> a
#     Unix socket in DIR -> 127.0.0.1:6443 inside the namespace.
#   - mounts: all in the private mount namespace (propagation private), gone
#     with it: a tmpfs over /run (containerd's shim sockets, /run/netns),
#     a tmpfs over DIR/data (containerd's images and snapshots, etcd), DIR/varlib over /var/lib (CNI cache), DIR/varlog over /var/log (pod
#     logs), and files over the global sysctls the kubelet sets
#     (vm.overcommit_memory, kernel.panic, ...), so the host keeps its values.
#   - files: only DIR (TSMESH_NODE_STATE_ROOT, default /tmp, /tsmesh-node.ID).
#
# Environment:
#   TSMESH_NODE_PARENT_PID=N   stop the node when process N exits (a watchdog in
#                              the host's namespaces; the TypeScript helper sets it)
#   TSMESH_NODE_CACHE          build cache (default test/node/.cache)
#   TSMESH_NODE_STATE_ROOT     where state folders go (default /tmp)
#   TSMESH_NODE_TIMEOUT=S      seconds to wait for the node to be ready (default 180)
#   TSMESH_NODE_KEEP=1         keep DIR (logs) after stop
#   TSMESH_NODE_TMPFS=0        keep containerd's and etcd's data on disk in DIR/data
#                              instead of a tmpfs (up to 4 GB of memory; about 1 GB used)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cache="${TSMESH_NODE_CACHE:-$here/.cache}"
cluster_bin="${TSMESH_CLUSTER_BIN:-${TSMESH_CLUSTER_CACHE:-$repo/test/cluster/.cache}/bin}"
state_root="${TSMESH_NODE_STATE_ROOT:-/tmp}"
marker=.tsmesh-node
prefix=tsmesh-node

NODE_NAME=tsmesh-node
NODE_IP=10.200.0.2
NODE_GW=10.200.0.1
POD_CIDR=10.244.0.0/24
CLUSTER_CIDR=10.244.0.0/16
SERVICE_CIDR=10.96.0.0/16
KUBERNETES_SVC_IP=10.96.0.1
DNS_IP=10.96.0.10
API_PORT=6443
PAUSE_IMAGE=docker.io/library/tsmesh-pause:node
COREDNS_IMAGE=docker.io/library/tsmesh-coredns:node
# The global (not per-namespace) sysctls the kubelet sets; covered by files.
GLOBAL_SYSCTLS=(vm/overcommit_memory vm/panic_on_oom kernel/panic kernel/panic_on_oops kernel/keys/root_maxkeys kernel/keys/root_maxbytes)

log() { echo "node.sh: $*" >&2; }
die() { log "$*"; exit 1; }
ms() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }
usage() { echo "usage: $0 start | stop DIR | sweep | enter DIR CMD... | status DIR" >&2; exit 2; }

# --- processes ---------------------------------------------------------------

# "PID STARTTIME" of a process (field 22 of /proc/PID/stat), to tell it from a
# later process with the same PID.
proc_id() {
  local pid="$1" s
  s="$(cat "/proc/$pid/stat" 2>/dev/null)" || return 1
  s="${s##*) }"
  # shellcheck disable=SC2086 # split the fields after the command name
  set -- $s
  echo "$pid ${20}"
}
# True while the process recorded as "PID STARTTIME" in FILE runs.
alive_as() {
  local pid start now
  [ -f "$1" ] || return 1
  read -r pid start <"$1" || return 1
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  now="$(proc_id "$pid")" || return 1
  [ "$now" = "$pid $start" ] || return 1
  [[ "$(cut -d')' -f2 "/proc/$pid/stat" 2>/dev/null)" != " Z"* ]]
}

# --- cgroups ------------------------------------------------------------------

# Every cgroup hierarchy mounted under /sys/fs/cgroup (v1 controllers, the
# named systemd hierarchy, the unified one of a hybrid layout, or cgroup v2).
hierarchies() { awk '($3 == "cgroup" || $3 == "cgroup2") && $2 ~ "^/sys/fs/cgroup" { print $2 }' /proc/mounts | sort -u; }
# The hierarchy whose cgroup.procs lists a node's processes.
pids_hierarchy() {
  local h
  for h in /sys/fs/cgroup/pids /sys/fs/cgroup/memory /sys/fs/cgroup; do
    [ -f "$h/cgroup.procs" ] && { echo "$h"; return; }
  done
  hierarchies | head -n 1
}
cgroup_v2() { [ "$(stat -fc %T /sys/fs/cgroup)" = cgroup2fs ]; }

# Creates CG/daemons in every hierarchy (cpuset: CPUs and memory nodes copied
# from the root, or it would take no task).
make_cgroups() {
  local cg="$1" h
  for h in $(hierarchies); do
    mkdir -p "$h/$cg/daemons"
    if [ -f "$h/cpuset.cpus" ] && [ ! -f "$h/cgroup.controllers" ]; then
      cat "$h/cpuset.cpus" >"$h/$cg/cpuset.cpus"; cat "$h/cpuset.mems" >"$h/$cg/cpuset.mems"
      cat "$h/cpuset.cpus" >"$h/$cg/daemons/cpuset.cpus"; cat "$h/cpuset.mems" >"$h/$cg/daemons/cpuset.mems"
    fi
  done
}
join_cgroups() { # CG PID
  local h
  for h in $(hierarchies); do
    [ -d "$h/$1/daemons" ] && echo "$2" >"$h/$1/daemons/cgroup.procs"
  done
}
cgroup_pids() { # CG
  local h
  h="$(pids_hierarchy)"
  [ -d "$h/$1" ] || return 0
  find "$h/$1" -name cgroup.procs -exec cat {} + 2>/dev/null | sort -un
}
freeze() { # CG FROZEN|THAWED
  if [ -f "/sys/fs/cgroup/freezer/$1/freezer.state" ]; then
    echo "$2" >"/sys/fs/cgroup/freezer/$1/freezer.state" 2>/dev/null || true
  elif [ -f "/sys/fs/cgroup/$1/cgroup.freeze" ]; then
    { [ "$2" = FROZEN ] && echo 1 || echo 0; } >"/sys/fs/cgroup/$1/cgroup.freeze" 2>/dev/null || true
  fi
}
# Kills every process in the cgroup tree CG (frozen first, so none forks
# meanwhile), waits for them, and removes the cgroups, deepest first.
kill_cgroup() {
  local cg="$1" pids h left
  for _ in $(seq 1 50); do
    pids="$(cgroup_pids "$cg")"
    [ -n "$pids" ] || break
    freeze "$cg" FROZEN
    for p in $pids; do kill -KILL "$p" 2>/dev/null || true; done
    freeze "$cg" THAWED
    sleep 0.1
  done
  left="$(cgroup_pids "$cg")"
  [ -z "$left" ] || log "processes still in cgroup $cg: $left"
  for h in $(hierarchies); do
    [ -d "$h/$cg" ] || continue
    find "$h/$cg" -depth -type d -exec rmdir {} + 2>/dev/null || true
    [ ! -d "$h/$cg" ] || log "could not remove cgroup $h/$cg"
  done
}

# --- stop and sweep -------------------------------------------------------------

is_state_dir() { [ -d "$1" ] && [ -f "$1/$marker" ]; }

cmd_stop() {
  local dir="$1" id
  [ -d "$dir" ] || { log "nothing to stop: $dir does not exist"; return 0; }
  is_state_dir "$dir" || die "$dir is not a node state folder (no $marker); not touching it"
  dir="$(cd "$dir" && pwd)"
  id="$(cat "$dir/$marker")"
  [[ "$id" =~ ^[A-Za-z0-9]+$ ]] || die "$dir/$marker does not hold a node id"
  # The watchdog first (it would run stop too), unless it is the caller.
  if alive_as "$dir/watchdog.id" && [ "$(cut -d' ' -f1 "$dir/watchdog.id")" != "${TSMESH_NODE_STOPPER:-}" ]; then
    kill -KILL "$(cut -d' ' -f1 "$dir/watchdog.id")" 2>/dev/null || true
  fi
  local t0 t1
  t0=$(date +%s%N)
  kill_cgroup "$prefix-$id"
  t1=$(date +%s%N)
  # The private mount namespace went with its last process; nothing of it is
  # mounted here, so removing DIR removes files only.
  if [ "${TSMESH_NODE_KEEP:-0}" = 1 ]; then
    rm -f "$dir/watchdog.id" "$dir/owner"
    log "stopped in $(ms "$t0") ms; kept $dir"
  else
    rm -rf "$dir"
    log "stopped: processes and cgroups in $(( (t1 - t0) / 1000000 )) ms, $dir removed in $(ms "$t1") ms"
  fi
}

# The state folder of the node of cgroup CG, from its anchor's command line
# (bash node.sh __anchor DIR).
cgroup_dir() {
  local p args
  for p in $(cgroup_pids "$1"); do
    mapfile -d '' args <"/proc/$p/cmdline" 2>/dev/null || continue
    if [ "${#args[@]}" -ge 2 ] && [ "${args[-2]}" = __anchor ]; then
      echo "${args[-1]}"
      return 0
    fi
  done
  return 1
}

cmd_sweep() {
  local d h cg id n=0
  for d in "$state_root/$prefix".*; do
    is_state_dir "$d" || continue
    alive_as "$d/owner" && continue
    log "sweeping $d (its owner is gone)"
    cmd_stop "$d"; n=$((n + 1))
  done
  for h in $(hierarchies); do
    for cg in "$h/$prefix"-*; do
      [ -d "$cg" ] || continue
      id="${cg##*/"$prefix"-}"
      # A node started with another TSMESH_NODE_STATE_ROOT names its folder
      # on its anchor's command line.
      d="$(cgroup_dir "$prefix-$id")" || d="$state_root/$prefix.$id"
      is_state_dir "$d" && alive_as "$d/owner" && continue
      log "sweeping cgroup $prefix-$id (no live node)"
      kill_cgroup "$prefix-$id"; n=$((n + 1))
    done
  done
  [ "$n" -eq 0 ] || log "swept $n leftover(s)"
}

# --- certificates and configuration -----------------------------------------------

gen_pki() {
  local pki="$1"
  mkdir -p "$pki"
  (
    cd "$pki"
    ec() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
    ec ca.key
    openssl req -x509 -new -key ca.key -days 3650 -subj "/CN=tsmesh-node-ca" \
      -addext "basicConstraints=critical,CA:TRUE" \
      -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" -out ca.crt 2>/dev/null
    sign() { # name subject usage [sans]
      ec "$1.key"
      openssl req -new -key "$1.key" -subj "$2" -out "$1.csr" 2>/dev/null
      { echo "basicConstraints=CA:FALSE"; echo "keyUsage=critical,digitalSignature,keyEncipherment"
        echo "extendedKeyUsage=$3"; [ -z "${4:-}" ] || echo "subjectAltName=$4"; } >"$1.ext"
      openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
        -extfile "$1.ext" -out "$1.crt" 2>/dev/null
      rm -f "$1.csr" "$1.ext"
    }
    sign apiserver /CN=kube-apiserver serverAuth \
      "DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,DNS:$NODE_NAME,IP:127.0.0.1,IP:$KUBERNETES_SVC_IP,IP:$NODE_IP"
    sign admin "/O=system:masters/CN=tsmesh-node-admin" clientAuth
    sign apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" clientAuth
    sign controller-manager /CN=system:kube-controller-manager clientAuth
    sign scheduler /CN=system:kube-scheduler clientAuth
    sign kube-proxy /CN=system:kube-proxy clientAuth
    sign kubelet "/O=system:nodes/CN=system:node:$NODE_NAME" clientAuth
    sign kubelet-serving "/CN=$NODE_NAME" serverAuth "DNS:$NODE_NAME,IP:$NODE_IP,IP:127.0.0.1"
    ec sa.key
    openssl pkey -in sa.key -pubout -out sa.pub 2>/dev/null
    chmod 600 ./*.key
  )
}

b64() { base64 -w0 <"$1"; }
kubeconfig() { # OUT SERVER NAME
  cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: $NODE_NAME
  cluster:
    server: $2
    certificate-authority-data: $(b64 "$dir/pki/ca.crt")
users:
- name: $3
  user:
    client-certificate-data: $(b64 "$dir/pki/$3.crt")
    client-key-data: $(b64 "$dir/pki/$3.key")
contexts:
- name: $NODE_NAME
  context:
    cluster: $NODE_NAME
    user: $3
current-context: $NODE_NAME
EOF
  chmod 600 "$1"
}

write_configs() {
  local c="$dir/config" server="https://127.0.0.1:$API_PORT" n
  mkdir -p "$c/cni" "$dir/cni/ipam" "$dir/data" "$dir/kubelet" "$dir/varlib" "$dir/varlog" "$dir/sysctl"
  for n in controller-manager scheduler kube-proxy kubelet; do kubeconfig "$c/$n.kubeconfig" "$server" "$n"; done
  kubeconfig "$c/admin.kubeconfig" "$server" admin

  cat >"$c/containerd.toml" <<EOF
version = 2
root = "$dir/data/containerd/root"
state = "$dir/data/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]
[grpc]
  address = "$dir/containerd.sock"
[plugins."io.containerd.internal.v1.opt"]
  path = "$dir/data/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  # root here lacks CAP_SYS_RESOURCE: no negative oom_score_adj (containerd
  # raises what the kubelet asks for sandboxes and Guaranteed pods to its own, 0).
  restrict_oom_score_adj = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$(cni_bin_dir)"
    conf_dir = "$c/cni"
    max_conf_num = 1
EOF

  cat >"$c/cni/10-tsmesh-node.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "tsmesh-node",
  "plugins": [
    {
      "type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": true, "hairpinMode": true,
      "ipam": { "type": "host-local", "dataDir": "$dir/cni/ipam", "ranges": [[{ "subnet": "$POD_CIDR" }]], "routes": [{ "dst": "0.0.0.0/0" }] }
    },
    { "type": "portmap", "capabilities": { "portMappings": true } }
  ]
}
EOF

  cat >"$c/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
containerRuntimeEndpoint: unix://$dir/containerd.sock
cgroupDriver: cgroupfs
cgroupRoot: /$prefix-$id
failCgroupV1: false
failSwapOn: false
address: $NODE_IP
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
authentication:
  anonymous: { enabled: false }
  webhook: { enabled: true }
  x509: { clientCAFile: $dir/pki/ca.crt }
authorization: { mode: Webhook }
tlsCertFile: $dir/pki/kubelet-serving.crt
tlsPrivateKeyFile: $dir/pki/kubelet-serving.key
clusterDomain: cluster.local
clusterDNS: [$DNS_IP]
resolvConf: $dir/config/resolv.conf
oomScoreAdj: 0
podLogsDir: /var/log/pods
volumePluginDir: $dir/kubelet/volume-plugins
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: { memory.available: 100Mi, nodefs.available: 1%, imagefs.available: 1%, nodefs.inodesFree: 1% }
serializeImagePulls: false
maxPods: 110
EOF
  # No host search domains or resolvers leak into the pods.
  echo "nameserver 127.0.0.1" >"$c/resolv.conf"

  cat >"$c/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: { kubeconfig: $c/kube-proxy.kubeconfig }
hostnameOverride: $NODE_NAME
mode: iptables
clusterCIDR: $CLUSTER_CIDR
bindAddress: $NODE_IP
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
# maxPerCore 0 leaves nf_conntrack_max (global) alone; timeouts 0 leave them too.
conntrack: { maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s }
EOF
}

cni_bin_dir() {
  local d
  for d in /usr/lib/cni /opt/cni/bin; do [ -x "$d/bridge" ] && { echo "$d"; return; }; done
  echo /usr/lib/cni
}

# --- the anchor: runs inside the new namespaces ---------------------------------

# Starts a daemon in the background with its log and pid file (the anchor's
# child, killed when the anchor dies).
launch() {
  local name="$1"; shift
  setpriv --pdeathsig KILL "$@" </dev/null >"$dir/logs/$name.log" 2>&1 &
  echo $! >"$dir/run/$name.pid"
}
running_pid() { local p; p="$(cat "$dir/run/$1.pid" 2>/dev/null)" && kill -0 "$p" 2>/dev/null; }
show_log() { # NAME [LINES]
  local f="$dir/logs/$1.log"
  [ -f "$f" ] || return 0
  if grep -qE '^[EF][0-9]{4} |"level":"(error|fatal)"|level=(error|fatal)' "$f"; then
    grep -E '^[EF][0-9]{4} |"level":"(error|fatal)"|level=(error|fatal)' "$f" | tail -n "${2:-15}" >&2
  else
    tail -n "${2:-15}" "$f" >&2
  fi
}
# wait_for WHAT SECONDS DAEMONS... -- CMD: polls CMD until it succeeds; fails
# when one of the daemons exits or the time is up.
wait_for() {
  local what="$1" secs="$2" deadline d; shift 2
  local daemons=()
  while [ "$1" != -- ]; do daemons+=("$1"); shift; done; shift
  deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    for d in "${daemons[@]}"; do
      running_pid "$d" || { log "$d exited while waiting for $what:"; show_log "$d" 30; return 1; }
    done
    [ $SECONDS -lt $deadline ] || { log "timed out after ${secs}s waiting for $what"; for d in "${daemons[@]}"; do show_log "$d" 10; done; return 1; }
    sleep 0.2
  done
}
phase() { echo "$1 $(ms "$2")" >>"$dir/timings"; log "$1: $(ms "$2") ms"; }

anchor() {
  local t0 t c="$dir/config" s
  t0=$(date +%s%N)
  mkdir -p "$dir/logs" "$dir/run"
  # Mounts, private to this namespace.
  mount -t tmpfs -o mode=0755,size=256m tsmesh-node-run /run
  # containerd's images and snapshots and etcd's data (about 1 GB with the
  # demo) in memory: written at every start, thrown away at every stop, where
  # removing them from disk took 35 s of I/O here. Gone with the namespace.
  if [ "${TSMESH_NODE_TMPFS:-1}" = 1 ]; then
    mount -t tmpfs -o mode=0700,size=4g tsmesh-node-data "$dir/data"
  fi
  mkdir -p "$dir/data/containerd/root" "$dir/data/containerd/state"
  mount --bind "$dir/varlib" /var/lib
  mount --bind "$dir/varlog" /var/log
  for s in "${GLOBAL_SYSCTLS[@]}"; do
    [ -f "/proc/sys/$s" ] || continue
    cat "/proc/sys/$s" >"$dir/sysctl/${s//\//.}"
    mount --bind "$dir/sysctl/${s//\//.}" "/proc/sys/$s"
  done
  # The node's links: loopback, and a veth pair with both ends here (no dummy
  # link type in this kernel): node0 holds the node's address, the default
  # route leads out of it (and nowhere: there is no host on the other end).
  ip link set lo up
  ip link add node0 type veth peer name uplink0
  ip addr add "$NODE_IP/24" dev node0
  ip link set uplink0 up
  ip link set node0 up
  ip route add default via "$NODE_GW" dev node0 onlink
  echo 1 >/proc/sys/net/ipv4/ip_forward
  [ ! -w /proc/sys/net/bridge/bridge-nf-call-iptables ] || echo 1 >/proc/sys/net/bridge/bridge-nf-call-iptables
  export PATH="$cache/bin:$cluster_bin:$PATH"
  # kubectl's discovery cache in DIR, not in root's home.
  export KUBECACHEDIR="$dir/kube-cache"
  phase namespaces "$t0"

  t=$(date +%s%N)
  launch containerd containerd --config "$c/containerd.toml" --log-level warn
  wait_for containerd 30 containerd -- ctr --address "$dir/containerd.sock" version
  local img
  for img in pause coredns tsmesh testapps; do
    ctr --address "$dir/containerd.sock" -n k8s.io images import --no-unpack=false "$cache/images/$img.tar" >>"$dir/logs/ctr.log" 2>&1 ||
      { log "ctr images import $img.tar failed:"; tail -n 5 "$dir/logs/ctr.log" >&2; return 1; }
  done
  phase "containerd + images" "$t"

  t=$(date +%s%N)
  launch etcd etcd --name "$NODE_NAME" --data-dir "$dir/data/etcd" \
    --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
    --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
    --initial-cluster "$NODE_NAME=http://127.0.0.1:2380" --unsafe-no-fsync --log-level warn
  wait_for etcd 20 etcd -- curl -sf --max-time 1 http://127.0.0.1:2379/health
  launch kube-apiserver kube-apiserver \
    --etcd-servers http://127.0.0.1:2379 --bind-address 0.0.0.0 --advertise-address "$NODE_IP" \
    --secure-port "$API_PORT" --cert-dir "$dir/pki/generated" \
    --tls-cert-file "$dir/pki/apiserver.crt" --tls-private-key-file "$dir/pki/apiserver.key" \
    --client-ca-file "$dir/pki/ca.crt" \
    --kubelet-client-certificate "$dir/pki/apiserver-kubelet-client.crt" \
    --kubelet-client-key "$dir/pki/apiserver-kubelet-client.key" \
    --kubelet-preferred-address-types InternalIP \
    --authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$dir/pki/sa.pub" --service-account-signing-key-file "$dir/pki/sa.key" \
    --api-audiences https://kubernetes.default.svc.cluster.local,tsmesh-ca \
    --service-cluster-ip-range "$SERVICE_CIDR" --allow-privileged=true --profiling=false --v 1
  wait_for kube-apiserver 60 etcd kube-apiserver -- \
    curl -sf --max-time 2 --cacert "$dir/pki/ca.crt" --cert "$dir/pki/admin.crt" --key "$dir/pki/admin.key" "https://127.0.0.1:$API_PORT/readyz"
  # The relay's inner half: the Unix socket in DIR -> the API server.
  launch relay node "$here/relay.mjs" unix-to-tcp "$dir/apiserver.sock" "127.0.0.1:$API_PORT"
  wait_for relay 10 relay -- test -S "$dir/apiserver.sock"
  phase "etcd + kube-apiserver" "$t"

  t=$(date +%s%N)
  launch kube-controller-manager kube-controller-manager \
    --kubeconfig "$c/controller-manager.kubeconfig" \
    --authentication-kubeconfig "$c/controller-manager.kubeconfig" \
    --authorization-kubeconfig "$c/controller-manager.kubeconfig" \
    --bind-address 127.0.0.1 --leader-elect=false --use-service-account-credentials=true \
    --service-account-private-key-file "$dir/pki/sa.key" --root-ca-file "$dir/pki/ca.crt" \
    --cluster-signing-cert-file "$dir/pki/ca.crt" --cluster-signing-key-file "$dir/pki/ca.key" \
    --allocate-node-cidrs=false --service-cluster-ip-range "$SERVICE_CIDR" --v 1
  launch kube-scheduler kube-scheduler --kubeconfig "$c/scheduler.kubeconfig" \
    --authentication-kubeconfig "$c/scheduler.kubeconfig" --authorization-kubeconfig "$c/scheduler.kubeconfig" \
    --bind-address 127.0.0.1 --leader-elect=false --v 1
  launch kubelet kubelet --config "$c/kubelet.yaml" --kubeconfig "$c/kubelet.kubeconfig" \
    --hostname-override "$NODE_NAME" --node-ip "$NODE_IP" --root-dir "$dir/kubelet" --v 1
  launch kube-proxy kube-proxy --config "$c/kube-proxy.yaml" --v 1
  kc() { kubectl --kubeconfig "$c/admin.kubeconfig" "$@"; }
  wait_for "node $NODE_NAME Ready" 90 kube-controller-manager kube-scheduler kubelet kube-proxy containerd -- \
    sh -c "kubectl --kubeconfig '$c/admin.kubeconfig' get node $NODE_NAME -o jsonpath='{.status.conditions[?(@.type==\"Ready\")].status}' | grep -qx True"
  phase "node Ready" "$t"

  t=$(date +%s%N)
  sed -e "s|COREDNS_IMAGE|$COREDNS_IMAGE|g" -e "s|DNS_IP|$DNS_IP|g" "$here/coredns.yaml" | kc apply -f - >>"$dir/logs/kubectl.log" 2>&1 ||
    { log "applying coredns.yaml failed:"; tail -n 5 "$dir/logs/kubectl.log" >&2; return 1; }
  wait_for "CoreDNS ready" 90 kubelet kube-proxy containerd -- \
    sh -c "kubectl --kubeconfig '$c/admin.kubeconfig' -n kube-system get deploy coredns -o jsonpath='{.status.readyReplicas}' | grep -qx 1"
  # Through kube-proxy's rules to the CoreDNS pod, from the node.
  wait_for "kubernetes.default.svc.cluster.local to resolve" 30 kube-proxy -- node -e "
    const r = new (require('node:dns').promises.Resolver)({ timeout: 1000, tries: 1 });
    r.setServers(['$DNS_IP']);
    r.resolve4('kubernetes.default.svc.cluster.local').then((a) => process.exit(a.includes('$KUBERNETES_SVC_IP') ? 0 : 1), () => process.exit(1));"
  phase "CoreDNS" "$t"
  phase "anchor total" "$t0"
}

# --- start -------------------------------------------------------------------------

check_machine() {
  [ "$(id -u)" = 0 ] || die "needs root (network and mount namespaces, cgroups)"
  local cmd
  for cmd in unshare nsenter setpriv ip iptables conntrack containerd ctr runc openssl curl node flock; do
    command -v "$cmd" >/dev/null 2>&1 || die "$cmd not found"
  done
  [ -x "$(cni_bin_dir)/bridge" ] || die "CNI plugins not found (apt-get install containernetworking-plugins)"
  for b in etcd kube-apiserver kube-controller-manager; do
    [ -x "$cluster_bin/$b" ] || die "$cluster_bin/$b missing: run test/cluster/build.sh"
  done
  for b in kubelet kube-proxy kube-scheduler kubectl; do
    [ -x "$cache/bin/$b" ] || die "$cache/bin/$b missing: run test/node/build.sh"
  done
  for b in pause coredns tsmesh testapps; do
    [ -f "$cache/images/$b.tar" ] || die "$cache/images/$b.tar missing: run test/node/build.sh"
  done
}

cmd_start() {
  local t0 apid hpid port deadline
  t0=$(date +%s%N)
  check_machine
  cmd_sweep
  mkdir -p "$state_root"
  dir="$(mktemp -d "$state_root/$prefix.XXXXXXXX")"
  id="${dir##*/"$prefix".}"
  echo "$id" >"$dir/$marker"
  # The owner: whoever is to outlive the node (the parent given, else the caller).
  proc_id "${TSMESH_NODE_PARENT_PID:-$PPID}" >"$dir/owner" || die "no process ${TSMESH_NODE_PARENT_PID:-$PPID}"
  starting_dir="$dir"
  # shellcheck disable=SC2154 # rc is assigned in the trap itself
  trap 'rc=$?; if [ $rc -ne 0 ] && [ -n "${starting_dir:-}" ]; then log "start failed (exit $rc); stopping what was started"; cmd_stop "$starting_dir" || true; fi' EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  mkdir -p "$dir/logs" "$dir/run"
  : >"$dir/timings"
  gen_pki "$dir/pki"
  write_configs
  make_cgroups "$prefix-$id"

  # The watchdog: in the host's namespaces and outside the node's cgroup, it
  # stops the node when the owner exits.
  if [ -n "${TSMESH_NODE_PARENT_PID:-}" ]; then
    # shellcheck disable=SC2016 # expanded by the inner bash
    setsid bash -c '
      dir="$1"; here="$2"
      while [ -d "$dir" ] && kill -0 "$(cut -d" " -f1 "$dir/owner")" 2>/dev/null; do sleep 1; done
      [ -d "$dir" ] && TSMESH_NODE_STOPPER=$$ exec bash "$here/node.sh" stop "$dir"
    ' tsmesh-node-watchdog "$dir" "$here" </dev/null >>"$dir/logs/watchdog.log" 2>&1 &
    proc_id $! >"$dir/watchdog.id"
  fi

  # The anchor: joins the node's cgroup, then starts every daemon inside a new
  # network namespace and private mount namespace.
  bash -c 'for h in $(awk '"'"'($3 == "cgroup" || $3 == "cgroup2") && $2 ~ "^/sys/fs/cgroup" { print $2 }'"'"' /proc/mounts); do
      [ -d "$h/$1/daemons" ] && echo $$ >"$h/$1/daemons/cgroup.procs"; done
    exec unshare --mount --propagation private --net -- bash "$2" __anchor "$3"' \
    tsmesh-node-anchor "$prefix-$id" "$here/node.sh" "$dir" </dev/null >"$dir/logs/anchor.log" 2>&1 &
  apid=$!
  echo "$apid" >"$dir/anchor.pid"

  # The relay's outer half, in the host's network namespace, in the node's cgroup.
  bash -c 'for h in $(awk '"'"'($3 == "cgroup" || $3 == "cgroup2") && $2 ~ "^/sys/fs/cgroup" { print $2 }'"'"' /proc/mounts); do
      [ -d "$h/$1/daemons" ] && echo $$ >"$h/$1/daemons/cgroup.procs"; done
    exec node "$2" tcp-to-unix 127.0.0.1:0 "$3" "$4"' \
    tsmesh-node-relay "$prefix-$id" "$here/relay.mjs" "$dir/apiserver.sock" "$dir/host-port" </dev/null >"$dir/logs/host-relay.log" 2>&1 &
  hpid=$!

  deadline=$((SECONDS + ${TSMESH_NODE_TIMEOUT:-180}))
  until [ -f "$dir/ready" ]; do
    if ! kill -0 "$apid" 2>/dev/null; then
      wait "$apid" 2>/dev/null || true
      [ -f "$dir/ready" ] && break
      log "the node did not come up:"; tail -n 40 "$dir/logs/anchor.log" >&2; exit 1
    fi
    kill -0 "$hpid" 2>/dev/null || { log "the host relay exited:"; tail -n 5 "$dir/logs/host-relay.log" >&2; exit 1; }
    [ $SECONDS -lt $deadline ] || { log "the node was not ready after ${TSMESH_NODE_TIMEOUT:-180}s:"; tail -n 40 "$dir/logs/anchor.log" >&2; exit 1; }
    sleep 0.2
  done
  port="$(cat "$dir/host-port")"
  kubeconfig "$dir/admin.kubeconfig" "https://127.0.0.1:$port" admin
  cat >"$dir/env" <<EOF
TSMESH_NODE_DIR=$dir
TSMESH_NODE_ANCHOR_PID=$apid
KUBECONFIG=$dir/admin.kubeconfig
EOF
  starting_dir=
  trap - EXIT INT TERM
  echo "bring-up $(ms "$t0")" >>"$dir/timings"
  log "node $NODE_NAME ready in $(ms "$t0") ms (state in $dir; API server at https://127.0.0.1:$port)"
  cat "$dir/env"
}

# The anchor's main: set up, report ready, then hold the namespaces until killed.
cmd_anchor() {
  dir="$1"
  id="$(cat "$dir/$marker")"
  if ! anchor; then
    log "bring-up failed"
    exit 1
  fi
  touch "$dir/ready"
  # Hold the namespaces; stop kills this process with the rest of the cgroup.
  # Not exec: sweep finds the state folder on this command line.
  while :; do sleep 3600; done
}

cmd_enter() {
  local d="$1"; shift
  is_state_dir "$d" || die "$d is not a node state folder"
  [ $# -gt 0 ] || usage
  exec nsenter --target "$(cat "$d/anchor.pid")" --net --mount -- "$@"
}

action="${1:-}"
case "$action" in
  start) cmd_start ;;
  stop) [ -n "${2:-}" ] || usage; cmd_stop "$2" ;;
  sweep) cmd_sweep ;;
  enter) [ -n "${2:-}" ] || usage; cmd_enter "$2" "${@:3}" ;;
  status)
    [ -n "${2:-}" ] || usage
    is_state_dir "$2" || die "$2 is not a node state folder"
    KUBECONFIG="$2/admin.kubeconfig" KUBECACHEDIR="$2/kube-cache" "$cache/bin/kubectl" get --raw /readyz >/dev/null ;;
  __anchor) cmd_anchor "$2" ;;
  *) usage ;;
esac
