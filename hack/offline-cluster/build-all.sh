#!/usr/bin/env bash
# Builds (or finds in the cache) everything the offline cluster runs: the host packages, every binary, every image.
# up.sh runs it first; CI starts it early, beside the test tiers that need no cluster, so that a cold build overlaps
# them. Env: the component switches of up.sh (OFFLINE_CLUSTER_KEDA, _PROMETHEUS, _ISTIO, _JAEGER).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

"$OC_DIR/install-packages.sh"
# OFFLINE_CLUSTER_KEDA=0 leaves KEDA out (no build, no deploy).
build_components=(kubernetes kubectl etcd coredns metrics-server)
[[ "${OFFLINE_CLUSTER_KEDA:-1}" == 1 ]] && build_components+=(keda)
[[ "${OFFLINE_CLUSTER_PROMETHEUS:-1}" == 1 ]] && build_components+=(prometheus-operator prometheus)
[[ "${OFFLINE_CLUSTER_ISTIO:-1}" == 1 ]] && build_components+=(istio)
[[ "${OFFLINE_CLUSTER_JAEGER:-1}" == 1 ]] && build_components+=(jaeger)
# ztunnel (cargo) builds beside the Go builds: their serial phases (linking, the last crates) leave cores idle,
# so overlapping them shortens a cold start (measured: ~12 min for both at once against ~17 one after the other).
ztunnel_build=""
if [[ "${OFFLINE_CLUSTER_ISTIO:-1}" == 1 ]]; then "$OC_DIR/build.sh" ztunnel & ztunnel_build=$!; fi
"$OC_DIR/build.sh" "${build_components[@]}"
[[ -z "$ztunnel_build" ]] || wait "$ztunnel_build" || oc_die "ztunnel build failed"
"$OC_DIR/images.sh"
