#!/usr/bin/env bash
# Make a local base image for container/Containerfile when no registry is reachable.
#
# The Containerfile defaults to BASE=python:3.11-slim. Where that image cannot be pulled
# (this machine, CI), we build an equivalent from Debian's own packages: bookworm
# (Python 3.11) with debootstrap --variant=minbase plus python3 and python3-venv, then
# `podman import` it. Only Debian's package mirror is contacted, on the host.
#
# The root filesystem tarball is cached in container/.cache/ (git-ignored), so a rerun
# on the same machine only re-imports it (a few seconds) or does nothing at all.
#
# Usage: container/build-base.sh [IMAGE]   (default IMAGE: localhost/imgcls-base:bookworm)
# Env:   DEBIAN_MIRROR (default http://deb.debian.org/debian), IMGCLS_CACHE_DIR,
#        REBUILD_BASE=1 to ignore the cached tarball.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib.sh
source "$here/lib.sh"

image="${1:-$IMGCLS_BASE_IMAGE}"
suite=bookworm
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
packages=python3,python3-venv
tarball="$IMGCLS_CACHE_DIR/base/imgcls-base-$suite.tar"

if [[ "${REBUILD_BASE:-0}" != 1 ]] && "${PODMAN[@]}" image exists "$image"; then
    log "base image $image already present"
    exit 0
fi

if [[ "${REBUILD_BASE:-0}" == 1 || ! -s "$tarball" ]]; then
    need_root "debootstrap"
    mkdir -p "$(dirname "$tarball")"
    rootfs="$(mktemp -d "$IMGCLS_CACHE_DIR/base/rootfs.XXXXXX")"
    # Whatever happens, never leave a half-made root filesystem (or its mounts) behind.
    cleanup() {
        for m in proc sys dev/pts dev; do umount -l "$rootfs/$m" 2>/dev/null || true; done
        rm -rf --one-file-system "$rootfs"
    }
    trap cleanup EXIT

    log "debootstrap $suite (minbase + $packages) from $mirror"
    debootstrap --variant=minbase --include="$packages" "$suite" "$rootfs" "$mirror"

    # Slim it the way the official slim images are slimmed: no package caches, no
    # documentation, no apt lists (the image never installs anything with apt).
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/cache/apt/*.bin \
        "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/log/* \
        "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* \
        "$rootfs"/usr/share/locale/* "$rootfs"/tmp/* "$rootfs"/var/tmp/*
    find "$rootfs/usr/lib/python3.11" -name __pycache__ -prune -exec rm -rf {} +
    # No daemon may be started inside a build (debootstrap leaves this out in minbase).
    printf '#!/bin/sh\nexit 101\n' > "$rootfs/usr/sbin/policy-rc.d"
    chmod 0755 "$rootfs/usr/sbin/policy-rc.d"

    log "writing $tarball"
    tar --numeric-owner --xattrs -C "$rootfs" -cf "$tarball.tmp" .
    mv "$tarball.tmp" "$tarball"
    cleanup
    trap - EXIT
else
    log "using cached $tarball"
fi

log "importing $tarball as $image"
"${PODMAN[@]}" import --quiet \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["python3"]' \
    --message "debian $suite minbase + $packages (container/build-base.sh)" \
    "$tarball" "$image" >/dev/null
log "base image $image ready ($("${PODMAN[@]}" image inspect --format '{{.Size}}' "$image") bytes)"
