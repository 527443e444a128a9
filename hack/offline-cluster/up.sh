#!/usr/bin/env bash
# Brings up the air-gapped single-node cluster and prints its KUBECONFIG path as the last line of stdout.
#
# The node lives in a network namespace of its own ($OFFLINE_NODE_NETNS), joined to the host by one veth pair on
# a /30 ($OFFLINE_HOST_IP <-> $OFFLINE_NODE_IP) and with no default route: pod and service traffic stays inside
# it, and the host reaches only what listens on the node IP (API server :6443, kubelet :10250). Every node process also
# runs in a mount namespace of its own, so the mounts that containerd and the kubelet make (and the tmpfs on
# /run/containerd and /run/netns) never appear on the host. Nothing on the host changes but: the netns and its
# veth, one private bind mount of $OC_STATE/ns, cgroups named /$OFFLINE_NODE_NETNS, files under $OC_STATE.
# down.sh removes all of them.
#
# Usage: up.sh [--control-plane-only]
# Env: OFFLINE_CLUSTER_CACHE, OFFLINE_CLUSTER_STATE (see lib.sh); OFFLINE_CLUSTER_KEDA=0 (no KEDA);
#      OFFLINE_CLUSTER_PROMETHEUS=0 (no Prometheus Operator, no Prometheus); OFFLINE_CLUSTER_ISTIO=0 (no Istio);
#      OFFLINE_CLUSTER_JAEGER=0 (no Jaeger);
#      OFFLINE_CLUSTER_CRDS (upstream CRDs to install; default ../shared/crds beside the repo).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

control_plane_only=0
[[ "${1:-}" == "--control-plane-only" ]] && control_plane_only=1

