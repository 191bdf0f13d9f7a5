# Shared settings for the container/*.sh scripts. Sourced, not run.
# shellcheck shell=bash disable=SC2034  # the variables are for the scripts that source this

IMGCLS_CONTAINER_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
IMGCLS_REPO_DIR="$(cd "$IMGCLS_CONTAINER_DIR/.." && pwd)"
IMGCLS_CACHE_DIR="${IMGCLS_CACHE_DIR:-$IMGCLS_CONTAINER_DIR/.cache}"
IMGCLS_BASE_IMAGE="${IMGCLS_BASE_IMAGE:-localhost/imgcls-base:bookworm}"
IMGCLS_IMAGE="${IMGCLS_IMAGE:-localhost/imgcls:latest}"
# Tags that keep the intermediate build stages (the layer cache) alive across prunes.
IMGCLS_CACHE_TAG="${IMGCLS_CACHE_TAG:-localhost/imgcls-cache:stage}"

# Podman as this machine needs it (see containers.conf). A caller may point
# CONTAINERS_CONF elsewhere; PODMAN_RUNTIME may name another OCI runtime (crun).
export CONTAINERS_CONF="${CONTAINERS_CONF:-$IMGCLS_CONTAINER_DIR/containers.conf}"
PODMAN=(podman --runtime "${PODMAN_RUNTIME:-runc}")

log() { printf '[container] %s\n' "$*" >&2; }
die() { printf "[container] error: %s\n" "$*" >&2; exit 1; }

need_root() {
    [[ "$(id -u)" == 0 ]] || die "$1 needs root (run as root, or prepare the base image elsewhere)"
}

# Install podman, runc and debootstrap from Debian's packages when any is missing.
# CI runs as root on a fresh machine of this kind, so this is what makes
# `make image-test` self-sufficient there.
ensure_tools() {
    local missing=()
    command -v podman >/dev/null || missing+=(podman)
    command -v runc >/dev/null || missing+=(runc)
    command -v debootstrap >/dev/null || missing+=(debootstrap)
    ((${#missing[@]} == 0)) && return 0
    command -v apt-get >/dev/null || die "missing ${missing[*]} and no apt-get to install them"
    need_root "installing ${missing[*]}"
    log "installing ${missing[*]} with apt-get"
    # Another apt may be running (a test setup installing a browser, say): wait for its lock.
    apt-get -o DPkg::Lock::Timeout=600 update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 \
        install -y -q "${missing[@]}" >/dev/null
}
