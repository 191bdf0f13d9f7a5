"""The decode path's contract, shared by the atheris harness and the regression replays.

For ANY input bytes, ``check_input`` must either see an ``imgcls.errors.ImgclsError`` (which the
server turns into a 4xx with a plain message) or get an upright RGB image that preprocesses to a
finite float32 (3, crop, crop) array. Any other exception escapes and is a finding.
"""

from __future__ import annotations

import numpy as np

from imgcls.catalog.entries import CATALOG
from imgcls.errors import ImgclsError
from imgcls.preprocess import decode_image, preprocess

PP = CATALOG["efficientnet_lite0"].preprocessing
MAX_PIXELS = 4_000_000  # keeps each input fast; the pixel-cap logic itself is still exercised
MAX_BYTES = 1 << 20


def check_input(data: bytes, draft: bool = False) -> str:
    """Run decode + preprocess on ``data``; returns "refused:<code>" or "ok", raises on a finding."""
    try:
        decoded = decode_image(data, max_bytes=MAX_BYTES, max_pixels=MAX_PIXELS, draft_size=PP.resize if draft else None)
    except ImgclsError as exc:
        return f"refused:{exc.code}"
    image = decoded.image
    if image.mode != "RGB" or min(image.size) < 1:
        raise AssertionError(f"decode_image returned mode {image.mode} size {image.size}")
    array = preprocess(image, PP)
    if array.shape != (3, PP.crop, PP.crop) or array.dtype != np.float32 or not np.isfinite(array).all():
        raise AssertionError(f"preprocess returned {array.shape} {array.dtype}")
    return "ok"
