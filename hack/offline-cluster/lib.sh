# Shared settings for the offline-cluster scripts (sourced, not run).
# shellcheck shell=bash
OC_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
source "$OC_DIR/versions.env"
# Built binaries and images, outside the repo, keyed by version; reused by later runs on the same machine.
OC_CACHE="${OFFLINE_CLUSTER_CACHE:-/var/cache/ai-agents-offline-cluster}"
# Runtime state of a running cluster (certs, configs, logs, pids, containerd root); removed by down.sh.
OC_STATE="${OFFLINE_CLUSTER_STATE:-/var/lib/ai-agents-offline-cluster}"

OC_K8S_BIN="$OC_CACHE/bin/kubernetes-$OFFLINE_K8S_VERSION"
OC_KUBECTL_BIN="$OC_CACHE/bin/kubectl-$OFFLINE_K8S_VERSION"
OC_ETCD_BIN="$OC_CACHE/bin/etcd-$OFFLINE_ETCD_VERSION"
OC_COREDNS_BIN="$OC_CACHE/bin/coredns-$OFFLINE_COREDNS_VERSION"
OC_METRICS_SERVER_BIN="$OC_CACHE/bin/metrics-server-$OFFLINE_METRICS_SERVER_VERSION"
OC_KEDA_BIN="$OC_CACHE/bin/keda-$OFFLINE_KEDA_VERSION"
OC_PROMETHEUS_OPERATOR_BIN="$OC_CACHE/bin/prometheus-operator-$OFFLINE_PROMETHEUS_OPERATOR_VERSION"
OC_PROMETHEUS_BIN="$OC_CACHE/bin/prometheus-$OFFLINE_PROMETHEUS_VERSION"
OC_JAEGER_BIN="$OC_CACHE/bin/jaeger-$OFFLINE_JAEGER_VERSION"
OC_ISTIO_BIN="$OC_CACHE/bin/istio-$OFFLINE_ISTIO_VERSION"
OC_ZTUNNEL_BIN="$OC_CACHE/bin/${OFFLINE_ZTUNNEL_SOURCE%.tar.gz}"
OC_IMAGES="$OC_CACHE/images"
# Istio's charts name an image {hub}/{image}:{tag}-{variant}.
OC_ISTIO_IMAGE_TAG="$OFFLINE_ISTIO_TAG-$OFFLINE_ISTIO_VARIANT"
# Pinned upstream sources no registry serves (ztunnel), beside the checkout: read from there, never copied in.
OC_VENDOR="${OFFLINE_VENDOR_DIR:-$(cd "$OC_DIR/../../.." && pwd)/shared/vendor}"

oc_log() { printf '[offline-cluster %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
oc_die() { oc_log "ERROR: $*"; exit 1; }