[[ "$(id -u)" -eq 0 ]] || oc_die "needs root (network namespaces, mounts, cgroups)"
# A cluster whose processes are gone (the shell or CI job that ran it ended) leaves its namespaces, mounts,
# cgroups and state behind: clear them. A cluster still running is left alone.
if [[ -e "$OC_STATE/ns/mnt" || -e "/run/netns/$OFFLINE_NODE_NETNS" || -d "$OC_STATE/pids" ]]; then
  for f in "$OC_STATE"/pids/*.pid; do
    # alive and still ours (every daemon's command line names a file under the state directory)
    [[ -f "$f" ]] && tr '\0' ' ' < "/proc/$(cat "$f")/cmdline" 2>/dev/null | grep -qF "$OC_STATE" && \
      oc_die "a cluster is already running (state $OC_STATE, $(basename "$f" .pid) alive): run down.sh first"
  done
  oc_log "removing what a stopped cluster left behind"
  "$OC_DIR/down.sh" || oc_die "could not clear the stopped cluster's leftovers"
fi

t0=$(date +%s)
elapsed() { echo "$(( $(date +%s) - t0 ))s"; }

"$OC_DIR/build-all.sh"

NS="$OFFLINE_NODE_NETNS" NODE="$OFFLINE_NODE_NETNS" S="$OC_STATE"
PKI="$S/pki" CONF="$S/conf" LOGS="$S/logs" PIDS="$S/pids"
KUBECTL="$OC_KUBECTL_BIN/kubectl"
mkdir -p "$PKI" "$CONF" "$LOGS" "$PIDS" "$S/etcd" "$S/kubelet" "$S/containerd/root" "$S/cni/net.d" "$S/cni/bin" \
  "$S/sysctl" "$S/ns"
chmod 700 "$S"
# Everything below is undone by down.sh, which reads what was made from $S (and is safe to run on a half-made node).
trap 'rc=$?; [[ $rc -ne 0 ]] && oc_log "up failed (rc=$rc) after $(elapsed); logs in $LOGS; run down.sh to clean up"' EXIT

# ---------------------------------------------------------------------------------------------------- certs
# A CA and leaf certificates (EC P-256), made by openssl on every start: a cluster lives only until down.sh.
cert() { # name CN O sans(comma list or "") usage(server|client|both) [ca-stem]
  local name="$1" cn="$2" o="$3" sans="$4" usage="$5" ca="${6:-ca}" ext="$PKI/$1.ext"
  openssl ecparam -name prime256v1 -genkey -noout -out "$PKI/$name.key" 2>/dev/null
  openssl req -new -key "$PKI/$name.key" -subj "/CN=$cn${o:+/O=$o}" -out "$PKI/$name.csr" 2>/dev/null
  case "$usage" in
    server) echo "extendedKeyUsage=serverAuth" > "$ext" ;;
    client) echo "extendedKeyUsage=clientAuth" > "$ext" ;;
    both) echo "extendedKeyUsage=serverAuth,clientAuth" > "$ext" ;;
  esac
  { echo "keyUsage=critical,digitalSignature,keyEncipherment"; echo "basicConstraints=critical,CA:FALSE"
    [[ -n "$sans" ]] && echo "subjectAltName=$sans"; } >> "$ext"
  openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/$ca.crt" -CAkey "$PKI/$ca.key" -CAcreateserial \
    -days 30 -sha256 -extfile "$ext" -out "$PKI/$name.crt" 2>/dev/null
  rm -f "$PKI/$name.csr" "$ext"
}
ca() { # stem CN
  openssl ecparam -name prime256v1 -genkey -noout -out "$PKI/$1.key" 2>/dev/null
  openssl req -x509 -new -key "$PKI/$1.key" -subj "/CN=$2" -days 30 -sha256 -out "$PKI/$1.crt" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" 2>/dev/null
}
svc_ip="${OFFLINE_SERVICE_CIDR%.*}.1"   # the kubernetes Service: first address of the service range
oc_log "certificates"
ca ca "ai-agents-offline-cluster-ca"
ca front-proxy-ca "ai-agents-offline-cluster-front-proxy-ca"
cert apiserver kube-apiserver "" "IP:$OFFLINE_NODE_IP,IP:127.0.0.1,IP:$svc_ip,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local" server
cert apiserver-kubelet-client kube-apiserver-kubelet-client system:masters "" client
cert front-proxy-client front-proxy-client "" "" client front-proxy-ca
cert admin kubernetes-admin system:masters "" client
cert controller-manager system:kube-controller-manager "" "" client
cert scheduler system:kube-scheduler "" "" client
cert kubelet "system:node:$NODE" system:nodes "IP:$OFFLINE_NODE_IP,DNS:$NODE" both
cert kube-proxy system:kube-proxy "" "" client
openssl ecparam -name prime256v1 -genkey -noout -out "$PKI/sa.key" 2>/dev/null
openssl ec -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null

kubeconfig() { # file user server
  local f="$1" user="$2" server="$3"
  cat > "$f" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: ai-agents-offline
  cluster:
    server: $server
    certificate-authority-data: $(base64 -w0 "$PKI/ca.crt")
users:
- name: $user
  user:
    client-certificate-data: $(base64 -w0 "$PKI/$user.crt")
    client-key-data: $(base64 -w0 "$PKI/$user.key")
contexts:
- name: ai-agents-offline
  context: {cluster: ai-agents-offline, user: $user}
current-context: ai-agents-offline
EOF
  chmod 600 "$f"
}
local_api="https://127.0.0.1:6443"
kubeconfig "$S/kubeconfig" admin "https://$OFFLINE_NODE_IP:6443"   # the host's: the one printed at the end
for u in controller-manager scheduler kubelet kube-proxy; do kubeconfig "$CONF/$u.kubeconfig" "$u" "$local_api"; done

# -------------------------------------------------------------------------------------------------- network
oc_log "network namespace $NS: $OFFLINE_HOST_IP/30 (host) <-> $OFFLINE_NODE_IP/30 (node), no default route"
[[ -d /run/netns ]] || touch "$S/made-run-netns"   # ip netns add makes /run/netns (a mount of its own)
ip netns add "$NS"
echo "$NS" > "$S/netns"
ip link add "${NS}-h" type veth peer name "${NS}-n"
echo "${NS}-h" > "$S/veth"
ip link set "${NS}-n" netns "$NS"
ip addr add "$OFFLINE_HOST_IP/30" dev "${NS}-h"
ip link set "${NS}-h" up
ip -n "$NS" link set lo up
ip -n "$NS" link set "${NS}-n" name eth0
ip -n "$NS" addr add "$OFFLINE_NODE_IP/30" dev eth0
ip -n "$NS" link set eth0 up
# Service IPs need a route for the node's own (host-network) processes to connect before kube-proxy's DNAT
# rewrites them; an empty bridge takes the range (a dummy device, as in kube-proxy's IPVS mode, would do, but
# this kernel has no dummy driver), so nothing un-DNATed leaves.
ip -n "$NS" link add svc0 type bridge
ip -n "$NS" link set svc0 up
ip -n "$NS" route add "$OFFLINE_SERVICE_CIDR" dev svc0
# Per-namespace sysctls: pods routed through the node, bridged traffic seen by kube-proxy's iptables rules.
ip netns exec "$NS" sysctl -qw net.ipv4.ip_forward=1
ip netns exec "$NS" sysctl -qw net.bridge.bridge-nf-call-iptables=1 2>/dev/null || \
  oc_log "warning: net.bridge.bridge-nf-call-iptables not settable in the node namespace"

# ------------------------------------------------------------------------------------------ mount namespace
# $S/ns is bind-mounted onto itself and made private so the namespace file can be bound there (a bind of an
# nsfs file onto a shared mount is refused). Inside the node's mount namespace: tmpfs over /run/containerd and
# /run/netns, and over the few /proc/sys files the kubelet would otherwise rewrite on the host (it sets
# vm.overcommit_memory=1, kernel.panic=10, kernel.panic_on_oops=1, ... when they differ): there it reads the
# values it wants and leaves the host's kernel settings alone.
mount --bind "$S/ns" "$S/ns"
mount --make-private "$S/ns"
touch "$S/ns/mnt"
[[ -d /run/containerd ]] || touch "$S/made-run-containerd"
mkdir -p /run/containerd /run/netns
# Istio's CNI agent and ztunnel meet on sockets under /var/run/ztunnel and /var/run/istio-cni (hostPaths in their
# charts): tmpfs there too, in the node's mount namespace only.
for d in ztunnel istio-cni; do [[ -d /run/$d ]] || { touch "$S/made-run-$d"; mkdir -p "/run/$d"; }; done
declare -A want_sysctl=([vm/overcommit_memory]=1 [vm/panic_on_oom]=0 [kernel/panic]=10 [kernel/panic_on_oops]=1
  [kernel/keys/root_maxkeys]=1000000 [kernel/keys/root_maxbytes]=25000000)
fake_sysctls=""
for k in "${!want_sysctl[@]}"; do
  [[ "$(cat "/proc/sys/$k")" == "${want_sysctl[$k]}" ]] && continue
  f="$S/sysctl/${k//\//.}"; echo "${want_sysctl[$k]}" > "$f"
  fake_sysctls+="mount --bind '$f' '/proc/sys/$k'; "
done
nsenter --net="/run/netns/$NS" unshare --mount="$S/ns/mnt" --propagation private sh -ec "
  mount -t tmpfs -o mode=755 node-run-containerd /run/containerd
  mount -t tmpfs -o mode=755 node-run-netns /run/netns
  mount -t tmpfs -o mode=755 node-run-ztunnel /run/ztunnel
  mount -t tmpfs -o mode=755 node-run-istio-cni /run/istio-cni
  mount --make-rshared /
"
in_node() { nsenter --net="/run/netns/$NS" --mount="$S/ns/mnt" -- "$@"; }

# A PID namespace of its own, as a kind node's container has: the node's processes see its init as PID 1 and
# a /proc of the node only (mounted in its mount namespace). Istio's CNI agent takes /proc/1/ns/net to be the
# node's network namespace; the host's PID 1 is neither that nor (in some sandboxes) readable. The init is
# `sleep infinity`; the fake sysctls are bound over the node's /proc once it is mounted.
setsid nsenter --net="/run/netns/$NS" --mount="$S/ns/mnt" -- unshare --pid --fork --kill-child \
  sh -ec "mount -t proc node-proc /proc; $fake_sysctls exec sleep infinity" >"$LOGS/init.log" 2>&1 </dev/null &
echo $! > "$PIDS/init.pid"
node_init=""
for _ in $(seq 1 50); do
  node_init="$(pgrep -P "$(cat "$PIDS/init.pid")" | head -n1)" || true
  [[ -n "$node_init" ]] && grep -q 'node-proc /proc ' "/proc/$node_init/mounts" 2>/dev/null && break
  node_init=""; sleep 0.1
done
[[ -n "$node_init" ]] || { cat "$LOGS/init.log" >&2; oc_die "the node's PID namespace did not start"; }

# Cgroups for the kubelet's pods: /$NODE in every v1 hierarchy (cpuset needs cpus and mems before children).
for h in /sys/fs/cgroup/*/; do
  [[ "$(stat -fc %T "$h")" == cgroup* ]] || continue
  mkdir -p "$h$NODE"
  if [[ -f "${h}cpuset.cpus" ]]; then
    cat "${h}cpuset.cpus" > "$h$NODE/cpuset.cpus"; cat "${h}cpuset.mems" > "$h$NODE/cpuset.mems"
  fi
