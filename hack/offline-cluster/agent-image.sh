#!/usr/bin/env bash
# Builds, without a registry or a Docker engine, the images the umbrella chart runs, as docker archives in
# $OC_CACHE/images that up.sh imports into the node's containerd (namespace k8s.io):
#   base      hack/build-base-rootfs.sh (debootstrap bookworm + python3) -> $OC_CACHE/base/base-bookworm.tar
#   runtime   agent_image/Dockerfile, the Dockerfile users build, on that base -> agent-runtime.tar, named
#             $OFFLINE_AGENT_IMAGE (the chart's default: image.registry "", ai-agents/runtime, tag = appVersion)
#   postgres  images/postgres/Containerfile (Debian's postgresql-15 on the same base) -> postgres.tar, named
#             $OFFLINE_POSTGRES_IMAGE (the e2e harness sets store.postgresql.image.* to it: E2E_POSTGRES_IMAGE)
#   istio-cni images/istio-cni/Containerfile (build.sh istio's install-cni + istio-cni, Debian's iptables) ->
#             istio-install-cni.tar, named $OFFLINE_ISTIO_HUB/install-cni:$OC_ISTIO_IMAGE_TAG
#   ztunnel   images/ztunnel/Containerfile (build.sh ztunnel's binary) -> istio-ztunnel.tar
# Builds run in Debian's buildah (chroot isolation, vfs storage under $OC_CACHE/buildah); RUN steps use the
# host's network (pip reaches PyPI, apt-get reaches Debian) and the host's CA bundle (OFFLINE_BUILD_CA_BUNDLE). Each image is rebuilt only when its inputs change.
# Times go to $OC_CACHE/build-times.tsv, logs to $OC_CACHE/logs/image-*.log.
#
# Usage: agent-image.sh [base|runtime|postgres|istio-cni|ztunnel]...   (default: base, runtime, postgres)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
[[ "$(id -u)" -eq 0 ]] || oc_die "needs root (debootstrap, buildah chroot isolation)"
REPO="$(cd "$OC_DIR/../.." && pwd)"
mkdir -p "$OC_IMAGES" "$OC_CACHE/base" "$OC_CACHE/logs"

if ! command -v buildah >/dev/null || ! command -v debootstrap >/dev/null; then
  oc_log "installing Debian's buildah and debootstrap"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends buildah debootstrap >/dev/null
fi
# Storage of our own (vfs: works on any filesystem, no fuse-overlayfs), never the host's default store.
BUILDAH=(buildah --root "$OC_CACHE/buildah/root" --runroot "$OC_CACHE/buildah/run" --storage-driver vfs)
BASE_ARCHIVE="$OC_CACHE/base/base-bookworm.tar"
BASE_REF=localhost/ai-agents/base:bookworm

record() { # name seconds
  printf '%s\t%s\t%ss\t%s\t%s\n' "$(date -u +%FT%TZ)" "$1" "$2" "image" "$(buildah --version | cut -d' ' -f1-3)" \
    >> "$OC_CACHE/build-times.tsv"
  oc_log "$1: built in $2s"
}
# tree_sum FILE_OR_DIR...: a digest of paths and contents (build inputs), ignoring bytecode and tool caches
# (lint runs leave .mypy_cache and .ruff_cache in agent_image/; .dockerignore keeps them out of the image).
tree_sum() {
  find "$@" -type f ! -path '*/__pycache__/*' ! -name '*.py[cod]' ! -path '*.egg-info/*' \
    ! -path '*/.mypy_cache/*' ! -path '*/.ruff_cache/*' ! -path '*/.pytest_cache/*' -print0 | sort -z \
    | xargs -0 sha256sum | sed "s|$REPO/||" | sha256sum | cut -c1-16
}
fresh() { [[ -f "$1" && "$(cat "$1.stamp" 2>/dev/null)" == "$2" ]]; }

build_base() {
  local sum; sum="$(tree_sum "$REPO/hack/build-base-rootfs.sh")"
  if fresh "$BASE_ARCHIVE" "$sum"; then oc_log "base image: cached"; return; fi
  local t=$SECONDS log="$OC_CACHE/logs/image-base.log"
  oc_log "base image: debootstrap bookworm + python3 (log: $log)"
  "$REPO/hack/build-base-rootfs.sh" --output "$BASE_ARCHIVE.tmp" >"$log" 2>&1 \
    || { tail -20 "$log" >&2; oc_die "base image failed (log: $log)"; }
  mv "$BASE_ARCHIVE.tmp" "$BASE_ARCHIVE"; echo "$sum" > "$BASE_ARCHIVE.stamp"
  record base-rootfs $((SECONDS - t))
}

