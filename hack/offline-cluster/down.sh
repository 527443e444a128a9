#!/usr/bin/env bash
# Stops the offline cluster and removes everything up.sh made: every process of the node (its daemons, the
# containerd shims and every container), its mount namespace, network namespace and veth (the iptables rules
# kube-proxy and CNI wrote live in that namespace and go with it), its cgroups and its state directory.
# Safe to run on a half-made or already removed cluster. Exits non-zero if something could not be removed.
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
[[ "$(id -u)" -eq 0 ]] || oc_die "needs root"

S="$OC_STATE" NS="$OFFLINE_NODE_NETNS" failed=0
[[ -f "$S/netns" ]] && NS="$(cat "$S/netns")"
t0=$(date +%s)

netns_ino="" mntns_ino=""
[[ -e "/run/netns/$NS" ]] && netns_ino="$(stat -L -c %i "/run/netns/$NS" 2>/dev/null)"
[[ -e "$S/ns/mnt" ]] && mntns_ino="$(stat -L -c %i "$S/ns/mnt" 2>/dev/null)"
# The bind of a namespace file has the namespace's inode; a plain file (never bound) is not a namespace.
[[ -n "$mntns_ino" && "$(stat -fc %T "$S/ns/mnt" 2>/dev/null)" != "nsfs" ]] && mntns_ino=""

# Every process of the node: in its network or mount namespace (daemons, shims, host-network pods), or in its
# cgroups (every container).
node_pids() {
  local p pid
  for p in /proc/[0-9]*; do
    pid="${p#/proc/}"
    [[ "$pid" == "$$" ]] && continue
    if [[ -n "$netns_ino" && "$(stat -L -c %i "$p/ns/net" 2>/dev/null)" == "$netns_ino" ]] ||
       [[ -n "$mntns_ino" && "$(stat -L -c %i "$p/ns/mnt" 2>/dev/null)" == "$mntns_ino" ]]; then
      echo "$pid"
    fi
  done
  cat /sys/fs/cgroup/pids/"$NS"/**/cgroup.procs /sys/fs/cgroup/pids/"$NS"/cgroup.procs 2>/dev/null
}
shopt -s globstar nullglob

# 1. Daemons by their pid files, newest first, politely; then everything of the node, by force.
if [[ -d "$S/pids" ]]; then
  for name in kube-proxy kubelet kube-scheduler kube-controller-manager kube-apiserver containerd etcd; do
    f="$S/pids/$name.pid"; [[ -f "$f" ]] || continue
    # The pid is nsenter's, which waits for the daemon (its child, in the node's PID namespace): both get TERM.
    kill -TERM "$(cat "$f")" $(pgrep -P "$(cat "$f")") 2>/dev/null && oc_log "stopping $name ($(cat "$f"))"
  done
  for _ in $(seq 1 20); do
    alive=0
    for f in "$S"/pids/*.pid; do kill -0 "$(cat "$f")" 2>/dev/null && alive=1; done
    [[ $alive -eq 0 ]] && break
    sleep 0.5
  done
fi
for _ in $(seq 1 20); do
  mapfile -t pids < <(node_pids | sort -u)
  [[ ${#pids[@]} -eq 0 ]] && break
  kill -KILL "${pids[@]}" 2>/dev/null
  sleep 0.5
done
mapfile -t pids < <(node_pids | sort -u)
[[ ${#pids[@]} -eq 0 ]] || { oc_log "processes still alive: ${pids[*]}"; failed=1; }

# 2. Mount namespace (its mounts go with it), then the private bind up.sh made for it.
if [[ -d "$S/ns" ]]; then
  mountpoint -q "$S/ns/mnt" 2>/dev/null && { umount "$S/ns/mnt" || failed=1; }
  mountpoint -q "$S/ns" 2>/dev/null && { umount "$S/ns" || failed=1; }
fi

# 3. Network namespace (with it: its end of the veth, the CNI bridge and every iptables rule), then the host end.
if [[ -e "/run/netns/$NS" ]]; then ip netns del "$NS" && oc_log "removed netns $NS" || failed=1; fi
veth="${NS}-h"; [[ -f "$S/veth" ]] && veth="$(cat "$S/veth")"
ip link show "$veth" >/dev/null 2>&1 && { ip link del "$veth" || failed=1; }

# 4. Cgroups, deepest first (a cgroup directory goes with rmdir once it has no processes and no children).
for h in /sys/fs/cgroup/*/; do
  [[ -d "$h$NS" ]] || continue
  find "$h$NS" -depth -type d -exec rmdir {} \; 2>/dev/null
  [[ -d "$h$NS" ]] && { oc_log "cgroup $h$NS not removable"; failed=1; }
done

# 5. State; refuse if anything is still mounted below it. Then the /run directories up.sh made.
made_run_netns=0 made_run_containerd=0
[[ -f "$S/made-run-netns" ]] && made_run_netns=1
[[ -f "$S/made-run-containerd" ]] && made_run_containerd=1
declare -A made_run=([ztunnel]=0 [istio-cni]=0)
for d in ztunnel istio-cni; do [[ -f "$S/made-run-$d" ]] && made_run[$d]=1; done
if [[ -d "$S" ]]; then
  if grep -q " ${S}[/ ]" /proc/self/mountinfo; then
    oc_log "still mounted under $S:"; grep " ${S}[/ ]" /proc/self/mountinfo >&2; failed=1
  else
    rm -rf "$S"
  fi
fi
[[ $made_run_containerd -eq 1 ]] && { rmdir /run/containerd 2>/dev/null || true; }
for d in ztunnel istio-cni; do [[ ${made_run[$d]} -eq 1 ]] && { rmdir "/run/$d" 2>/dev/null || true; }; done
if [[ $made_run_netns -eq 1 && -d /run/netns && -z "$(ls -A /run/netns)" ]]; then
  mountpoint -q /run/netns && umount /run/netns
  rmdir /run/netns 2>/dev/null || true
fi

if [[ $failed -eq 0 ]]; then oc_log "down in $(( $(date +%s) - t0 ))s"; else oc_log "down finished with errors"; fi
exit $failed
