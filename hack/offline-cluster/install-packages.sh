#!/usr/bin/env bash
# Debian packages the offline cluster's node runs on: containerd + runc (CRI), the CNI plugins (bridge,
# host-local, loopback, portmap), iptables + conntrack (kube-proxy), util-linux (nsenter, mount), openssl (certs),
# busybox-static (the test image), gcc + libc6-dev (the static pause binary), protobuf-compiler (ztunnel's build).
# Installs only what is missing; needs root.
set -euo pipefail
need=()
have() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "ok installed"; }
for p in containerd runc containernetworking-plugins iptables conntrack util-linux openssl iproute2 procps busybox-static gcc libc6-dev \
         protobuf-compiler; do
  have "$p" || need+=("$p")
done
[[ ${#need[@]} -eq 0 ]] && { echo "offline-cluster packages: all present" >&2; exit 0; }
[[ "$(id -u)" -eq 0 ]] || { echo "missing Debian packages: ${need[*]} (needs root)" >&2; exit 1; }
echo "installing: ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# policy-rc.d keeps Debian's postinst from starting the host's own containerd service: the node starts its own,
# inside its network namespace, with its own root and socket.
rc=/usr/sbin/policy-rc.d; made_rc=0
if [[ ! -e $rc ]]; then printf '#!/bin/sh\nexit 101\n' > $rc; chmod +x $rc; made_rc=1; fi
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
[[ $made_rc -eq 1 ]] && rm -f $rc
exit 0