# The base in buildah's store under BASE_REF (fully qualified: no short-name resolution, nothing pulled).
load_base() {
  if [[ "$(cat "$OC_CACHE/buildah/base.stamp" 2>/dev/null)" == "$(cat "$BASE_ARCHIVE.stamp")" ]] \
     && "${BUILDAH[@]}" inspect --type image "$BASE_REF" >/dev/null 2>&1; then return; fi
  local id; id="$("${BUILDAH[@]}" pull --quiet "docker-archive:$BASE_ARCHIVE")"
  "${BUILDAH[@]}" tag "$id" "$BASE_REF"
  cp "$BASE_ARCHIVE.stamp" "$OC_CACHE/buildah/base.stamp"
}

# build NAME ARCHIVE_STEM REF CONTEXT CONTAINERFILE [BUILD_ARG...]
build() {
  local name="$1" stem="$2" ref="$3" ctx="$4" file="$5"; shift 5
  local out="$OC_IMAGES/$stem.tar" sum log="$OC_CACHE/logs/image-$stem.log" t=$SECONDS
  sum="$( { echo "$ref $*"; cat "$BASE_ARCHIVE.stamp"; tree_sum "$ctx" "$file"; } | sha256sum | cut -c1-16)"
  if fresh "$out" "$sum"; then oc_log "image $ref: cached"; return; fi
  load_base
  oc_log "image $ref: buildah bud $file (log: $log)"
  local args=(--isolation chroot --pull=false --format docker --layers=false --jobs 1 -f "$file" -t "$ref"
              --build-arg "BASE_IMAGE=$BASE_REF")
  for a in "$@"; do args+=(--build-arg "$a"); done
  # The host's CA bundle over the image's during RUN steps only (not in the image): where egress to PyPI goes
  # through a TLS-inspecting proxy, the host trusts its CA and the Debian base does not. OFFLINE_BUILD_CA_BUNDLE=
  # (empty) turns this off.
  local ca="${OFFLINE_BUILD_CA_BUNDLE-/etc/ssl/certs/ca-certificates.crt}"
  [[ -n "$ca" && -f "$ca" ]] && args+=(--volume "$ca:/etc/ssl/certs/ca-certificates.crt:ro")
  if ! "${BUILDAH[@]}" bud "${args[@]}" "$ctx" >"$log" 2>&1; then tail -30 "$log" >&2; oc_die "$name failed (log: $log)"; fi
  rm -f "$out.tmp"
  "${BUILDAH[@]}" push --quiet "$ref" "docker-archive:$out.tmp:$ref" >>"$log" 2>&1 || oc_die "exporting $ref failed (log: $log)"
  mv "$out.tmp" "$out"; echo "$sum" > "$out.stamp"
  # Only the archive is kept: drop the image and dangling layers from buildah's store (vfs copies are large).
  "${BUILDAH[@]}" rmi "$ref" >/dev/null 2>&1 || true
  "${BUILDAH[@]}" rmi --prune >/dev/null 2>&1 || true
  record "$name" $((SECONDS - t))
  oc_log "image $ref: $out ($(du -h "$out" | cut -f1))"
}

# binary_context NAME CONTAINERFILE_DIR BINARY...: a build context of the Containerfile and the binaries build.sh
# made (they live in the cache, outside any context): its digest changes when a binary does.
binary_context() {
  local ctx="$OC_CACHE/context/$1" src="$2"; shift 2
  rm -rf "$ctx"; mkdir -p "$ctx"
  cp "$src/Containerfile" "$ctx/"
  local b; for b in "$@"; do [[ -x "$b" ]] || oc_die "$b missing: run build.sh first"; cp "$b" "$ctx/"; done
  echo "$ctx"
}

targets=("$@"); [[ ${#targets[@]} -eq 0 ]] && targets=(base runtime postgres)
for target in "${targets[@]}"; do
  case "$target" in
    base) build_base ;;
    runtime)
      build_base
      build runtime agent-runtime "$OFFLINE_AGENT_IMAGE" "$REPO/agent_image" "$REPO/agent_image/Dockerfile" \
        "VERSION=${OFFLINE_AGENT_IMAGE##*:}" ;;
    postgres)
      build_base
      build postgres postgres "$OFFLINE_POSTGRES_IMAGE" "$OC_DIR/images/postgres" "$OC_DIR/images/postgres/Containerfile" ;;
    istio-cni)
      build_base
      ctx="$(binary_context istio-cni "$OC_DIR/images/istio-cni" "$OC_ISTIO_BIN/istio-cni" "$OC_ISTIO_BIN/install-cni")"
      build istio-cni istio-install-cni "$OFFLINE_ISTIO_HUB/install-cni:$OC_ISTIO_IMAGE_TAG" "$ctx" "$ctx/Containerfile" ;;
    ztunnel)
      build_base
      ctx="$(binary_context ztunnel "$OC_DIR/images/ztunnel" "$OC_ZTUNNEL_BIN/ztunnel")"
      build ztunnel istio-ztunnel "$OFFLINE_ISTIO_HUB/ztunnel:$OC_ISTIO_IMAGE_TAG" "$ctx" "$ctx/Containerfile" ;;
    *) oc_die "unknown image '$target' (base, runtime, postgres, istio-cni, ztunnel)" ;;
  esac
done
