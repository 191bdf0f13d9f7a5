#!/usr/bin/env bash
# Build the imgcls image with podman (or docker), offline.
#
#   1. the base: BASE if given (e.g. python:3.11-slim from a registry), otherwise a local
#      Debian bookworm base made by build-base.sh (this machine has no registry);
#   2. the build context in container/.cache/context: the wheelhouse (wheelhouse.sh) plus
#      the optional calibration folder and ResNet-18 weights file;
#   3. `podman build --network none` of container/Containerfile.
#
# Env (all optional):
#   IMGCLS_IMAGE      tag to build                  (default localhost/imgcls:latest)
#   BASE              base image                    (default: the local Debian base)
#   CALIBRATION_DIR   host folder of photos -> INT8 artifacts baked in as well
#   RESNET18_WEIGHTS  host path of resnet18-f37072fd.pth -> ResNet-18 baked in as well
#   CONTAINER_ENGINE  podman (default) or docker
#   CONTEXT_ONLY=1    only prepare the context and print the build command
#   IMGCLS_PRUNE=0    keep the dangling layers that earlier builds left (podman only)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib.sh
source "$here/lib.sh"

engine="${CONTAINER_ENGINE:-podman}"
context="$IMGCLS_CACHE_DIR/context"
start=$SECONDS

context_only="${CONTEXT_ONLY:-0}"
if [[ "$engine" == podman ]]; then
    [[ "$context_only" == 1 ]] || ensure_tools
    engine_cmd=("${PODMAN[@]}")
    # Without the docker format, podman drops HEALTHCHECK from the image.
    build_opts=(--format docker --layers)
else
    engine_cmd=("$engine")
    build_opts=()
fi

if [[ -z "${BASE:-}" ]]; then
    BASE="$IMGCLS_BASE_IMAGE"
    [[ "$engine" == podman ]] || die "set BASE (e.g. python:3.11-slim) when building with $engine"
    [[ "$context_only" == 1 ]] || "$here/build-base.sh" "$BASE"
    log "base ready after $((SECONDS - start)) s"
fi

rm -rf "$context"
mkdir -p "$context"
"$here/wheelhouse.sh" "$context"
log "wheelhouse ready after $((SECONDS - start)) s"

# Digests of what the build bind-mounts (see the Containerfile: podman's cache ignores it).
project_wheel="$(find "$context/wheels" -name 'imgcls-*.whl' | head -n1)"
[[ -n "$project_wheel" ]] || die "no imgcls wheel in $context/wheels"
deps_digest="$( (cat "$context/constraints.txt"
                 find "$context/wheels" -name '*.whl' ! -name 'imgcls-*' -printf '%f %s\n' | LC_ALL=C sort
                ) | sha256sum | cut -c1-16)"
project_digest="$(sha256sum "$project_wheel" | cut -c1-16)"
build_args=(--build-arg "BASE=$BASE" --build-arg "DEPS_DIGEST=$deps_digest"
            --build-arg "PROJECT_DIGEST=$project_digest")
if [[ -n "${CALIBRATION_DIR:-}" ]]; then
    [[ -d "$CALIBRATION_DIR" ]] || die "CALIBRATION_DIR=$CALIBRATION_DIR is not a folder"
    cp -rL "$CALIBRATION_DIR" "$context/calibration"
    calibration_digest="$(cd "$context/calibration" && find . -type f -print0 | LC_ALL=C sort -z \
                          | xargs -0 sha256sum | sha256sum | cut -c1-16)"
    build_args+=(--build-arg CALIBRATION_DIR=calibration --build-arg "CALIBRATION_DIGEST=$calibration_digest")
    log "INT8: calibrating with $(find "$context/calibration" -type f | wc -l) files from $CALIBRATION_DIR"
fi
if [[ -n "${RESNET18_WEIGHTS:-}" ]]; then
    [[ -f "$RESNET18_WEIGHTS" ]] || die "RESNET18_WEIGHTS=$RESNET18_WEIGHTS is not a file"
    mkdir -p "$context/weights"
    cp -L "$RESNET18_WEIGHTS" "$context/weights/"
    build_args+=(--build-arg "RESNET18_WEIGHTS=weights/$(basename "$RESNET18_WEIGHTS")")
    log "ResNet-18: importing $RESNET18_WEIGHTS (verified against the catalogue SHA-256 in the build)"
fi

build=("${engine_cmd[@]}" build "${build_opts[@]}" --network none "${build_args[@]}"
       -f "$here/Containerfile")
if [[ "$context_only" == 1 ]]; then
    printf '%q ' "${build[@]}" -t "$IMGCLS_IMAGE" "$context"; echo
    exit 0
fi

log "building $IMGCLS_IMAGE from $BASE"
if [[ "$engine" == podman && "${IMGCLS_PRUNE:-1}" == 1 ]]; then
    # Every intermediate stage gets a tag, so that pruning the layers that later builds left
    # dangling (each code change leaves a few hundred MB) keeps the cache: the next build
    # still skips the torch install, and the export when the code did not change.
    for stage in builder-deps builder serving-deps serving-venv; do
        log "stage $stage (at $((SECONDS - start)) s)"
        "${build[@]}" --target "$stage" -t "$IMGCLS_CACHE_TAG-$stage" "$context"
    done
fi
log "stage runtime (at $((SECONDS - start)) s)"
"${build[@]}" -t "$IMGCLS_IMAGE" "$context"
if [[ "$engine" == podman && "${IMGCLS_PRUNE:-1}" == 1 ]]; then
    # Dangling images only: untagged, no children. IMGCLS_PRUNE=0 keeps them.
    "${engine_cmd[@]}" image prune -f >/dev/null
fi
size="$("${engine_cmd[@]}" image inspect --format '{{.Size}}' "$IMGCLS_IMAGE")"
log "built $IMGCLS_IMAGE: $((size / 1000000)) MB, in $((SECONDS - start)) s"
