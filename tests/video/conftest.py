"""Videos made by the tests with PyAV: still, slightly panned shared dev photos with known labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

av = pytest.importorskip("av", reason="PyAV not installed (pip install 'imgcls[video]')")


def pick_codec() -> str:
    """h264 through libx264 when this FFmpeg build has it, else MPEG-4 part 2 (always built in)."""
    for name in ("libx264", "mpeg4"):
        try:
            av.codec.Codec(name, "w")
            return name
        except Exception:
            continue
    pytest.skip("no H.264 or MPEG-4 encoder in this PyAV build")


def write_video(path: Path, clips: list[tuple[Image.Image, float]], *, fps: int = 10, size=(320, 240),
                codec: str | None = None, gop: int | None = None, pan: int = 12) -> Path:
    """Encode ``clips`` (image, seconds) one after another; each clip pans ``pan`` pixels left to right.

    ``gop`` fixes the keyframe interval in frames (scene-cut keyframes are turned off then).
    """
    codec = codec or pick_codec()
    width, height = size
    container = av.open(str(path), mode="w")
    stream = container.add_stream(codec, rate=fps)
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
    if gop:
        stream.gop_size = gop
        if codec == "libx264":
            stream.options = {"sc_threshold": "0", "keyint_min": str(gop)}
    for image, seconds in clips:
        canvas = image.convert("RGB").resize((width + pan, height + pan * height // width), Image.BILINEAR)
        frames = int(round(seconds * fps))
        for i in range(frames):
            dx = int(round(pan * i / max(1, frames - 1)))
            crop = canvas.crop((dx, 0, dx + width, height))
            frame = av.VideoFrame.from_ndarray(np.asarray(crop), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    return path


@pytest.fixture(scope="session")
def make_video():
    """The video writer above: ``make_video(path, [(PIL image, seconds), ...], fps=, gop=, codec=)``."""
    return write_video


@pytest.fixture(scope="session")
def classifier(lite0_fp32):
    from imgcls.engine import Classifier

    return Classifier("efficientnet_lite0", "fp32", batch_size=8)
