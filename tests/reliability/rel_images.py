"""Image payloads for the catalogue, generated at test time from the shared dev photos and Pillow.

Where Pillow can write the format (AVIF, EPS, ICNS, GIF, CMYK JPEG, 16-bit PNG...) the sample is
real; where it cannot (PSD, FITS, a HEIC header) the bytes are a minimal well-formed file built by hand,
and the tests check Pillow recognises them, so "refused" means refused by our allow-list and not
because the sample was junk.
"""

from __future__ import annotations

import io
import random
import struct
import zipfile
import zlib

import numpy as np
from PIL import Image, ImageChops

SECRET_NAME = "SECRET-PAYLOAD-7f3a.txt"
SECRET_TEXT = b"TOP-SECRET-CONTENT-91c2e5 do not echo"


def save(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def upright(photo_bytes: bytes, size: int | None = None) -> Image.Image:
    image = Image.open(io.BytesIO(photo_bytes)).convert("RGB")
    if size:
        image.thumbnail((size, size))
    return image


# -- not images ----------------------------------------------------------------------------------
def random_bytes() -> bytes:
    data = random.Random(20261123).randbytes(8192)
    return b"\x13\x37" + data  # a start no image format (and no known file type) uses


def text_file() -> bytes:
    return "A shopping list, not a photo:\n- milk\n- bread\n".encode() * 20


def zip_file() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(SECRET_NAME, SECRET_TEXT * 4)
    return buffer.getvalue()


def pdf_file() -> bytes:
    return (b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n2 0 obj<</Type/Pages/Kids[]/Count 0>>endobj\n"
            b"trailer<</Root 1 0 R>>\n%%EOF\n")


def svg_file() -> bytes:
    return (b'<?xml version="1.0" encoding="UTF-8"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="640" '
            b'height="480"><rect width="640" height="480" fill="red"/><script>alert(1)</script></svg>\n')


# -- image formats outside the allow-list -------------------------------------------------------
def _box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", 8 + len(payload)) + kind + payload


def heic_file() -> bytes:
    """An ISO-BMFF file with HEIC brands and no decodable image (a header and random bytes)."""
    ftyp = _box(b"ftyp", b"heic" + b"\x00\x00\x00\x00" + b"mif1heicmiaf")
    meta = _box(b"meta", b"\x00\x00\x00\x00" + _box(b"hdlr", b"\x00" * 8 + b"pict" + b"\x00" * 13))
    return ftyp + meta + _box(b"mdat", random.Random(1).randbytes(2048))


def avif_photo(image: Image.Image) -> bytes:
    return save(image, "AVIF", quality=80)


def jpeg2000_photo(image: Image.Image, scale: int = 1) -> bytes:
    """Lossy JPEG 2000 (20:1, as archives keep access copies), optionally upscaled ``scale`` times."""
    if scale > 1:
        image = image.resize((image.width * scale, image.height * scale), Image.LANCZOS)
    return save(image, "JPEG2000", irreversible=True, quality_mode="rates", quality_layers=[20])


def heic_photo(image: Image.Image) -> bytes:
    import pillow_heif  # the `heic` extra (installed by make test)

    pillow_heif.register_heif_opener()
    return save(image, "HEIF", quality=80)


def fits_file() -> bytes:
    cards = ["SIMPLE  =                    T", "BITPIX  =                    8", "NAXIS   =                    2",
             "NAXIS1  =                   16", "NAXIS2  =                   16", "END"]
    header = "".join(card.ljust(80) for card in cards).ljust(2880).encode("ascii")
    return header + bytes(range(256)).ljust(2880, b"\x00")


def eps_file(image: Image.Image) -> bytes:
    return save(image.resize((32, 24)), "EPS")


def psd_file() -> bytes:
    width, height = 16, 8
    header = b"8BPS" + struct.pack(">H6xHIIHH", 1, 3, height, width, 8, 3)  # v1, 3 channels, 8-bit RGB
    sections = struct.pack(">III", 0, 0, 0)  # colour mode data, image resources, layers: empty
    pixels = bytes(range(width * height)) * 3
    return header + sections + struct.pack(">H", 0) + pixels  # raw (uncompressed) planes


def icns_file(image: Image.Image) -> bytes:
    return save(image.resize((128, 128)), "ICNS")


# -- sizes ---------------------------------------------------------------------------------------
def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_declaring(width: int, height: int) -> bytes:
    """A few-hundred-byte PNG whose header declares width x height RGB pixels (the data is a stub)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 4096))
            + _png_chunk(b"IEND", b""))


def png_bilevel_real(width: int, height: int) -> bytes:
    """A complete, valid 1-bit PNG of width x height (all black): huge in pixels, tiny in bytes."""
    row = b"\x00" + b"\x00" * ((width + 7) // 8)
    compressor = zlib.compressobj(9)
    idat = bytearray()
    for _ in range(height):
        idat += compressor.compress(row)
    idat += compressor.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", bytes(idat)) + _png_chunk(b"IEND", b"")


def strip(width: int, height: int) -> bytes:
    arr = (np.arange(width * height, dtype=np.uint32) % 251).astype(np.uint8).reshape(height, width)
    return save(Image.fromarray(arr), "PNG")


def one_by_one() -> bytes:
    return save(Image.new("RGB", (1, 1), (200, 30, 40)), "PNG")


# -- modes and colour ----------------------------------------------------------------------------
def grey8_png(image: Image.Image) -> bytes:
    return save(image.convert("L"), "PNG")


def grey16_png(image: Image.Image) -> bytes:
    """The same picture as grey8_png, stored at 16 bits (v * 257), so a correct decoder sees identical pixels."""
    arr = np.asarray(image.convert("L"), dtype=np.uint16) * 257
    return save(Image.fromarray(arr.astype(np.uint16)), "PNG")


def png_bit_depth(data: bytes) -> int:
    return data[24]  # IHDR: 8 sig + 4 len + 4 type + 4 w + 4 h -> bit depth


def strip_adobe_marker(data: bytes) -> bytes:
    """Remove the APP14 'Adobe' segment of a JPEG (the rest is unchanged)."""
    out, i = bytearray(data[:2]), 2
    while i < len(data):
        marker = data[i + 1]
        if marker == 0xDA:
            out += data[i:]
            break
        length = int.from_bytes(data[i + 2 : i + 4], "big")
        if not (marker == 0xEE and data[i + 4 : i + 9] == b"Adobe"):
            out += data[i : i + 2 + length]
        i += 2 + length
    return bytes(out)


def cmyk_adobe_jpeg(image: Image.Image) -> bytes:
    """Photoshop-style CMYK: inverted values behind an Adobe APP14 marker (what libjpeg writes)."""
    data = save(image.convert("CMYK"), "JPEG", quality=95)
    assert b"Adobe" in data[:200]
    return data


def cmyk_plain_jpeg(image: Image.Image) -> bytes:
    """CMYK with plain (non-inverted) values and no Adobe marker."""
    return strip_adobe_marker(save(ImageChops.invert(image.convert("CMYK")), "JPEG", quality=95))


def cmyk_wrongly_inverted_jpeg(image: Image.Image) -> bytes:
    """Negative control: inverted values *without* the marker, i.e. a colour-negative picture."""
    return strip_adobe_marker(save(image.convert("CMYK"), "JPEG", quality=95))


def _alpha(image: Image.Image) -> Image.Image:
    w, h = image.size
    ramp = np.tile(np.linspace(60, 255, w, dtype=np.float32), (h, 1)).astype(np.uint8)
    return Image.fromarray(ramp)


def rgba_png(image: Image.Image) -> bytes:
    rgba = image.convert("RGBA")
    rgba.putalpha(_alpha(image))
    return save(rgba, "PNG")


def la_png(image: Image.Image) -> bytes:
    la = image.convert("LA")
    la.putalpha(_alpha(image))
    return save(la, "PNG")


def palette_transparent_png(image: Image.Image) -> bytes:
    palette = image.quantize(colors=255)
    return save(palette, "PNG", transparency=0)


def palette_transparent_gif(image: Image.Image) -> bytes:
    return save(image.quantize(colors=255), "GIF", transparency=0)


def mode1_png(image: Image.Image) -> bytes:
    return save(image.convert("1"), "PNG")


def greyscale_jpeg(image: Image.Image) -> bytes:
    return save(image.convert("L"), "JPEG", quality=92)


def animated_gif(image: Image.Image, frames: int = 1000) -> tuple[bytes, bytes]:
    """(animated GIF with ``frames`` frames whose first frame is ``image``, that first frame alone as a GIF)."""
    first = image.resize((96, 72)).quantize(colors=128)
    others = []
    for i in range(1, frames):  # a small square wandering over the picture: every frame differs
        frame = first.copy()
        x, y = (i * 7) % (first.width - 6), (i * 3) % (first.height - 6)
        frame.paste(i % 128, (x, y, x + 6, y + 6))
        others.append(frame)
    animated = save(first, "GIF", save_all=True, append_images=others, duration=20, loop=0)
    return animated, save(first, "GIF")


# -- EXIF ----------------------------------------------------------------------------------------
def exif_rotated_jpeg(image: Image.Image, orientation: int) -> bytes:
    """Stored sideways, with the EXIF orientation that makes it upright again (6 or 8)."""
    stored = image.transpose(Image.Transpose.ROTATE_90 if orientation == 6 else Image.Transpose.ROTATE_270)
    exif = Image.Exif()
    exif[0x0112] = orientation
    return save(stored, "JPEG", quality=95, exif=exif.tobytes())


def corrupt_exif_jpeg(jpeg: bytes) -> bytes:
    """A JPEG with an APP1 Exif segment whose TIFF structure is garbage (IFD pointing past the end)."""
    tiff = b"MM\x00\x2a" + struct.pack(">I", 0x7FFFFFF0) + b"\xff" * 40
    payload = b"Exif\x00\x00" + tiff
    segment = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    return jpeg[:2] + segment + jpeg[2:]


def jpeg_with_zip(jpeg: bytes) -> bytes:
    return jpeg + zip_file()
