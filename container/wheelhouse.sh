#!/usr/bin/env bash
# Prepare the wheelhouse for container/Containerfile on the host: DEST/wheels/*.whl and
# DEST/constraints.txt. The image build then installs with --no-index from it.
#
# Versions are pinned to the project's own environment (.venv, see pins.py), so the image
# runs exactly the numpy / onnxruntime / pillow that the host tests ran, and its answers can
# be compared with the host CLI's. Wheels are taken the usual way (pip's configured indexes
# and find-links, pip's cache), for this machine's platform: build the image on the same
# architecture it is for.
#
# Dependency wheels are cached in container/.cache/wheels/deps-<hash of the pins>/ and reused
# while the pins are unchanged; the project's own wheel is rebuilt every time.
#
# Usage: container/wheelhouse.sh DEST
# Env:   PYTHON (default: .venv/bin/python of the repo), BUILD_EXTRAS (default: export)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib.sh
source "$here/lib.sh"

dest="${1:?usage: wheelhouse.sh DEST}"
python="${PYTHON:-$IMGCLS_REPO_DIR/.venv/bin/python}"
extras="${BUILD_EXTRAS:-export}"
[[ -x "$python" ]] || die "no $python: run 'make install' first (or set PYTHON=...)"
[[ -f "$IMGCLS_REPO_DIR/pyproject.toml" ]] || die "no pyproject.toml in $IMGCLS_REPO_DIR"

pip=("$python" -m pip --disable-pip-version-check --no-input)
# The project's name and what it declares for the image (core + build extras): part of the
# cache key, so that a new requirement in pyproject.toml is collected even before .venv has it.
read -r project declared < <("$python" - "$IMGCLS_REPO_DIR/pyproject.toml" "$extras" <<'EOF'
import hashlib, json, sys, tomllib
with open(sys.argv[1], "rb") as f:
    meta = tomllib.load(f)["project"]
optional = meta.get("optional-dependencies", {})
declared = [meta.get("dependencies", [])] + [optional.get(e, []) for e in sys.argv[2].split(",")]
print(meta["name"], hashlib.sha256(json.dumps(declared).encode()).hexdigest()[:16])
EOF
)
[[ -n "${project:-}" && -n "${declared:-}" ]] || die "could not read [project] from pyproject.toml"

mkdir -p "$dest" "$IMGCLS_CACHE_DIR/wheels"
# Pins: the installed versions of everything the project and its build extras need (pins.py
# walks the requirements in .venv). Test tools and other extras stay out, so adding one to
# .venv neither changes the image nor throws the cached wheels away.
"$python" "$here/pins.py" "${project}[${extras}]" > "$dest/constraints.txt.tmp"
mv "$dest/constraints.txt.tmp" "$dest/constraints.txt"

key="$( (cat "$dest/constraints.txt"; echo "declared=$declared extras=$extras"; uname -m; "$python" -V) \
        | sha256sum | cut -c1-16)"
# A clean copy of the sources to build from: setuptools builds in-tree, and a stale build/
# folder would carry deleted modules into the wheel (and litter the work tree).
src="$IMGCLS_CACHE_DIR/src"
rm -rf "$src"
mkdir -p "$src"
(
    cd "$IMGCLS_REPO_DIR"
    for f in pyproject.toml setup.py setup.cfg MANIFEST.in README* LICEN[CS]E* NOTICE*; do
        [[ -e "$f" ]] && cp -p "$f" "$src/"
    done
    tar -cf - --exclude='__pycache__' --exclude='*.egg-info' --exclude='*.pyc' src | tar -xf - -C "$src"
)

deps="$IMGCLS_CACHE_DIR/wheels/deps-$key"
if [[ ! -f "$deps/.complete" ]]; then
    log "collecting dependency wheels into $deps"
    rm -rf "$deps"
    mkdir -p "$deps"
    # Resolve the project with its build extras against the pins; pip wheel builds a wheel
    # for any dependency published only as an sdist, so the image build never compiles.
    # pip's own chatter (this machine's local index warnings) goes to a log, shown on failure.
    if ! "${pip[@]}" wheel --wheel-dir "$deps" -c "$dest/constraints.txt" \
            "${src}[${extras}]" > "$deps.log" 2>&1; then
        tail -n 40 "$deps.log" >&2
        die "pip wheel failed (full log: $deps.log)"
    fi
    rm -f "$deps"/"${project//-/_}"-*.whl
    # A torch that was not pinned to the CPU build drags in gigabytes of CUDA libraries.
    if compgen -G "$deps/nvidia_*.whl" >/dev/null; then
        die "the wheelhouse holds CUDA libraries (nvidia_*): install the CPU build of torch" \
            "in $python's environment first (make install), then rerun"
    fi
    touch "$deps/.complete"
    # Older sets are dead weight once the pins move on.
    find "$IMGCLS_CACHE_DIR/wheels" -mindepth 1 -maxdepth 1 -name 'deps-*' ! -name "deps-$key*" \
        -exec rm -rf {} +
else
    log "reusing dependency wheels in $deps"
fi

log "building the $project wheel"
rm -rf "$dest/wheels" "$IMGCLS_CACHE_DIR/wheels/project"
mkdir -p "$dest/wheels"
wheel_log="$IMGCLS_CACHE_DIR/wheels/project.log"
# The build backend from .venv when it has one (seconds), else pip's isolated build env.
# A fixed timestamp makes the wheel reproducible: its digest (PROJECT_DIGEST) then changes
# only with its content, and an unchanged project reuses the exported artifacts.
export SOURCE_DATE_EPOCH=315532800
if ! "${pip[@]}" wheel --no-deps --no-build-isolation --wheel-dir "$IMGCLS_CACHE_DIR/wheels/project" \
        "$src" > "$wheel_log" 2>&1 \
   && ! "${pip[@]}" wheel --no-deps --wheel-dir "$IMGCLS_CACHE_DIR/wheels/project" \
        "$src" >> "$wheel_log" 2>&1; then
    tail -n 40 "$wheel_log" >&2
    die "could not build the $project wheel (full log: $wheel_log)"
fi
# Hard links when the cache and DEST share a file system: no copy of torch's 190 MB.
cp -l "$deps"/*.whl "$IMGCLS_CACHE_DIR/wheels/project"/*.whl "$dest/wheels/" 2>/dev/null \
    || cp "$deps"/*.whl "$IMGCLS_CACHE_DIR/wheels/project"/*.whl "$dest/wheels/"
log "wheelhouse ready: $(find "$dest/wheels" -name '*.whl' | wc -l) wheels, $(du -sh "$dest/wheels" | cut -f1)"
