#!/usr/bin/env bash
# Port-forwards Grafana, Kiali, Jaeger and Prometheus to localhost, prints their URLs and keeps running;
# Ctrl-C (or TERM) stops the port-forwards it started, and nothing else.
# Environment: KUBECTL, MONITORING_NAMESPACE, ISTIO_NAMESPACE, KPS_RELEASE, and the local ports
# GRAFANA_PORT (3000), KIALI_PORT (20001), JAEGER_PORT (16686), PROMETHEUS_PORT (9090).
set -euo pipefail

KUBECTL=${KUBECTL:-kubectl}
MONITORING_NAMESPACE=${MONITORING_NAMESPACE:-monitoring}
ISTIO_NAMESPACE=${ISTIO_NAMESPACE:-istio-system}
KPS_RELEASE=${KPS_RELEASE:-kube-prometheus-stack}
GRAFANA_PORT=${GRAFANA_PORT:-3000}
KIALI_PORT=${KIALI_PORT:-20001}
JAEGER_PORT=${JAEGER_PORT:-16686}
PROMETHEUS_PORT=${PROMETHEUS_PORT:-9090}

pids=()
stop() {
  trap - INT TERM EXIT
  if [ ${#pids[@]} -gt 0 ]; then
    echo
    echo "Stopping port-forwards (pids ${pids[*]})"
    kill "${pids[@]}" 2>/dev/null || true
    wait "${pids[@]}" 2>/dev/null || true
  fi
}
trap stop EXIT
trap 'stop; exit 130' INT
trap 'stop; exit 143' TERM

# forward NAME NAMESPACE SERVICE LOCAL_PORT REMOTE_PORT
forward() {
  if ! "$KUBECTL" get service "$3" --namespace "$2" >/dev/null 2>&1; then
    echo "  $1: service $2/$3 not found (run 'make ambient-up'); skipped" >&2
    return
  fi
  "$KUBECTL" port-forward --namespace "$2" "service/$3" "$4:$5" >/dev/null 2>&1 &
  pids+=("$!")
  echo "  $1: http://localhost:$4"
}

echo "Dashboards:"
forward Grafana "$MONITORING_NAMESPACE" "$KPS_RELEASE-grafana" "$GRAFANA_PORT" 80
forward Kiali "$ISTIO_NAMESPACE" kiali "$KIALI_PORT" 20001
forward Jaeger "$ISTIO_NAMESPACE" jaeger-query "$JAEGER_PORT" 16686
forward Prometheus "$MONITORING_NAMESPACE" "$KPS_RELEASE-prometheus" "$PROMETHEUS_PORT" 9090
[ ${#pids[@]} -gt 0 ] || { echo "Nothing to forward." >&2; exit 1; }

if password=$("$KUBECTL" get secret "$KPS_RELEASE-grafana" --namespace "$MONITORING_NAMESPACE" \
  -o jsonpath='{.data.admin-password}' 2>/dev/null) && [ -n "$password" ]; then
  echo "Grafana login: admin / $(printf '%s' "$password" | base64 -d)  (dashboards in the 'AI Agents' folder)"
fi
echo "Press Ctrl-C to stop."

# Return when any port-forward ends (e.g. its pod restarted), so a dead tunnel is not left looking alive.
while :; do
  for pid in "${pids[@]}"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "Port-forward $pid ended; stopping the others." >&2
      exit 1
    fi
  done
  sleep 2
done