done
echo "$NODE" > "$S/cgroup"

# -------------------------------------------------------------------------------------------- processes
start() { # name cmd...: run in the node's namespaces, detached, logging to $LOGS/name.log
  local name="$1"; shift
  setsid nsenter --target "$node_init" --net --mount --pid -- "$@" >"$LOGS/$name.log" 2>&1 < /dev/null &
  echo $! > "$PIDS/$name.pid"
}
wait_for() { # what timeout-seconds cmd...
  local what="$1" timeout="$2" i; shift 2
  for ((i = 0; i < timeout * 2; i++)); do
    "$@" >/dev/null 2>&1 && { oc_log "$what ready ($(elapsed))"; return 0; }
    sleep 0.5
  done
  oc_die "$what not ready after ${timeout}s"
}
alive() { kill -0 "$(cat "$PIDS/$1.pid")" 2>/dev/null || { tail -20 "$LOGS/$1.log" >&2; oc_die "$1 exited"; }; }
k() { "$KUBECTL" --kubeconfig "$S/kubeconfig" "$@"; }

start etcd "$OC_ETCD_BIN/etcd" --name "$NODE" --data-dir "$S/etcd" \
  --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
  --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
  --initial-cluster "$NODE=http://127.0.0.1:2380" --listen-metrics-urls http://127.0.0.1:2381 \
  --quota-backend-bytes 2147483648 --log-level warn
