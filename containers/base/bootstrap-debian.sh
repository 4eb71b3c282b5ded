#!/usr/bin/env bash
# Make a Debian bookworm base image from Debian's packages when no public image can be pulled
# (no Docker Hub on this network). Usage: bootstrap-debian.sh TAG
set -euo pipefail
tag=${1:?usage: bootstrap-debian.sh TAG}
command -v debootstrap >/dev/null || { echo "debootstrap is missing: apt-get install -y debootstrap" >&2; exit 1; }
# Use the mirror the host's apt already reaches.
mirror=$( { grep -rhoE '^(URIs:|deb) +https?://[^ ]+/debian/?( |$)' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null || true; } \
  | head -1 | awk '{print $2}')
mirror=${mirror:-http://deb.debian.org/debian}
dir=$(mktemp -d /tmp/byoc-rootfs.XXXXXX)
trap 'rm -rf "$dir"' EXIT
echo "bootstrapping Debian bookworm (minbase) from $mirror into $tag" >&2
debootstrap --variant=minbase bookworm "$dir" "$mirror" >/dev/null
# Keep the image small and apt usable inside builds.
rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/*
echo "deb $mirror bookworm main" > "$dir/etc/apt/sources.list"
echo "deb $mirror bookworm-updates main" >> "$dir/etc/apt/sources.list"
tar -C "$dir" -c . | docker import --change 'CMD ["/bin/bash"]' - "$tag" >/dev/null
echo "$tag" >&2
