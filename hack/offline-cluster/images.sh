#!/usr/bin/env bash
# Builds the node's images as OCI archives in $OC_CACHE/images (skipping those already built from the same
# inputs): pause (a static C binary), busybox (Debian's busybox-static: the smoke test's server and client),
# coredns and metrics-server (the binaries build.sh made). up.sh imports them into the node's containerd.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
mkdir -p "$OC_IMAGES"
mk="$OC_DIR/images/mkimage.py"

# image FILE_STEM NAME INPUT... -- MKIMAGE_ARGS...: rebuild when the name, an input or mkimage.py changed.
image() {
  local stem="$1" name="$2"; shift 2
  local inputs=() sum out="$OC_IMAGES/$stem.tar"
  while [[ "$1" != "--" ]]; do inputs+=("$1"); shift; done; shift
  sum="$( { echo "$name $*"; cat "$mk" "${inputs[@]}"; } | sha256sum | cut -c1-16)"
  if [[ -f "$out" && "$(cat "$out.stamp" 2>/dev/null)" == "$sum" ]]; then oc_log "image $name: cached"; return; fi
  python3 "$mk" --name "$name" --out "$out" "$@" >/dev/null
  echo "$sum" > "$out.stamp"
  oc_log "image $name: $out ($(du -h "$out" | cut -f1))"
}

pause_bin="$OC_IMAGES/pause.bin"
if [[ ! -f "$pause_bin" || "$OC_DIR/images/pause.c" -nt "$pause_bin" ]]; then
  gcc -Os -static -o "$pause_bin" "$OC_DIR/images/pause.c" && strip "$pause_bin"
fi
image pause "$OFFLINE_PAUSE_IMAGE" "$pause_bin" -- --entrypoint /pause --file "$pause_bin=/pause"

# busybox: the binary and its applet links for the few commands the smoke test uses. (Debian's static wget
# segfaults here, on the host too: clients use nc.)
bb=/bin/busybox
[[ -x $bb ]] || oc_die "missing $bb (Debian busybox-static)"
bb_args=(--entrypoint /bin/sh --file "$bb=/bin/busybox" --file "$bb=/bin/sh" --dir /tmp --dir /www)
for applet in httpd nc wget nslookup sleep cat echo ls hostname env ps kill seq grep; do bb_args+=(--file "$bb=/bin/$applet"); done
image busybox "$OFFLINE_BUSYBOX_IMAGE" "$bb" -- "${bb_args[@]}"

if [[ -x "$OC_COREDNS_BIN/coredns" ]]; then
  image coredns "$OFFLINE_COREDNS_IMAGE" "$OC_COREDNS_BIN/coredns" -- \
    --entrypoint /coredns --file "$OC_COREDNS_BIN/coredns=/coredns"
else oc_log "image $OFFLINE_COREDNS_IMAGE: skipped, run build.sh coredns first"; fi

if [[ -x "$OC_METRICS_SERVER_BIN/metrics-server" ]]; then
  image metrics-server "$OFFLINE_METRICS_SERVER_IMAGE" "$OC_METRICS_SERVER_BIN/metrics-server" -- \
    --entrypoint /metrics-server --file "$OC_METRICS_SERVER_BIN/metrics-server=/metrics-server" --dir /tmp --user 1000
else oc_log "image $OFFLINE_METRICS_SERVER_IMAGE: skipped, run build.sh metrics-server first"; fi

# KEDA: one image per binary, as upstream ships them (the manifests name the command, so only the binary matters).
if [[ -x "$OC_KEDA_BIN/keda" ]]; then
  for pair in "keda:$OFFLINE_KEDA_IMAGE" "keda-adapter:$OFFLINE_KEDA_ADAPTER_IMAGE" \
              "keda-admission-webhooks:$OFFLINE_KEDA_WEBHOOKS_IMAGE"; do
    bin="${pair%%:*}" ref="${pair#*:}"
    image "$bin" "$ref" "$OC_KEDA_BIN/$bin" -- \
      --entrypoint "/$bin" --file "$OC_KEDA_BIN/$bin=/$bin" --dir /tmp --dir /certs --user 65532:65532
  done