wait_for etcd 30 in_node bash -c 'exec 3<>/dev/tcp/127.0.0.1/2381 && printf "GET /health HTTP/1.0\r\n\r\n" >&3 && grep -q "\"health\":\"true\"" <&3'

start kube-apiserver "$OC_K8S_BIN/kube-apiserver" \
  --etcd-servers http://127.0.0.1:2379 --bind-address 0.0.0.0 --secure-port 6443 \
  --advertise-address "$OFFLINE_NODE_IP" --service-cluster-ip-range "$OFFLINE_SERVICE_CIDR" \
  --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" --client-ca-file "$PKI/ca.crt" \
  --kubelet-client-certificate "$PKI/apiserver-kubelet-client.crt" \
  --kubelet-client-key "$PKI/apiserver-kubelet-client.key" --kubelet-certificate-authority "$PKI/ca.crt" \
  --kubelet-preferred-address-types InternalIP \
  --service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
  --service-account-issuer https://kubernetes.default.svc.cluster.local \
  --authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction --allow-privileged=true \
  --requestheader-client-ca-file "$PKI/front-proxy-ca.crt" --requestheader-allowed-names front-proxy-client \
  --requestheader-username-headers X-Remote-User --requestheader-group-headers X-Remote-Group \
  --requestheader-extra-headers-prefix X-Remote-Extra- \
  --proxy-client-cert-file "$PKI/front-proxy-client.crt" --proxy-client-key-file "$PKI/front-proxy-client.key" \
  --enable-aggregator-routing=true --profiling=false --v=1
wait_for kube-apiserver 120 curl -fsS --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" \
  "https://$OFFLINE_NODE_IP:6443/readyz"

start kube-controller-manager "$OC_K8S_BIN/kube-controller-manager" \
  --kubeconfig "$CONF/controller-manager.kubeconfig" \
  --authentication-kubeconfig "$CONF/controller-manager.kubeconfig" \
  --authorization-kubeconfig "$CONF/controller-manager.kubeconfig" \
  --bind-address 127.0.0.1 --leader-elect=false --use-service-account-credentials=true \
  --cluster-signing-cert-file "$PKI/ca.crt" --cluster-signing-key-file "$PKI/ca.key" --root-ca-file "$PKI/ca.crt" \
  --service-account-private-key-file "$PKI/sa.key" --service-cluster-ip-range "$OFFLINE_SERVICE_CIDR" \
  --cluster-cidr "$OFFLINE_POD_CIDR" --allocate-node-cidrs=false --profiling=false --v=1
start kube-scheduler "$OC_K8S_BIN/kube-scheduler" --kubeconfig "$CONF/scheduler.kubeconfig" \
  --authentication-kubeconfig "$CONF/scheduler.kubeconfig" --authorization-kubeconfig "$CONF/scheduler.kubeconfig" \
  --bind-address 127.0.0.1 --leader-elect=false --profiling=false --v=1
