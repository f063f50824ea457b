#!/bin/sh
# Builds the Debian base image the Dockerfiles take as BASE_IMAGE on a machine that reaches Debian's
# mirror but no image registry: debootstrap's minbase of bookworm with Debian's Python 3.11 (what
# python:3.11-slim-bookworm carries), imported as an image. Idempotent: an image already there is kept.
#   sh scripts/local-base.sh            # prints the image name
#   LOCAL_BASE=name:tag sh scripts/local-base.sh
set -eu

image="${LOCAL_BASE:-medtune-local/debian:bookworm}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

if docker image inspect "$image" >/dev/null 2>&1; then
  echo "$image"
  exit 0
fi
command -v debootstrap >/dev/null || { echo "local-base: needs debootstrap (apt-get install debootstrap)" >&2; exit 1; }

root="$(mktemp -d /tmp/medtune-base.XXXXXX)"
trap 'rm -rf "$root"' EXIT
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$root" "$mirror" >&2
# Security and point-release updates, as the public images have them.
cat > "$root/etc/apt/sources.list" <<SOURCES
deb $mirror bookworm main
deb $mirror bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
SOURCES
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/archives/*.deb
tar -C "$root" -c . | docker import \
  -c 'ENV LANG=C.UTF-8' \
  -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  -c 'CMD ["/bin/bash"]' \
  - "$image" >&2
echo "$image"
