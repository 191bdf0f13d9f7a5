"""The bad-input catalogue, part 2: what is inside the file.

Non-images and formats outside the allow-list are refused by content (every sample is sent as
``photo.jpg`` with ``image/jpeg``, so neither the name nor the client's MIME type can decide);
size bombs are refused from the header; unusual but valid images are classified, with colours,
orientation and transparency handled so the answer matches the ordinary version of the photo.
"""

from __future__ import annotations

import io
import re
import time
import warnings

import httpx
import pytest
from PIL import Image

import rel_images as img
from rel_catalogue import record
from rel_server import CLASSIFY, expect_error, multipart, raw_exchange, head

pytestmark = pytest.mark.timeout(300)
SECTION = "Image content"


def classify(server, data: bytes, filename: str = "photo.jpg", mime: str = "image/jpeg", **params) -> httpx.Response:
    with httpx.Client(base_url=server.url, timeout=60) as client:
        return client.post(CLASSIFY, params=params, files={"file": (filename, data, mime)})


def top(response: httpx.Response) -> list[dict]:
    assert response.status_code == 200, response.text
    return response.json()["results"][0]["top"]


def expect_ok(server, case: str, response: httpx.Response, expected: str = "200", note: str = "") -> dict:
    """Record and check a case that must be classified (200 with a top list)."""
    body = response.json() if response.headers.get("content-type", "").startswith("application/json") else {}
    result = (body.get("results") or [{}])[0]
    first = (result.get("top") or [{}])[0]
    observed = f"{response.status_code} top-1 '{first.get('label', '-')}' ({first.get('score', 0):.2f})"
    conversions = ", ".join(result.get("input", {}).get("conversions", []))
    record(SECTION, case, expected, observed, note or conversions or f"{response.elapsed.total_seconds() * 1000:.0f} ms")
    assert response.status_code == 200, response.text
    assert result.get("top"), body
    server.assert_clean()
    return result


@pytest.fixture(scope="module")
def photos(rel_server, dev_photos) -> list[tuple[bytes, list[dict]]]:
    """Three dev photos the model is sure about (top-1 >= 0.6), with the server's answer for each."""
    chosen = []
    for path in dev_photos[:60]:
        data = path.read_bytes()
        answer = top(classify(rel_server, data))
        if answer[0]["score"] >= 0.6:
            chosen.append((data, answer))
        if len(chosen) == 3:
            break
    assert len(chosen) == 3, "fewer than three confident dev photos"
    return chosen


def same_top1(response: httpx.Response, expected: list[dict]) -> bool:
    return top(response)[0]["class_index"] == expected[0]["class_index"]


# -- refused by content --------------------------------------------------------------------------
NOT_IMAGES = {
    "random bytes named .jpg": (img.random_bytes, None),
    "text named .jpg": (img.text_file, "text"),
    "ZIP named .jpg": (img.zip_file, "ZIP"),
    "PDF named .jpg": (img.pdf_file, "PDF"),
    "SVG named .jpg": (img.svg_file, "SVG"),
    "FITS named .jpg": (img.fits_file, "FITS"),
    "PSD named .jpg": (img.psd_file, "Photoshop"),
}
REAL_OTHER_FORMATS = {
    "EPS named .jpg": (img.eps_file, "EPS"),
    "ICNS named .jpg": (img.icns_file, "ICNS"),
}


@pytest.mark.parametrize("case", list(NOT_IMAGES) + list(REAL_OTHER_FORMATS))
def test_refused_by_content_not_by_name(rel_server, photos, case):
    if case in NOT_IMAGES:
        make, detected = NOT_IMAGES[case]
        data = make()
    else:
        make, detected = REAL_OTHER_FORMATS[case]
        data = make(img.upright(photos[0][0]))
    if case.split()[0] in ("FITS", "PSD", "EPS", "ICNS"):
        assert Image.open(io.BytesIO(data)).format  # the sample is a real file Pillow could open
    payload = expect_error(rel_server, SECTION, case, classify(rel_server, data), {415}, "unsupported_media_type")
    if detected:
        assert detected.lower() in payload["error"]["message"].lower(), payload


