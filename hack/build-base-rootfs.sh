#!/usr/bin/env bash
# Builds a Debian bookworm root filesystem with python3 (3.11) and python3-venv using debootstrap, and imports
# it as the image ai-agents/base:bookworm, so that agent_image/Dockerfile builds without a container registry:
#
#   sudo hack/build-base-rootfs.sh
#   make image BASE_IMAGE=ai-agents/base:bookworm
#
# The image is imported with `docker import` when a Docker engine answers, else with `ctr images import`
# (containerd; namespace $CTR_NAMESPACE, default `default`; Docker's containerd image store uses `moby`).
#
# Options:
#   --image NAME     image name (default ai-agents/base:bookworm, or $BASE_IMAGE)
#   --rootfs DIR     use an already built root filesystem instead of running debootstrap
#   --output FILE    write the image as a docker-archive tarball (loadable by `docker load` or
#                    `ctr images import`) to FILE and import nothing
# Environment: DEBIAN_MIRROR (default http://deb.debian.org/debian), ARCH (default: this machine's).
# Needs root (debootstrap and chroot), debootstrap (`apt-get install debootstrap`), tar and sha256sum.
set -euo pipefail

IMAGE=${BASE_IMAGE:-ai-agents/base:bookworm}
SUITE=bookworm
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
CTR_NAMESPACE=${CTR_NAMESPACE:-default}
ROOTFS=""
OUTPUT=""

die() { printf '%s: %s\n' "${0##*/}" "$1" >&2; exit 1; }
log() { printf '==> %s\n' "$1" >&2; }

while [ $# -gt 0 ]; do
  case "$1" in
    --image) IMAGE=${2:?--image needs a value}; shift 2 ;;
    --rootfs) ROOTFS=${2:?--rootfs needs a value}; shift 2 ;;
    --output) OUTPUT=${2:?--output needs a value}; shift 2 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
done

case "$(uname -m)" in
  x86_64) default_arch=amd64 ;;
  aarch64 | arm64) default_arch=arm64 ;;
  *) default_arch=$(uname -m) ;;
esac
ARCH=${ARCH:-$default_arch}

for tool in tar sha256sum; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool is not on PATH"
done

workdir=$(mktemp -d "${TMPDIR:-/tmp}/ai-agents-base.XXXXXX")
cleanup() { rm -rf "$workdir"; }
trap cleanup EXIT

if [ -z "$ROOTFS" ]; then
  [ "$(id -u)" -eq 0 ] || die "debootstrap needs root: run with sudo (or pass --rootfs DIR)"
  command -v debootstrap >/dev/null 2>&1 || die "debootstrap is missing: apt-get install debootstrap"
  ROOTFS=$workdir/rootfs
  log "debootstrap $SUITE ($ARCH) from $DEBIAN_MIRROR"
  debootstrap --variant=minbase --arch="$ARCH" \
    --include=python3,python3-venv,ca-certificates "$SUITE" "$ROOTFS" "$DEBIAN_MIRROR"
  # An image needs no package lists, caches, docs or logs; apt-get update restores the lists when needed.
  rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/*.bin "$ROOTFS"/var/cache/apt/archives/*.deb \
    "$ROOTFS"/usr/share/doc/* "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/info/* "$ROOTFS"/var/log/*.log
  log "checking python3 in the root filesystem"
  chroot "$ROOTFS" python3 -c \
    'import sys, ensurepip, venv; assert sys.version_info[:2] == (3, 11), sys.version; print("python", sys.version.split()[0])'
fi
[ -d "$ROOTFS" ] || die "root filesystem $ROOTFS is not a directory"

layer=$workdir/layer.tar
log "packing $ROOTFS"
tar --numeric-owner --xattrs --sort=name -C "$ROOTFS" -cf "$layer" .

# `docker import` takes the rootfs tarball directly.
if [ -z "$OUTPUT" ] && command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
  log "docker import as $IMAGE"
  docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["python3"]' \
    "$layer" "$IMAGE"
  log "done: make image BASE_IMAGE=$IMAGE"
  exit 0
fi

# Otherwise write a docker-archive (the `docker save` layout): manifest.json, the image config, one layer.
if [ -z "$OUTPUT" ] && ! command -v ctr >/dev/null 2>&1; then
  die "neither a Docker engine nor ctr is available: pass --output FILE to write the image archive"
fi
diff_id=$(sha256sum "$layer" | cut -d' ' -f1)
archive=$workdir/archive
mkdir -p "$archive/$diff_id"
mv "$layer" "$archive/$diff_id/layer.tar"
created=$(date -u +%Y-%m-%dT%H:%M:%SZ)
cat >"$workdir/config.json" <<JSON
{"architecture":"$ARCH","os":"linux","created":"$created",
 "config":{"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin","LANG=C.UTF-8"],"Cmd":["python3"]},
 "rootfs":{"type":"layers","diff_ids":["sha256:$diff_id"]},
 "history":[{"created":"$created","created_by":"hack/build-base-rootfs.sh (debootstrap $SUITE)"}]}
JSON
config_id=$(sha256sum "$workdir/config.json" | cut -d' ' -f1)
mv "$workdir/config.json" "$archive/$config_id.json"
printf '[{"Config":"%s.json","RepoTags":["%s"],"Layers":["%s/layer.tar"]}]\n' \
  "$config_id" "$IMAGE" "$diff_id" >"$archive/manifest.json"
tarball=${OUTPUT:-$workdir/image.tar}
tar --numeric-owner -C "$archive" -cf "$tarball" manifest.json "$config_id.json" "$diff_id"

if [ -n "$OUTPUT" ]; then
  log "wrote $OUTPUT ($IMAGE): load it with 'docker load -i $OUTPUT' or 'ctr images import $OUTPUT'"
  exit 0
fi
log "ctr -n $CTR_NAMESPACE images import as $IMAGE"
ctr --namespace "$CTR_NAMESPACE" images import "$tarball"
log "done: make image BASE_IMAGE=$IMAGE"
