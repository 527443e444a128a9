#!/usr/bin/env bash
# Installs Istio ambient (the L4 mesh) on the running offline cluster, from the Helm charts of the istio.io/istio
# module that build.sh compiled, with the ambient profile and the images images.sh built (never pulled):
#   istio-base   Istio's CRDs (the version istiod was built from) and the default-revision validator
#   istiod       the control plane: xDS for ztunnel, the CA that signs the workloads' SPIFFE certificates
#   istio-cni    the node agent: redirects the traffic of pods in ambient namespaces to ztunnel, in the pod's netns
#   ztunnel      the node proxy: HBONE mTLS between pods, L4 authorization
# Waits until each serves; on failure prints the component's pod state and log tail and exits non-zero.
# Called by up.sh with KUBECONFIG, LOGS (log directory) and CNI_DIR (the node's CNI bin/ and net.d/) set.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
: "${KUBECONFIG:?}" "${LOGS:?}" "${CNI_DIR:?}"
REPO="$(cd "$OC_DIR/../.." && pwd)"
HELM="${HELM:-$REPO/.tools/bin/h4/helm}"
KUBECTL="$OC_KUBECTL_BIN/kubectl"
[[ -x "$HELM" ]] || oc_die "helm not found at $HELM (make setup installs it; or set HELM)"
log="$LOGS/istio.log"
k() { "$KUBECTL" --kubeconfig "$KUBECONFIG" "$@"; }

istio_src="$(cd "$OC_DIR/build/istio" && GOFLAGS=-mod=readonly go list -m -f '{{.Dir}}' istio.io/istio)"
charts="$istio_src/manifests/charts"
# Every chart reads hub/tag/variant from global; ztunnel and istio-cni also from their top level.
images=(--set "global.hub=$OFFLINE_ISTIO_HUB" --set "global.tag=$OFFLINE_ISTIO_TAG"
        --set "global.variant=$OFFLINE_ISTIO_VARIANT" --set global.imagePullPolicy=Never)
local_images=(--set "hub=$OFFLINE_ISTIO_HUB" --set "tag=$OFFLINE_ISTIO_TAG" --set "variant=$OFFLINE_ISTIO_VARIANT")

install() { # release chart args...
  local release="$1" chart="$2"; shift 2
  echo "== helm upgrade --install $release" >> "$log"
  "$HELM" --kubeconfig "$KUBECONFIG" upgrade --install "$release" "$chart" --namespace istio-system \
    --create-namespace --set profile=ambient "${images[@]}" "$@" >> "$log" 2>&1 \
    || { tail -20 "$log" >&2; oc_die "helm install of $release failed (log: $log)"; }
}

# ready WHAT TIMEOUT KIND/NAME LABEL: rollout finished, else the pods' state and the log tail of each container.
ready() {
  local what="$1" timeout="$2" obj="$3" label="$4"
  if k -n istio-system rollout status "$obj" --timeout="${timeout}s" >> "$log" 2>&1; then
    oc_log "$what ready"; return 0
  fi
  k -n istio-system get pods -l "$label" -o wide >&2 || true
  k -n istio-system describe pods -l "$label" 2>&1 | grep -A12 '^Events:' >&2 || true
  k -n istio-system logs -l "$label" --all-containers --tail=30 --prefix >&2 || true
  oc_die "$what not ready after ${timeout}s"
}

oc_log "Istio ambient: base, istiod, istio-cni, ztunnel ($OFFLINE_ISTIO_TAG, charts from $istio_src)"
install istio-base "$charts/base"
# A single-node test cluster: requests sized to fit beside the charts under test on two cores (istiod asks
# 500m and 2 GiB by default), one istiod, no autoscaling.
install istiod "$charts/istio-control/istio-discovery" \
  --set pilot.autoscaleEnabled=false --set pilot.replicaCount=1 \
  --set pilot.resources.requests.cpu=100m --set pilot.resources.requests.memory=256Mi
ready istiod 300 deployment/istiod app=istiod
# The CNI agent installs its plugin into the node's own CNI directories (chained after the bridge conflist).
# The cluster has IPv4 only.
install istio-cni "$charts/istio-cni" "${local_images[@]}" \
  --set "cniBinDir=$CNI_DIR/bin" --set "cniConfDir=$CNI_DIR/net.d" --set cniNetnsDir=/var/run/netns \
  --set ambient.ipv6=false --set ambient.shareHostNetworkNamespace=true \
  --set resources.requests.cpu=50m --set resources.requests.memory=64Mi
ready "istio-cni node agent" 300 daemonset/istio-cni-node k8s-app=istio-cni-node
install ztunnel "$charts/ztunnel" "${local_images[@]}" \
  --set resources.requests.cpu=50m --set resources.requests.memory=64Mi
ready ztunnel 300 daemonset/ztunnel app=ztunnel

# ztunnel's metrics for the cluster's Prometheus, when its CRDs are there (they are applied before).
if k get crd podmonitors.monitoring.coreos.com >/dev/null 2>&1; then
  k apply -f "$OC_DIR/manifests/ztunnel-podmonitor.yaml" >> "$log" 2>&1 || oc_die "applying ztunnel's PodMonitor failed"
fi