else oc_log "KEDA images: skipped, run build.sh keda first"; fi

# Prometheus Operator and its config reloader: the binaries build.sh made, at the paths upstream's images use
# (the operator starts the reloader sidecar as /bin/prometheus-config-reloader).
if [[ -x "$OC_PROMETHEUS_OPERATOR_BIN/operator" ]]; then
  for triple in "prometheus-operator:operator:$OFFLINE_PROMETHEUS_OPERATOR_IMAGE" \
                "prometheus-config-reloader:prometheus-config-reloader:$OFFLINE_PROMETHEUS_CONFIG_RELOADER_IMAGE"; do
    IFS=: read -r stem bin ref <<< "$triple"
    image "$stem" "$ref" "$OC_PROMETHEUS_OPERATOR_BIN/$bin" -- \
      --entrypoint "/bin/$bin" --file "$OC_PROMETHEUS_OPERATOR_BIN/$bin=/bin/$bin" --dir /tmp --user 65534:65534
  done
else oc_log "Prometheus Operator images: skipped, run build.sh prometheus-operator first"; fi

# Prometheus: the binary build.sh made (Kubernetes service discovery only), laid out as upstream's image is.
if [[ -x "$OC_PROMETHEUS_BIN/prometheus" ]]; then
  image prometheus "$OFFLINE_PROMETHEUS_IMAGE" "$OC_PROMETHEUS_BIN/prometheus" -- \
    --entrypoint /bin/prometheus --file "$OC_PROMETHEUS_BIN/prometheus=/bin/prometheus" --dir /prometheus --dir /etc/prometheus --dir /tmp \
    --user 65534:65534
else oc_log "image $OFFLINE_PROMETHEUS_IMAGE: skipped, run build.sh prometheus first"; fi

# Jaeger v2: the static binary build.sh made, as upstream's image runs it.
if [[ "${OFFLINE_CLUSTER_JAEGER:-1}" == 1 ]]; then
  [[ -x "$OC_JAEGER_BIN/jaeger" ]] || oc_die "Jaeger image: run build.sh jaeger first"
  image jaeger "$OFFLINE_JAEGER_IMAGE" "$OC_JAEGER_BIN/jaeger" -- \
    --entrypoint /jaeger --file "$OC_JAEGER_BIN/jaeger=/jaeger" --dir /tmp --user 10001:10001
fi

# Istio ambient: istiod (pilot-discovery is static: the binary alone, as upstream's distroless image, with the
# bootstrap template directory it expects), then the CNI node agent and ztunnel, which need a Debian userland
# (agent-image.sh). OFFLINE_CLUSTER_ISTIO=0 leaves them out.
if [[ "${OFFLINE_CLUSTER_ISTIO:-1}" == 1 ]]; then
  [[ -x "$OC_ISTIO_BIN/pilot-discovery" ]] || oc_die "Istio images: run build.sh istio first"
  image istio-pilot "$OFFLINE_ISTIO_HUB/pilot:$OC_ISTIO_IMAGE_TAG" "$OC_ISTIO_BIN/pilot-discovery" -- \
    --entrypoint /usr/local/bin/pilot-discovery --file "$OC_ISTIO_BIN/pilot-discovery=/usr/local/bin/pilot-discovery" \
    --dir /tmp --dir /var/lib/istio/envoy --user 1337:1337
  "$OC_DIR/agent-image.sh" istio-cni ztunnel
fi

# The umbrella chart's images (the runtime from agent_image/Dockerfile, PostgreSQL from Debian), built with
# buildah on a debootstrap base (agent-image.sh); the runtime's pip install needs PyPI on a cold cache or after
# agent_image/ changed. OFFLINE_CLUSTER_APP_IMAGES=0 leaves them out (the cluster then runs only its addons).
if [[ "${OFFLINE_CLUSTER_APP_IMAGES:-1}" == 1 ]]; then
  "$OC_DIR/agent-image.sh" runtime postgres
else oc_log "runtime and PostgreSQL images: skipped (OFFLINE_CLUSTER_APP_IMAGES=0)"; fi
