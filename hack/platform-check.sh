#!/usr/bin/env bash
# Checks what the platform targets need and fails early, naming what is missing and how to get it.
# Usage: hack/platform-check.sh CHECK...   with CHECK among
#   tools     kubectl on PATH, helm at $HELM (and kind at $KIND when CLUSTER=kind)
#   kubectl   kubectl on PATH only
#   docker    the docker CLI and a running Docker engine
#   internet  the chart repositories and release downloads are reachable
#   cluster   the current kube-context answers
#   crds      the upstream CRDs that charts/ai-agents renders against are installed
# Environment: CLUSTER (kind|existing), KUBECTL, HELM, KIND, PLATFORM_CHECK_URLS (space-separated).
set -euo pipefail

CLUSTER=${CLUSTER:-kind}
KUBECTL=${KUBECTL:-kubectl}
HELM=${HELM:-helm}
KIND=${KIND:-kind}
PLATFORM_CHECK_URLS=${PLATFORM_CHECK_URLS:-https://github.com https://istio-release.storage.googleapis.com/charts/index.yaml}

failures=0
fail() {
  printf 'platform-check: %s\n' "$1" >&2
  failures=$((failures + 1))
}

check_kubectl() {
  command -v "$KUBECTL" >/dev/null 2>&1 ||
    fail "kubectl is not on PATH: install a kubectl within one minor version of the cluster (https://kubernetes.io/docs/tasks/tools/)"
}

check_tools() {
  check_kubectl
  [ -x "$HELM" ] || command -v "$HELM" >/dev/null 2>&1 || fail "helm is missing at $HELM: run 'make setup'"
  if [ "$CLUSTER" = kind ] && ! [ -x "$KIND" ]; then
    fail "kind is missing at $KIND: run 'make kind' (needs Go and the Go module proxy)"
  fi
}

check_docker() {
  if ! command -v docker >/dev/null 2>&1; then
    fail "the docker CLI is not on PATH: install Docker (kind runs its nodes as containers)"
  elif ! docker info >/dev/null 2>&1; then
    fail "no Docker engine answers ('docker info' failed): start Docker, or use CLUSTER=existing with a cluster you have"
  fi
}

check_internet() {
  if ! command -v curl >/dev/null 2>&1; then
    fail "curl is not on PATH: it is needed to check that the chart repositories are reachable"
    return
  fi
  local url
  for url in $PLATFORM_CHECK_URLS; do
    curl -fsSL -o /dev/null --max-time 15 "$url" 2>/dev/null ||
      fail "cannot reach $url: the platform charts, CRDs and images are downloaded from the internet"
  done
}

check_cluster() {
  command -v "$KUBECTL" >/dev/null 2>&1 || return 0 # reported by the kubectl check
  local context
  context=$("$KUBECTL" config current-context 2>/dev/null) || {
    fail "kubectl has no current context: run 'make ai-agents-up' (kind) or select a context"
    return
  }
  "$KUBECTL" version --request-timeout=10s >/dev/null 2>&1 ||
    fail "the cluster of kube-context '$context' does not answer: run 'make ai-agents-up' or check the context"
}

check_crds() {
  # Without kubectl or a reachable cluster there is nothing to look at; those checks say so.
  command -v "$KUBECTL" >/dev/null 2>&1 || return 0
  "$KUBECTL" version --request-timeout=10s >/dev/null 2>&1 || return 0
  local crd missing=()
  for crd in gateways.gateway.networking.k8s.io peerauthentications.security.istio.io \
    servicemonitors.monitoring.coreos.com scaledobjects.keda.sh; do
    "$KUBECTL" get crd "$crd" --request-timeout=10s >/dev/null 2>&1 || missing+=("$crd")
  done
  [ ${#missing[@]} -eq 0 ] ||
    fail "CRDs missing: ${missing[*]}: run 'make ambient-up keda-install' first (or 'make platform-crds' for the CRDs alone)"
}

[ $# -gt 0 ] || { echo "usage: $0 tools|kubectl|docker|internet|cluster|crds..." >&2; exit 2; }
for check in "$@"; do
  case "$check" in
    tools) check_tools ;;
    kubectl) check_kubectl ;;
    docker) check_docker ;;
    internet) check_internet ;;
    cluster) check_cluster ;;
    crds) check_crds ;;
    *) echo "$0: unknown check '$check'" >&2; exit 2 ;;
  esac
done
[ "$failures" -eq 0 ] || { echo "platform-check: $failures problem(s); see docs/platform.md" >&2; exit 1; }
