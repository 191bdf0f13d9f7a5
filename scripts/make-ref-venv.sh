#!/usr/bin/env bash
# Build the parity reference venv (.venv-ref): REAL torchvision, which cannot live in the project's
# .venv (that one is pinned to the CPU torch 2.13.0 wheel, and PyPI's torchvision fails on it with
# "operator torchvision::nms does not exist").
#
# torch 2.14.1 + torchvision 0.29.1 are a matched pair from PyPI. On Linux x86_64 PyPI's torch is
# the CUDA build (~5.5 GB installed with its nvidia-* wheels); it runs fine on a CPU-only machine.
# Nothing here touches .venv. Only PyPI is needed (no download.pytorch.org).
#
# Idempotent: a stamp file records what was installed; when the stamp matches and torchvision
# imports, the script does nothing. Pillow and numpy follow the project venv's versions when it
# exists, so the preprocessing parity check runs on the same image library the product uses.
#
# Usage: scripts/make-ref-venv.sh            (REF_VENV=path to build elsewhere, PYTHON=python3.x)
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
REF="${REF_VENV:-.venv-ref}"
case "$REF" in /*) ;; *) REF="$ROOT/$REF" ;; esac
PY="${PYTHON:-python3}"
STAMP="$REF/.ref-ready"
TORCH_VERSION="2.14.1"
TORCHVISION_VERSION="0.29.1"

# Match the project venv's Pillow/numpy when it exists (a product-runtime-faithful comparison).
pin_like_project() {
    local dist="$1" version=""
    if [ -x "$ROOT/.venv/bin/python" ]; then
        version="$("$ROOT/.venv/bin/python" -c "import importlib.metadata as m; print(m.version('$dist'))" 2>/dev/null || true)"
    fi
    if [ -n "$version" ]; then echo "$dist==$version"; else echo "$dist"; fi
}

REQUIREMENTS=(
    "torch==$TORCH_VERSION"
    "torchvision==$TORCHVISION_VERSION"
    "$(pin_like_project numpy)"
    "$(pin_like_project pillow)"
    "onnxruntime"
)
WANT="${REQUIREMENTS[*]}"

ready() {
    [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ] && \
        "$REF/bin/python" -c "import torch, torchvision, numpy, PIL, onnxruntime" >/dev/null 2>&1
}

if ready; then
    touch "$STAMP"  # newer than make's prerequisites, so make stops asking
    echo "reference venv up to date: $REF"
    exit 0
fi

started=$(date +%s)
if [ ! -x "$REF/bin/python" ]; then
    "$PY" -m venv "$REF"
    "$REF/bin/python" -m pip install --disable-pip-version-check -q --upgrade pip
fi
rm -f "$STAMP"
echo "building reference venv $REF: $WANT"
# No -c constraints.txt here on purpose: that file pins the project's CPU torch 2.13.0.
"$REF/bin/python" -m pip install --disable-pip-version-check --progress-bar off "${REQUIREMENTS[@]}"

# Prove the pair really works (this is exactly what breaks with mismatched builds) before stamping.
"$REF/bin/python" - <<'EOF'
import torch, torchvision
from torchvision.ops import nms
boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 11.0, 11.0]])
assert nms(boxes, torch.tensor([0.9, 0.8]), 0.5).tolist() == [0]
torchvision.models.resnet18(weights=None)
print(f"torch {torch.__version__}, torchvision {torchvision.__version__}: OK")
EOF
echo "$WANT" > "$STAMP"
size=$(du -sh "$REF" 2>/dev/null | cut -f1)
echo "reference venv ready in $(( $(date +%s) - started )) s, size $size: $REF"
