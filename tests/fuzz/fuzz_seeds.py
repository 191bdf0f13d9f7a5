"""Small valid images of every allowed format (and the variants the decoder treats specially),
generated at test time as the fuzzer's starting corpus."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image


def _save(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def seed_files() -> dict[str, bytes]:
    """name -> bytes: a few hundred bytes to a few KB each."""
    yy, xx = np.mgrid[0:24, 0:32]
    rgb = Image.fromarray(np.stack([xx * 8, yy * 10, (xx + yy) * 4], -1).astype(np.uint8))
    rgba = rgb.convert("RGBA")
    rgba.putalpha(Image.fromarray((xx * 8).astype(np.uint8)))
    exif = Image.Exif()
    exif[0x0112] = 6
    grey16 = Image.fromarray((yy * 2000 + xx * 10).astype(np.uint16))
    frames = [rgb.quantize(16), rgb.transpose(Image.Transpose.FLIP_LEFT_RIGHT).quantize(16)]
    return {
        "rgb.jpg": _save(rgb, "JPEG", quality=80),
        "progressive.jpg": _save(rgb, "JPEG", quality=70, progressive=True),
        "grey.jpg": _save(rgb.convert("L"), "JPEG"),
        "cmyk.jpg": _save(rgb.convert("CMYK"), "JPEG"),
        "exif6.jpg": _save(rgb, "JPEG", exif=exif.tobytes()),
        "rgb.png": _save(rgb, "PNG"),
        "rgba.png": _save(rgba, "PNG"),
        "palette-transparent.png": _save(rgb.quantize(16), "PNG", transparency=0),
        "grey16.png": _save(grey16, "PNG"),
        "la.png": _save(rgb.convert("LA"), "PNG"),
        "bilevel.png": _save(rgb.convert("1"), "PNG"),
        "animated.gif": _save(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0),
        "lossy.webp": _save(rgb, "WEBP", quality=60),
        "lossless-alpha.webp": _save(rgba, "WEBP", lossless=True),
        "rgb.bmp": _save(rgb, "BMP"),
        "palette.bmp": _save(rgb.quantize(16), "BMP"),
        "rgb.tif": _save(rgb, "TIFF"),
        "lzw.tif": _save(rgb, "TIFF", compression="tiff_lzw"),
        "packbits-grey.tif": _save(rgb.convert("L"), "TIFF", compression="packbits"),
        "float.tif": _save(Image.fromarray((yy / 24.0).astype(np.float32)), "TIFF"),
        "lossy.jp2": _save(rgb, "JPEG2000", irreversible=True, quality_mode="rates", quality_layers=[10]),
        "lossless.j2k": _save(rgb.convert("L"), "JPEG2000", no_jp2=True),
    }


def write_seeds(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, data in seed_files().items():
        path = folder / name
        path.write_bytes(data)
        paths.append(path)
    return paths