wait_for kube-controller-manager 60 in_node curl -fsSk https://127.0.0.1:10257/healthz
wait_for kube-scheduler 60 in_node curl -fsSk https://127.0.0.1:10259/healthz
# The default ServiceAccount appears once the controller-manager's token controller runs.
wait_for "default ServiceAccount" 60 k get serviceaccount default -n default

if [[ $control_plane_only -eq 1 ]]; then
  oc_log "control plane up in $(elapsed)"; trap - EXIT; echo "$S/kubeconfig"; exit 0
fi

# ------------------------------------------------------------------------------------------------- node
# Without CAP_SYS_RESOURCE (some sandboxes drop it, this workplace's among them) no process may lower an
# oom_score_adj: runc then fails every pod sandbox (the kubelet asks -998 for it) with "can't get final child's
# PID from pipe". containerd can clamp the scores to its own instead (restrict_oom_score_adj, meant for rootless).
restrict_oom=false oom_adj=-999
if (( ( 16#$(awk '/^CapEff/ {print $2}' /proc/self/status) >> 24 & 1 ) == 0 )); then
  restrict_oom=true oom_adj=0
  oc_log "no CAP_SYS_RESOURCE: pods and node daemons keep oom_score_adj >= 0"
fi
cat > "$CONF/containerd.toml" <<EOF
version = 2
root = "$S/containerd/root"
state = "/run/containerd"
[grpc]
  address = "/run/containerd/containerd.sock"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$OFFLINE_PAUSE_IMAGE"
  enable_unprivileged_ports = true
  enable_unprivileged_icmp = true
  restrict_oom_score_adj = $restrict_oom
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$S/cni/bin"
    conf_dir = "$S/cni/net.d"
[plugins."io.containerd.internal.v1.opt"]
  path = "$S/containerd/opt"
EOF
cat > "$S/cni/net.d/10-aiag.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "aiag",
  "plugins": [
    {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": "$OFFLINE_POD_CIDR"}]], "routes": [{"dst": "0.0.0.0/0"}],
              "dataDir": "$S/cni/ipam"}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
# The CNI binaries: Debian's plugins, linked into a directory of the node's own, where Istio's CNI agent installs
# its plugin (never into the host's /usr/lib/cni).
ln -sf /usr/lib/cni/* "$S/cni/bin/"
start containerd containerd --config "$CONF/containerd.toml"
wait_for containerd 30 in_node ctr --address /run/containerd/containerd.sock version
import_images() { # image stem...: one after the other
  local img
  for img in "$@"; do
    [[ -f "$OC_IMAGES/$img.tar" ]] || continue
    in_node ctr --address /run/containerd/containerd.sock -n k8s.io images import "$OC_IMAGES/$img.tar" \
      >> "$LOGS/images.log" 2>&1 || oc_die "importing $img.tar failed (see $LOGS/images.log)"
  done
}
# Two lanes of imports, balanced by size: an import alternates unpacking (one core) and writing to disk.
import_images postgres istio-ztunnel pause busybox coredns metrics-server keda keda-adapter keda-admission-webhooks &
first_lane=$!
import_images agent-runtime istio-install-cni prometheus-operator prometheus-config-reloader prometheus istio-pilot jaeger
wait "$first_lane" || exit 1
oc_log "images imported ($(elapsed))"

cat > "$CONF/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# cgroup v1 host: allowed explicitly (Kubernetes >= 1.35 refuses it by default).
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: /$NODE
containerRuntimeEndpoint: unix:///run/containerd/containerd.sock
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI/ca.crt}
authorization: {mode: Webhook}
tlsCertFile: $PKI/kubelet.crt
tlsPrivateKeyFile: $PKI/kubelet.key
address: $OFFLINE_NODE_IP
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
clusterDomain: cluster.local
clusterDNS: [$OFFLINE_CLUSTER_DNS]
# No upstream resolvers: the cluster is air-gapped, only cluster names resolve.
resolvConf: ""
failSwapOn: false
# Images are imported, never pulled: never garbage-collect them; evict only when the disk is really full.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: 200Mi, nodefs.available: 2%, imagefs.available: 2%, nodefs.inodesFree: 2%}
serializeImagePulls: false
maxPods: 110
oomScoreAdj: $oom_adj
EOF
start kubelet "$OC_K8S_BIN/kubelet" --config "$CONF/kubelet.yaml" --kubeconfig "$CONF/kubelet.kubeconfig" \
  --hostname-override "$NODE" --node-ip "$OFFLINE_NODE_IP" --root-dir "$S/kubelet" --v=1
wait_for "node $NODE registered" 90 k get node "$NODE"
alive kubelet

cat > "$CONF/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clientConnection: {kubeconfig: $CONF/kube-proxy.kubeconfig}
hostnameOverride: $NODE
clusterCIDR: $OFFLINE_POD_CIDR
bindAddress: $OFFLINE_NODE_IP
metricsBindAddress: 127.0.0.1:10249
healthzBindAddress: 127.0.0.1:10256
# Leave the kernel's conntrack table size and timeouts alone (global settings of the host).
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
oomScoreAdj: $oom_adj
EOF
start kube-proxy "$OC_K8S_BIN/kube-proxy" --config "$CONF/kube-proxy.yaml" --v=1
wait_for kube-proxy 60 in_node curl -fsS http://127.0.0.1:10256/healthz
wait_for "node $NODE Ready" 120 k wait --for=condition=Ready "node/$NODE" --timeout=1s

# ----------------------------------------------------------------------------------------------- addons
oc_log "addons: CoreDNS, metrics-server"
sed -e "s|@COREDNS_IMAGE@|$OFFLINE_COREDNS_IMAGE|g" -e "s|@CLUSTER_DNS@|$OFFLINE_CLUSTER_DNS|g" \
  "$OC_DIR/manifests/coredns.yaml" | k apply -f - >> "$LOGS/addons.log"
sed -e "s|@METRICS_SERVER_IMAGE@|$OFFLINE_METRICS_SERVER_IMAGE|g" \
  "$OC_DIR/manifests/metrics-server.yaml" | k apply -f - >> "$LOGS/addons.log"
# Storage: no provisioner runs here, so a default StorageClass without one and $OFFLINE_LOCAL_PVS (20) pre-made
# `local` PersistentVolumes (directories under $S/pv, nominally 10Gi each; the kubelet applies fsGroup to
# them, unlike hostPath). A claim binds to one when its pod is scheduled; a released volume is not reused
# (Retain: local volumes have no deleter), so each StatefulSet install uses one up until down.sh.
{
  printf '%s\n' 'apiVersion: storage.k8s.io/v1' 'kind: StorageClass' 'metadata:' '  name: local' \
    '  annotations: {storageclass.kubernetes.io/is-default-class: "true"}' \
    'provisioner: kubernetes.io/no-provisioner' 'volumeBindingMode: WaitForFirstConsumer' 'reclaimPolicy: Retain'
  for i in $(seq 1 "${OFFLINE_LOCAL_PVS:-20}"); do
    mkdir -p "$S/pv/pv$i"
    printf '%s\n' '---' 'apiVersion: v1' 'kind: PersistentVolume' "metadata: {name: local-pv$i}" 'spec:' \
      '  capacity: {storage: 10Gi}' '  accessModes: [ReadWriteOnce]' '  persistentVolumeReclaimPolicy: Retain' \
      '  storageClassName: local' "  local: {path: $S/pv/pv$i}" \
      "  nodeAffinity: {required: {nodeSelectorTerms: [{matchExpressions: [{key: kubernetes.io/hostname, operator: In, values: [$NODE]}]}]}}"
  done
} | k apply -f - >> "$LOGS/addons.log" || oc_die "applying the StorageClass and local volumes failed"
wait_for CoreDNS 120 k -n kube-system rollout status deployment/coredns --timeout=1s
wait_for metrics-server 180 k get --raw /apis/metrics.k8s.io/v1beta1/nodes

# Upstream CRDs the charts target (Istio, Gateway API, Prometheus Operator; KEDA's come with KEDA below), from
# the shared reference copy when there is one: objects of those kinds can then be installed (nothing acts on them
# but KEDA). Server-side apply: some are larger than the last-applied annotation allows.
crds="$(realpath -m "${OFFLINE_CLUSTER_CRDS:-$OC_DIR/../../../shared/crds}")"
if [[ -d "$crds" ]]; then
  for d in "$crds"/istio-* "$crds"/gateway-api-*/standard "$crds"/prometheus-operator-*; do
    [[ -d "$d" ]] || continue
    # With Istio running, its CRDs come from its own base chart (the version istiod was built from).
    [[ "$d" == "$crds"/istio-* && "${OFFLINE_CLUSTER_ISTIO:-1}" == 1 ]] && continue
    k apply --server-side --force-conflicts -f "$d" >> "$LOGS/addons.log" || oc_die "applying CRDs from $d failed"
  done
  oc_log "CRDs from $crds applied ($(elapsed))"
else
  oc_log "no CRD directory at $crds (set OFFLINE_CLUSTER_CRDS): Istio, Gateway API, Prometheus Operator CRDs not installed"
fi

# Istio ambient, the L4 mesh: base (Istio's CRDs), istiod, the CNI node agent and ztunnel from the charts of the
# module build.sh compiled, ambient profile, the local images (istio.sh). Fails with the component's log tail.
if [[ "${OFFLINE_CLUSTER_ISTIO:-1}" == 1 ]]; then
  KUBECONFIG="$S/kubeconfig" LOGS="$LOGS" CNI_DIR="$S/cni" "$OC_DIR/istio.sh" || oc_die "Istio did not come up"
  oc_log "Istio ambient ready ($(elapsed))"
fi

# KEDA (operator, metrics adapter registered as v1beta1.external.metrics.k8s.io, admission webhooks): upstream's
# own kustomize manifests (config/default in the module build.sh compiled), with the local images, never pulled.
if [[ "${OFFLINE_CLUSTER_KEDA:-1}" == 1 && -f "$OC_IMAGES/keda.tar" ]]; then
  keda_src="$(cd "$OC_DIR/build/keda" && GOFLAGS=-mod=readonly go list -m -f '{{.Dir}}' github.com/kedacore/keda/v2)"
  k kustomize "$keda_src/config/default" \
    | sed -e "s|image: ghcr.io/kedacore/keda:main|image: $OFFLINE_KEDA_IMAGE|" \
          -e "s|image: ghcr.io/kedacore/keda-metrics-apiserver:main|image: $OFFLINE_KEDA_ADAPTER_IMAGE|" \
          -e "s|image: ghcr.io/kedacore/keda-admission-webhooks:main|image: $OFFLINE_KEDA_WEBHOOKS_IMAGE|" \
          -e "s|imagePullPolicy: Always|imagePullPolicy: Never|" > "$CONF/keda.yaml"
  grep -q "image: ghcr.io" "$CONF/keda.yaml" && oc_die "KEDA manifests still name a remote image ($CONF/keda.yaml)"
  k apply --server-side --force-conflicts -f "$CONF/keda.yaml" >> "$LOGS/addons.log" || oc_die "applying KEDA failed"
  # In the mesh: KEDA's postgresql trigger then reaches a STRICT release's PostgreSQL with the operator's own
  # identity (the mesh chart's keda.postgresqlTrigger admits it); the API server still calls its metrics adapter
  # and webhooks in plaintext (no PeerAuthentication in namespace keda).
  if [[ "${OFFLINE_CLUSTER_ISTIO:-1}" == 1 ]]; then
    k label namespace keda istio.io/dataplane-mode=ambient --overwrite >> "$LOGS/addons.log" \
      || oc_die "labelling namespace keda for the mesh failed"
  fi
  wait_for "KEDA operator" 180 k -n keda rollout status deployment/keda-operator --timeout=1s
  wait_for "KEDA metrics adapter" 180 k get --raw /apis/external.metrics.k8s.io/v1beta1
fi

# Prometheus Operator (upstream's example manifests from the module build.sh compiled, moved to `monitoring`, local
# images) and a Prometheus it runs (manifests/prometheus.yaml): ServiceMonitors and
# PrometheusRules of the charts are acted on as on a cluster with kube-prometheus-stack. OFFLINE_CLUSTER_PROMETHEUS=0
# leaves it out.
if [[ "${OFFLINE_CLUSTER_PROMETHEUS:-1}" == 1 && -f "$OC_IMAGES/prometheus-operator.tar" && -f "$OC_IMAGES/prometheus.tar" ]]; then
  po_src="$(cd "$OC_DIR/build/prometheus-operator" && GOFLAGS=-mod=readonly go list -m -f '{{.Dir}}' \
    github.com/prometheus-operator/prometheus-operator)"
  pv="$OFFLINE_PROMETHEUS_OPERATOR_VERSION"
  for f in "$po_src"/example/rbac/prometheus-operator/prometheus-operator-{service-account,cluster-role,cluster-role-binding,deployment,service}.yaml \
           "$po_src"/example/rbac/prometheus/prometheus-{service-account,cluster-role,cluster-role-binding}.yaml; do
    echo "---"
    sed -e "s|namespace: default|namespace: monitoring|" \
        -e "s|image: quay.io/prometheus-operator/prometheus-operator:$pv|image: $OFFLINE_PROMETHEUS_OPERATOR_IMAGE|" \
        -e "s|=quay.io/prometheus-operator/prometheus-config-reloader:$pv|=$OFFLINE_PROMETHEUS_CONFIG_RELOADER_IMAGE|" "$f"
  done > "$CONF/prometheus-operator.yaml"
  grep -q "quay.io" "$CONF/prometheus-operator.yaml" && oc_die "Prometheus Operator manifests still name a remote image ($CONF/prometheus-operator.yaml)"
  sed -e "s|@PROMETHEUS_IMAGE@|$OFFLINE_PROMETHEUS_IMAGE|" -e "s|@PROMETHEUS_VERSION@|$OFFLINE_PROMETHEUS_VERSION|" "$OC_DIR/manifests/prometheus.yaml" > "$CONF/prometheus.yaml"
  k create namespace monitoring --dry-run=client -o yaml | k apply -f - >> "$LOGS/addons.log" \
    || oc_die "creating namespace monitoring failed"
  # In the mesh, as a kube-prometheus-stack user would put it: under the charts' STRICT mTLS, Prometheus scrapes
  # with its own SPIFFE identity, which the mesh chart's metrics policy admits.
  [[ "${OFFLINE_CLUSTER_ISTIO:-1}" == 1 ]] && k label namespace monitoring istio.io/dataplane-mode=ambient --overwrite >> "$LOGS/addons.log"
  k -n monitoring apply --server-side --force-conflicts -f "$CONF/prometheus-operator.yaml" >> "$LOGS/addons.log" \
    || oc_die "applying the Prometheus Operator failed"
  wait_for "Prometheus Operator" 180 k -n monitoring rollout status deployment/prometheus-operator --timeout=1s
  k apply -f "$CONF/prometheus.yaml" >> "$LOGS/addons.log" || oc_die "applying the Prometheus failed"
  wait_for Prometheus 240 k -n monitoring wait --for=condition=Available prometheus/prometheus --timeout=1s
fi

# Jaeger (manifests/jaeger.yaml): where the tracing test sends and reads spans.
if [[ "${OFFLINE_CLUSTER_JAEGER:-1}" == 1 && -f "$OC_IMAGES/jaeger.tar" ]]; then
  sed -e "s|@JAEGER_IMAGE@|$OFFLINE_JAEGER_IMAGE|" "$OC_DIR/manifests/jaeger.yaml" | k apply -f - >> "$LOGS/addons.log" \
    || oc_die "applying Jaeger failed"
  wait_for Jaeger 120 k -n tracing rollout status deployment/jaeger --timeout=1s
fi

# What the e2e harness (tests/e2e) needs to know about this cluster: `set -a; . $S/e2e.env; set +a`, then pytest.
{
  echo "E2E_CLUSTER=existing"
  k -n tracing get deployment/jaeger >/dev/null 2>&1 && echo "E2E_JAEGER_NAMESPACE=tracing"
  if [[ "${OFFLINE_CLUSTER_ISTIO:-1}" == 1 ]]; then
    echo "E2E_ISTIO_NAMESPACE=istio-system"
    echo "E2E_ISTIOCTL=$OC_ISTIO_BIN/istioctl"
    # Sourced by bash: the value is quoted.
    echo "E2E_NO_ENVOY=\"Envoy (the proxy of Istio's waypoints and ingress gateway) is not built here: istio/proxy builds with Bazel, which fetches its toolchain from no registry this cluster's build may use\""
  fi
  echo "E2E_KUBECONFIG=$S/kubeconfig"
  echo "KUBECONFIG=$S/kubeconfig"
  [[ -f "$OC_IMAGES/postgres.tar" ]] && echo "E2E_POSTGRES_IMAGE=$OFFLINE_POSTGRES_IMAGE"
  if k -n monitoring get prometheus/prometheus >/dev/null 2>&1; then
    echo "E2E_MONITORING_NAMESPACE=monitoring"
    echo "E2E_PROMETHEUS_SERVICE=prometheus-operated"
    echo "E2E_PROMETHEUS_SERVICE_ACCOUNT=prometheus"
  fi
} > "$S/e2e.env"

oc_log "cluster up in $(elapsed); kubectl: $KUBECTL"
trap - EXIT
echo "$S/kubeconfig"
