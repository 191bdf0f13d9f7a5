"""Safe decoding: the documented outcome for each kind of bad or unusual input."""

from __future__ import annotations

import io
import struct
import warnings
import zlib

import numpy as np
import pytest
from PIL import Image

from imaging import jpeg_bytes, png_bytes
from imgcls.catalog.entries import CATALOG
from imgcls.errors import (
    CorruptImageError,
    EmptyFileError,
    ImageTooLargeError,
    PayloadTooLargeError,
    UnsupportedMediaError,
)
from imgcls.preprocess import DEFAULT_MAX_PIXELS, decode_image, preprocess, resize_and_crop, sniff_format

PP = CATALOG["resnet18"].preprocessing


def photo(size=(320, 240)) -> Image.Image:
    """A deterministic, photo-like RGB image: colour gradients with a bright off-centre square."""
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    arr = np.stack([xx * 255 // max(w - 1, 1), yy * 255 // max(h - 1, 1), (xx + yy) * 127 // max(w + h - 2, 1)], -1)
    arr[h // 4 : h // 2, w // 5 : w // 2] = (250, 30, 30)
    return Image.fromarray(arr.astype(np.uint8), "RGB")


def huge_png_header(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares width x height (the pixel data is a stub)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


def test_empty_file():
    with pytest.raises(EmptyFileError):
        decode_image(b"")


@pytest.mark.parametrize(
    "payload, detected",
    [
        (b"hello, this is a text file pretending to be a JPEG\n", "text"),
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj", "PDF"),
        (b"PK\x03\x04\x14\x00\x00\x00\x08\x00", "ZIP"),
        (b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"></svg>', "SVG"),
        (b"<svg width='10' height='10'></svg>", "SVG"),
        (b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomavc1", "video"),
        (b"SIMPLE  =                    T / FITS", "FITS"),
        (b"%!PS-Adobe-3.0 EPSF-3.0\n", "EPS"),
        (b"8BPS\x00\x01\x00\x00\x00\x00\x00\x00", "PSD"),
        (b"icns\x00\x00\x01\x00", "ICNS"),
        (bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8)), "supported"),
    ],
)
def test_non_images_are_unsupported_by_content(payload, detected):
    with pytest.raises(UnsupportedMediaError, match=detected):
        decode_image(payload)


@pytest.mark.parametrize("head, fmt", [
    (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic", "HEIF"),
    (b"\x00\x00\x00\x18ftypmif1\x00\x00\x00\x00mif1heic", "HEIF"),
    (b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1miaf", "AVIF"),
    (b"\x00\x00\x00\x18ftypmif1\x00\x00\x00\x00mif1avif", "AVIF"),  # AVIF listing mif1 first is still AVIF
])
def test_heif_family_is_told_apart_by_its_brands(head, fmt):
    assert sniff_format(head + b"\x00" * 32) == fmt


def test_truncated_jpeg_is_corrupt_not_grey():
    data = jpeg_bytes(photo((640, 480)))
    with pytest.raises(CorruptImageError, match="corrupt"):
        decode_image(data[: len(data) // 2])


def test_bytes_cap():
    with pytest.raises(PayloadTooLargeError):
        decode_image(jpeg_bytes(photo()), max_bytes=1000)


def test_pixel_bomb_rejected_from_header_before_decoding():
    data = huge_png_header(100_000, 100_000)
    assert len(data) < 200
    with pytest.raises(ImageTooLargeError, match="megapixels"):
        decode_image(data)


def test_between_one_and_two_times_pillows_limit_is_rejected():
    pixels = int(Image.MAX_IMAGE_PIXELS * 1.5)
    assert pixels > DEFAULT_MAX_PIXELS
    with pytest.raises(ImageTooLargeError):
        decode_image(huge_png_header(pixels // 10_000, 10_000))
    # and even with a cap raised above Pillow's, Pillow's warning becomes an error
    with pytest.raises(ImageTooLargeError):
        decode_image(huge_png_header(pixels // 10_000, 10_000), max_pixels=10**12)


def test_extreme_aspect_ratio_does_not_explode():
    strip = Image.new("RGB", (1, 65535), (10, 200, 30))
    decoded = decode_image(png_bytes(strip))
    arr = preprocess(decoded.image, PP)
    assert arr.shape == (3, 224, 224) and np.isfinite(arr).all()
    wide = Image.new("RGB", (65535, 2), (10, 200, 30))
    assert preprocess(decode_image(png_bytes(wide)).image, PP).shape == (3, 224, 224)


def test_one_pixel_image():
    arr = preprocess(decode_image(png_bytes(Image.new("RGB", (1, 1), (255, 0, 0)))).image, PP)
    assert arr.shape == (3, 224, 224)
    assert arr[0].min() > 2 and arr[1].max() < -1  # red stays red


def test_sixteen_bit_greyscale_is_scaled_not_clipped():
    ramp = (np.linspace(0, 65535, 256, dtype=np.float64)[None, :].repeat(16, 0)).astype(np.uint16)
    image = Image.fromarray(ramp)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    decoded = decode_image(buffer.getvalue())
    out = np.asarray(decoded.image)
    assert out[0, 0, 0] == 0 and out[0, -1, 0] == 255 and 120 <= out[0, 128, 0] <= 135
    assert "16-bit" in " ".join(decoded.report.conversions)


def test_thirty_two_bit_greyscale_beyond_sixteen_bits_is_stretched_not_clipped():
    """A 32-bit integer TIFF (Pillow mode "I") with values past 65,535 keeps its whole ramp and
    says how it was scaled; one whose values fit 16 bits is read as 16-bit."""
    def ramp(top):
        return np.linspace(0, top, 256)[None, :].repeat(16, 0).astype(np.int32)

    for values, expected in ((ramp(1 << 20), "32-bit greyscale, scaled to its brightest pixel"),
                             (ramp(65535), "16-bit greyscale")):
        buffer = io.BytesIO()
        Image.fromarray(values, "I").save(buffer, format="TIFF")
        decoded = decode_image(buffer.getvalue())
        out = np.asarray(decoded.image)[0, :, 0].astype(int)
        assert decoded.report.mode == "I" and expected in " ".join(decoded.report.conversions)
        assert out[0] == 0 and out[-1] == 255 and 120 <= out[128] <= 135  # the whole ramp, not a clipped one
        assert (np.diff(out) >= 0).all()


def test_cmyk_jpeg_colours_are_right():
    # libjpeg writes CMYK the way Photoshop does: inverted values behind an Adobe APP14 marker.
    # Decoding must undo the inversion, or the photo comes out as its negative.
    red = Image.new("RGB", (64, 64), (220, 20, 20)).convert("CMYK")
    data = jpeg_bytes(red)
    assert data[2:4] == b"\xff\xee" and data[6:11] == b"Adobe"
    decoded = decode_image(data)
    r, g, b = np.asarray(decoded.image).reshape(-1, 3).mean(0)
    assert r > 180 and g < 60 and b < 60
    assert "converted from CMYK" in decoded.report.conversions


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P"])
def test_transparency_is_composited_on_white_deterministically(mode):
    base = Image.new("RGBA", (40, 40), (0, 0, 255, 0))
    base.paste((0, 0, 255, 255), (10, 10, 30, 30))
    image = base.convert(mode) if mode != "P" else base.convert("RGB").quantize(4)
    if mode == "P":
        image.info["transparency"] = image.getpixel((0, 0))
    data = png_bytes(image)
    first, second = decode_image(data), decode_image(data)
    assert np.array_equal(np.asarray(first.image), np.asarray(second.image))
    corner = np.asarray(first.image)[0, 0]
    assert tuple(corner) == (255, 255, 255)
    assert any("transparen" in c or "palette" in c for c in first.report.conversions)


@pytest.mark.parametrize("mode", ["1", "L"])
def test_bilevel_and_greyscale(mode):
    decoded = decode_image(png_bytes(photo().convert(mode)))
    assert decoded.image.mode == "RGB"


def test_animated_gif_uses_first_frame_quickly():
    import time

    frames = [Image.new("RGB", (32, 32), (i % 256, (i * 7) % 256, i // 256 * 60)) for i in range(1000)]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=10)
    started = time.perf_counter()
    decoded = decode_image(buffer.getvalue())
    assert time.perf_counter() - started < 2.0
    assert "animated image: first frame used" in decoded.report.conversions


@pytest.mark.parametrize("orientation, rotate", [(6, 270), (8, 90), (3, 180)])
def test_exif_orientation_is_applied(orientation, rotate):
    upright = photo((300, 200))
    stored = upright.rotate(-rotate, expand=True)  # what the camera stored
    exif = Image.Exif()
    exif[0x0112] = orientation
    decoded = decode_image(jpeg_bytes(stored, exif=exif.tobytes()))
    assert decoded.image.size == upright.size
    diff = np.abs(np.asarray(decoded.image, np.int16) - np.asarray(upright, np.int16)).mean()
    assert diff < 6, diff
    assert f"rotated per EXIF orientation {orientation}" in decoded.report.conversions


def test_corrupt_exif_still_classifies_without_a_printed_warning():
    data = bytearray(jpeg_bytes(photo(), exif=b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\x00\x05\x01\x12"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # Pillow warns "Corrupt EXIF data" for this file
        decoded = decode_image(bytes(data))
    assert decoded.image.size == (320, 240)
    assert [str(w.message) for w in caught] == []  # about the file, so not printed to the host's stderr


def test_jpeg_with_zip_appended_is_classified():
    data = jpeg_bytes(photo()) + b"PK\x03\x04" + b"\x00" * 200
    assert decode_image(data).image.size == (320, 240)


def test_report_describes_the_input():
    report = decode_image(jpeg_bytes(photo((321, 123)))).report.to_dict()
    assert report == {"format": "JPEG", "width": 321, "height": 123, "mode": "RGB",
                      "bytes": report["bytes"], "conversions": []}


def test_resize_matches_torchvision_geometry():
    # Shorter side -> 256 with int() truncation on the long side, then int(round()) centre offsets.
    out = resize_and_crop(photo((500, 333)), PP)
    assert out.size == (224, 224)


def test_draft_mode_only_for_large_jpegs():
    small = decode_image(jpeg_bytes(photo((600, 400))), draft_size=256)
    assert not any("draft" in c for c in small.report.conversions)
    big = decode_image(jpeg_bytes(photo((2400, 1600))), draft_size=256)
    assert "decoded at 1/2 scale (JPEG draft mode)" in big.report.conversions
    assert big.report.width == 2400  # the report keeps the original size


def test_int8_calibration_photos_are_decoded_as_the_default_server_decodes(tmp_path):
    from imgcls.artifacts import load_images_as_batch
    from imgcls.catalog import resolve_model

    spec = resolve_model("resnet18")
    (tmp_path / "big.jpg").write_bytes(jpeg_bytes(photo((2400, 1600))))
    (tmp_path / "small.jpg").write_bytes(jpeg_bytes(photo((600, 400))))
    paths = [tmp_path / "big.jpg", tmp_path / "small.jpg"]
    served = [preprocess(decode_image(p.read_bytes(), draft_size=spec.preprocessing.resize).image, spec.preprocessing)
              for p in paths]
    exact = [preprocess(decode_image(p.read_bytes()).image, spec.preprocessing) for p in paths]
    assert not np.array_equal(served[0], exact[0])  # draft mode applies to the big photo
    assert np.array_equal(load_images_as_batch(spec, paths), np.stack(served))
    assert np.array_equal(load_images_as_batch(spec, paths, draft=False), np.stack(exact))


def jpeg2000_bytes(image: Image.Image, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG2000", **options)
    return buffer.getvalue()


@pytest.mark.parametrize("options", [{}, {"no_jp2": True}], ids=["jp2 container", "bare codestream"])
def test_jpeg2000_is_decoded_with_the_right_colours(options):
    original = photo((320, 240))
    decoded = decode_image(jpeg2000_bytes(original, **options))  # Pillow's default: lossless
    assert decoded.report.format == "JPEG2000" and decoded.image.size == (320, 240)
    assert np.array_equal(np.asarray(decoded.image), np.asarray(original))


def test_jpeg2000_big_files_stop_at_a_halved_resolution_level():
    big = jpeg2000_bytes(photo((2400, 1600)), irreversible=True)
    decoded = decode_image(big, draft_size=256)
    assert decoded.image.size == (1200, 800) and decoded.report.width == 2400
    assert "decoded at 1/2 scale (JPEG 2000 resolution level)" in decoded.report.conversions
    assert decode_image(big).image.size == (2400, 1600)  # no draft size: every pixel
    # A file with no halved levels (one resolution) cannot stop early: decoded in full, no error.
    flat = decode_image(jpeg2000_bytes(photo((2400, 1600)), irreversible=True, num_resolutions=1), draft_size=256)
    assert flat.image.size == (2400, 1600) and flat.report.conversions == []


def test_jpeg2000_truncated_is_corrupt():
    data = jpeg2000_bytes(photo((640, 480)))
    with pytest.raises(CorruptImageError, match="corrupt"):
        decode_image(data[: len(data) // 2], draft_size=256)


def test_jpeg2000_fewer_levels_than_the_header_says_decodes_in_full(monkeypatch):
    """A tile header may declare fewer resolution levels than the main header: the reduced
    decode then fails, and the file is decoded in full instead of being called corrupt."""
    import imgcls.preprocess as preprocess_module

    flat = jpeg2000_bytes(photo((2400, 1600)), irreversible=True, num_resolutions=1)
    monkeypatch.setattr(preprocess_module, "_jpeg2000_levels", lambda data: 3)  # what a main header could claim
    decoded = decode_image(flat, draft_size=256)
    assert decoded.image.size == (2400, 1600) and decoded.report.conversions == []
