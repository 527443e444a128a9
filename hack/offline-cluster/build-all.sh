#!/usr/bin/env bash
# Builds (or finds in the cache) everything the offline cluster runs: the host packages, every binary, every image.
# up.sh runs it first; CI starts it early, beside the test tiers that need no cluster, so that a cold build overlaps
# them. Env: the component switches of up.sh (OFFLINE_CLUSTER_KEDA, _PROMETHEUS, _ISTIO, _JAEGER,
# _APP_IMAGES).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
on() { [[ "${!1:-1}" == 1 ]]; }

# A step that fails ends this script; the builds it started in the background (and what they started) must not
# run on after it, holding the caches and the cores of whatever runs next.
stop_tree() {
  local child
  for child in $(pgrep -P "$1" || true); do stop_tree "$child"; done
  kill "$1" 2>/dev/null || true
}
stop_background_builds() {
  local status=$? job
  if ((status != 0)); then
    for job in $(jobs -p); do stop_tree "$job"; done
  fi
  return "$status"
}
trap stop_background_builds EXIT

"$OC_DIR/install-packages.sh"
# The chart's own images (the debootstrap base, the runtime's pip install, PostgreSQL from Debian) need none of the
# binaries below and wait mostly on the network and the disk: they build beside the compiles, not after them.
app_images=""
if on OFFLINE_CLUSTER_APP_IMAGES; then "$OC_DIR/agent-image.sh" base runtime postgres & app_images=$!; fi
# After Kubernetes (kubectl reuses its compiled packages) the Go builds share no version of client-go, grpc or
# protobuf, so none reuses another's build cache, and each has serial stretches (linking, the last packages) that
# leave a core idle: they go in two lanes, balanced by their cold build times here (~15 min each). Measured: two
# builds at once took 14% less than one after the other. OFFLINE_CLUSTER_KEDA=0 (etc.) leaves a component out.
lane_a=(etcd coredns) lane_b=(metrics-server)
on OFFLINE_CLUSTER_KEDA && lane_a+=(keda)
on OFFLINE_CLUSTER_PROMETHEUS && { lane_a+=(prometheus); lane_b+=(prometheus-operator); }
on OFFLINE_CLUSTER_ISTIO && lane_b+=(istio)
on OFFLINE_CLUSTER_JAEGER && lane_b+=(jaeger)
# ztunnel (cargo) builds beside the Go builds: their serial phases (linking, the last crates) leave cores idle,
# so overlapping them shortens a cold start (measured: ~12 min for both at once against ~17 one after the other).
ztunnel_build=""
if on OFFLINE_CLUSTER_ISTIO; then "$OC_DIR/build.sh" ztunnel & ztunnel_build=$!; fi
"$OC_DIR/build.sh" kubernetes kubectl
"$OC_DIR/build.sh" "${lane_b[@]}" & lane_b_build=$!
"$OC_DIR/build.sh" "${lane_a[@]}" || { wait "$lane_b_build"; oc_die "a Go build failed (${lane_a[*]})"; }
wait "$lane_b_build" || oc_die "a Go build failed (${lane_b[*]})"
[[ -z "$ztunnel_build" ]] || wait "$ztunnel_build" || oc_die "ztunnel build failed"
# images.sh builds its buildah images (istio-cni, ztunnel) on the same base and store: not while these run.
[[ -z "$app_images" ]] || wait "$app_images" || oc_die "the runtime or PostgreSQL image failed"
"$OC_DIR/images.sh"