def test_phone_formats_avif_and_heic_are_classified_like_the_jpeg(rel_server, photos):
    """AVIF (Pillow's own decoder) and HEIC (pillow-heif, the `heic` extra): iPhones' and newer
    Androids' default formats. Re-encoded from confident dev photos, named .jpg: same top-1."""
    for data, expected in photos:
        picture = img.upright(data)
        for name, encoded in (("AVIF", img.avif_photo(picture)), ("HEIC", img.heic_photo(picture))):
            response = classify(rel_server, encoded)
            result = expect_ok(rel_server, f"{name} photo named .jpg", response)
            assert result["input"]["format"] == ("HEIF" if name == "HEIC" else name), result
            assert same_top1(response, expected), (name, top(response)[:2], expected[:2])
    # A HEIC that is only its header: recognised as HEIC, then refused as corrupt, not a crash.
    response = classify(rel_server, img.heic_file())
    expect_error(rel_server, SECTION, "HEIC header without image data", response, {400}, "corrupt_image")


def test_archive_format_jpeg2000_is_classified_like_the_jpeg(rel_server, photos):
    """JPEG 2000 (photo archives, libraries, museums): the JP2 container and the bare codestream,
    named .jpg. A large file stops at a halved resolution level instead of decoding every pixel."""
    for data, expected in photos:
        picture = img.upright(data)
        response = classify(rel_server, img.jpeg2000_photo(picture))
        result = expect_ok(rel_server, "JPEG 2000 photo named .jpg", response)
        assert result["input"]["format"] == "JPEG2000" and same_top1(response, expected), (top(response)[:2], expected)
    data, expected = photos[0]
    big = img.jpeg2000_photo(img.upright(data), scale=5)
    response = classify(rel_server, big)
    result = expect_ok(rel_server, f"JPEG 2000 photo upscaled 5x ({len(big) // 1024} KB)", response)
    assert any("JPEG 2000 resolution level" in c for c in result["input"]["conversions"]), result
    assert same_top1(response, expected), (top(response)[:2], expected)
    response = classify(rel_server, big[: len(big) // 3])
    expect_error(rel_server, SECTION, "JPEG 2000 truncated at 33%", response, {400}, "corrupt_image")


def test_truncated_jpeg_is_corrupt_not_grey(rel_server, photos):
    data = photos[0][0]
    for fraction in (0.3, 0.6, 0.95):
        response = classify(rel_server, data[: int(len(data) * fraction)])
        expect_error(rel_server, SECTION, f"JPEG truncated at {int(fraction * 100)}%", response, {400}, "corrupt_image")


def test_png_declaring_ten_gigapixels(rel_server):
    data = img.png_declaring(100_000, 100_000)
    started = time.monotonic()
    response = classify(rel_server, data, "bomb.png", "image/png")
    expect_error(rel_server, SECTION, f"PNG declaring 100000x100000 in {len(data)} bytes", response, {413, 422},
                 "image_too_large", max_seconds=2, note=f"{(time.monotonic() - started) * 1000:.0f} ms, header check")


def test_image_between_one_and_two_times_pillows_limit(rel_server):
    side = 11_000  # 121 MP: 1.35x Pillow's MAX_IMAGE_PIXELS, where Pillow itself only warns
    assert Image.MAX_IMAGE_PIXELS < side * side < 2 * Image.MAX_IMAGE_PIXELS
    data = img.png_bilevel_real(side, side)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        Image.open(io.BytesIO(data))
    assert any(issubclass(w.category, Image.DecompressionBombWarning) for w in caught)  # Pillow: just a warning
    response = classify(rel_server, data, "big.png", "image/png")
    expect_error(rel_server, SECTION, f"real {side}x{side} PNG ({len(data) // 1024} KB), 1.35x Pillow's limit",
                 response, {413, 422}, "image_too_large", max_seconds=5)


# -- unusual but valid ---------------------------------------------------------------------------
@pytest.mark.parametrize("size", [(1, 65535), (65535, 1), (1, 1)])
def test_extreme_shapes(rel_server, size):
    data = img.one_by_one() if size == (1, 1) else img.strip(*size)
    response = classify(rel_server, data, "shape.png", "image/png")
    expect_ok(rel_server, f"{size[0]}x{size[1]} image", response, "200")


def test_sixteen_bit_greyscale_is_scaled_like_eight_bit(rel_server, photos):
    picture = img.upright(photos[0][0])
    sixteen, eight = img.grey16_png(picture), img.grey8_png(picture)
    assert img.png_bit_depth(sixteen) == 16
    answer16, answer8 = classify(rel_server, sixteen, "g16.png", "image/png"), classify(rel_server, eight, "g8.png", "image/png")
    result = expect_ok(rel_server, "16-bit greyscale PNG", answer16, "200, same classes as the 8-bit version")
    # v * 257 scaled back by 257 is exactly v: identical classes and scores (a /256 or clip bug is not).
    assert [t["class_index"] for t in top(answer16)] == [t["class_index"] for t in top(answer8)]
    assert [t["score"] for t in top(answer16)] == pytest.approx([t["score"] for t in top(answer8)], abs=1e-4)
    assert result["input"]["mode"].startswith("I")


@pytest.mark.parametrize("variant", ["Adobe-inverted CMYK JPEG", "plain CMYK JPEG (no Adobe marker)"])
def test_cmyk_colours_are_right(rel_server, photos, variant):
    make = img.cmyk_adobe_jpeg if variant.startswith("Adobe") else img.cmyk_plain_jpeg
    matches = []
    for data, expected in photos:
        response = classify(rel_server, make(img.upright(data)))
        matches.append(same_top1(response, expected))
    expect_ok(rel_server, variant, response, "200, top-1 = RGB original's",
              note=f"top-1 equal to the RGB original for {sum(matches)}/{len(matches)} photos")
    assert all(matches)


def test_cmyk_check_would_catch_inverted_colours(rel_server, photos):
    """Negative control: the same photos with their colours inverted do NOT keep their top-1, so the
    CMYK checks above can tell right colours from wrong ones."""
    differs = [not same_top1(classify(rel_server, img.cmyk_wrongly_inverted_jpeg(img.upright(d))), e) for d, e in photos]
    record(SECTION, "negative control: colour-inverted CMYK", "top-1 differs from the original",
           f"differs for {sum(differs)}/{len(differs)} photos")
    assert sum(differs) >= 2


@pytest.mark.parametrize("variant", ["RGBA PNG", "LA PNG", "palette + transparency PNG", "palette + transparency GIF"])
def test_transparency_is_deterministic(rel_server, photos, variant):
    make = {"RGBA PNG": img.rgba_png, "LA PNG": img.la_png, "palette + transparency PNG": img.palette_transparent_png,
            "palette + transparency GIF": img.palette_transparent_gif}[variant]
    data = make(img.upright(photos[1][0]))
    first, second = classify(rel_server, data, "t.png", "image/png"), classify(rel_server, data, "t.png", "image/png")
    expect_ok(rel_server, variant, first, "200, same answer twice")
    assert [t["class_index"] for t in top(first)] == [t["class_index"] for t in top(second)]
    assert [t["score"] for t in top(first)] == pytest.approx([t["score"] for t in top(second)], abs=1e-4)
    assert "transparency flattened onto white" in first.json()["results"][0]["input"]["conversions"]


@pytest.mark.parametrize("variant", ["mode 1 (bilevel) PNG", "mode L JPEG"])
def test_bilevel_and_greyscale(rel_server, photos, variant):
    make = img.mode1_png if variant.startswith("mode 1") else img.greyscale_jpeg
    expect_ok(rel_server, variant, classify(rel_server, make(img.upright(photos[2][0]))), "200")


def test_animated_gif_with_a_thousand_frames(rel_server, photos):
    animated, first_frame = img.animated_gif(img.upright(photos[0][0]), frames=1000)
    assert Image.open(io.BytesIO(animated)).n_frames == 1000
    started = time.monotonic()
    response = classify(rel_server, animated, "anim.gif", "image/gif")
    seconds = time.monotonic() - started
    result = expect_ok(rel_server, "animated GIF, 1,000 frames", response, "200, first frame, bounded time",
                       note=f"{seconds * 1000:.0f} ms; decode {response.json()['results'][0]['timing_ms']['decode']} ms")
    assert "animated image: first frame used" in result["input"]["conversions"]
    assert top(response) == top(classify(rel_server, first_frame, "first.gif", "image/gif"))
    assert seconds < 5


@pytest.mark.parametrize("orientation", [6, 8])
def test_exif_orientation(rel_server, photos, orientation):
    matches = []
    for data, expected in photos:
        response = classify(rel_server, img.exif_rotated_jpeg(img.upright(data), orientation))
        matches.append(same_top1(response, expected))
    result = expect_ok(rel_server, f"EXIF orientation {orientation}", response, "200, top-1 = upright photo's",
                       note=f"top-1 equal to the upright photo for {sum(matches)}/{len(matches)} photos")
    assert f"rotated per EXIF orientation {orientation}" in result["input"]["conversions"]
    assert all(matches)


def test_corrupt_exif(rel_server, photos):
    data, expected = photos[0]
    response = classify(rel_server, img.corrupt_exif_jpeg(data))
    expect_ok(rel_server, "corrupt EXIF block", response, "200, same top-1")
    assert same_top1(response, expected)


def test_jpeg_with_a_zip_appended(rel_server, photos):
    data, expected = photos[0]
    response = classify(rel_server, img.jpeg_with_zip(data), "holiday.jpg")
    expect_ok(rel_server, "JPEG with a ZIP appended", response, "200, classified, ZIP never echoed or stored")
    assert same_top1(response, expected)
    for secret in (img.SECRET_NAME.encode(), img.SECRET_TEXT, b"PK\x03\x04"):
        assert secret not in response.content and secret not in rel_server.log_bytes()
    assert rel_server.snapshot().tmp_files == rel_server.baseline.tmp_files


# -- hostile filenames ---------------------------------------------------------------------------
FILENAMES = {
    "filename ../../etc/passwd": (b"../../etc/passwd", lambda echoed: echoed == "../../etc/passwd"),
    "non-UTF-8 filename": (b"caf\xe9-\xff\xfe.jpg", lambda echoed: echoed == "caf\ufffd-\ufffd\ufffd.jpg"),
    "filename with NUL and ESC": (b"a\x00b\x1b[31mred\x07.jpg", lambda echoed: not re.search(r"[\x00-\x1f]", echoed)),
    "10 KB filename": (b"A" * 10_240 + b".jpg", lambda echoed: len(echoed) == 255 and echoed.endswith("\u2026")),
}


@pytest.mark.parametrize("case", list(FILENAMES))
def test_hostile_filenames_are_data(rel_server, photos, case):
    raw_name, check = FILENAMES[case]
    body, content_type = multipart([("file", raw_name, photos[0][0], [b"Content-Type: image/jpeg"])])
    response = raw_exchange(rel_server.port, head("POST", rel_server.port, headers={
        "Content-Type": content_type, "Content-Length": str(len(body))}), body)
    echoed = response.json()["results"][0]["filename"] if response.status == 200 else None
    record(SECTION, case, "200, name cleaned and echoed as text, never a path",
           f"{response.status}, echoed {echoed[:40] + ('...' if len(echoed) > 40 else '')!r}" if echoed else str(response.status))
    assert response.status == 200, response.body[:300]
    assert check(echoed), echoed
    # Never a path: nothing appeared in the server's TMPDIR, and its log has no raw control characters.
    assert rel_server.snapshot().tmp_files == rel_server.baseline.tmp_files
    log = rel_server.log_bytes()
    assert not re.search(rb"[\x00-\x08\x0b-\x1f\x7f]", log), "raw control characters in the server log"
    assert raw_name not in log or raw_name == b"../../etc/passwd"
    rel_server.assert_clean()
