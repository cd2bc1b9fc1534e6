#!/usr/bin/env bash
# Build localhost/debian-base:bookworm, the root of the CI stand-in images, with debootstrap
# (about 3 minutes). Kept when it exists: CI machines that still have it reuse it.
# Usage: debian-base.sh <podman|docker>
set -euo pipefail
engine=${1:?usage: debian-base.sh <podman|docker>}
image=localhost/debian-base:bookworm

if "$engine" image exists "$image" 2>/dev/null \
  || "$engine" image inspect "$image" >/dev/null 2>&1; then
  echo "stand-ins: $image exists, reused"
  exit 0
fi
command -v debootstrap >/dev/null || { echo "debootstrap is missing: apt-get install debootstrap"; exit 1; }
rootfs=$(mktemp -d /var/tmp/debian-base.XXXXXX)
trap 'rm -rf "$rootfs"' EXIT
echo "stand-ins: debootstrap bookworm into $rootfs (about 3 minutes)"
debootstrap --variant=minbase bookworm "$rootfs" >"$rootfs.log" 2>&1 \
  || { tail -20 "$rootfs.log"; echo "debootstrap failed (log: $rootfs.log)"; exit 1; }
rm -f "$rootfs.log"
# apt caches and lists are re-fetched by every image that installs packages.
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
tar -C "$rootfs" -c . | "$engine" import - "$image" >/dev/null
echo "stand-ins: imported $image"
