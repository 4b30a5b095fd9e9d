#!/bin/sh
# The Python 3.11 base image for images/worker/Dockerfile, made from Debian packages alone.
#
#   images/base/build-base.sh [IMAGE]      (default localhost/factory-python:3.11-bookworm)
#
# No Docker engine and no registry besides Debian's: `debootstrap --variant=minbase bookworm`
# with python3 and python3-venv, then a venv at /usr/local so that `python` and `pip` sit where
# the official slim image has them (/usr/local/bin), committed with buildah (vfs storage, so it
# needs no kernel overlay support). The machine's CA bundle is copied in, so pip and npm inside
# the build trust what this machine trusts (a proxy's CA, if the registries are reached through one).
#
# Cached: an existing IMAGE is kept (FORCE=1 rebuilds it). Needs root, debootstrap and buildah.
set -eu

image=${1:-localhost/factory-python:3.11-bookworm}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
bundle=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
storage="--storage-driver vfs"

if [ "${FORCE:-0}" != 1 ] && buildah $storage inspect --type image "$image" >/dev/null 2>&1; then
    echo "base image $image: cached (FORCE=1 rebuilds it)" >&2
    exit 0
fi

root=$(mktemp -d /var/tmp/factory-base.XXXXXX)
container=""
cleanup() {
    if [ -n "$container" ]; then buildah $storage rm "$container" >/dev/null 2>&1 || true; fi
    rm -rf "$root"
}
trap cleanup EXIT

echo "debootstrap bookworm (minbase + python3) into $root" >&2
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$root" "$mirror" >&2

# The venv at /usr/local: `python`, `python3` and `pip` on the default PATH, as in python:3.11-slim.
chroot "$root" /usr/bin/python3 -m venv /usr/local
cp "$bundle" "$root/etc/ssl/certs/ca-certificates.crt"

# What a container never needs: package lists and caches, docs, man pages, locales.
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/* "$root"/var/cache/debconf/*-old \
    "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/var/log/*
find "$root/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name 'locale.alias' -exec rm -rf {} + 2>/dev/null || true
find "$root/usr/lib/python3.11" -name '__pycache__' -prune -exec rm -rf {} + 2>/dev/null || true

container=$(buildah $storage from scratch)
mountpoint=$(buildah $storage mount "$container")
cp -a "$root/." "$mountpoint/"
buildah $storage umount "$container" >/dev/null
buildah $storage config \
    --env PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env LANG=C.UTF-8 \
    --env PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    --env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    --env NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt \
    --cmd python3 \
    "$container"
buildah $storage commit --rm "$container" "$image" >&2
container=""
echo "base image $image: built" >&2
