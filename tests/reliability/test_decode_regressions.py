"""In-process regression tests for the bugs the reliability tier found (fast, no server):

* CMYK JPEGs without an Adobe marker decoded colour-inverted (preprocess._fix_plain_cmyk);
* Pillow only *warns* between 1x and 2x its pixel limit, so a caller that raises max_pixels above
  it must still get an error there, not a 100-megapixel decode;
* an artifact manifest that is valid JSON of the wrong shape crashed `imgcls serve` with a
  traceback (artifacts.read_manifest).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

import rel_images as img
from imgcls.errors import ImageTooLargeError
from imgcls.preprocess import decode_image


@pytest.fixture(scope="module")
def picture(dev_photos) -> Image.Image:
    return img.upright(dev_photos[0].read_bytes())


def _colour_error(decoded: Image.Image, original: Image.Image) -> float:
    return float(np.abs(np.asarray(decoded, dtype=np.float32) - np.asarray(original, dtype=np.float32)).mean())


@pytest.mark.parametrize("make", [img.cmyk_adobe_jpeg, img.cmyk_plain_jpeg], ids=["adobe", "plain"])
def test_cmyk_jpegs_keep_their_colours(picture, make):
    decoded = decode_image(make(picture))
    assert _colour_error(decoded.image, picture) < 4.0  # JPEG loss only
    assert "converted from CMYK" in decoded.report.conversions


def test_cmyk_without_marker_is_not_inverted_twice(picture):
    # Inverted values without the marker are a colour negative, and must decode as one.
    decoded = decode_image(img.cmyk_wrongly_inverted_jpeg(picture))
    assert _colour_error(decoded.image, picture) > 50


def test_pillows_warning_band_is_an_error_even_with_a_raised_cap():
    side = 11_000
    data = img.png_bilevel_real(side, side)
    with pytest.raises(ImageTooLargeError):
        decode_image(data, max_pixels=10**9)


@pytest.mark.parametrize("content", ["[]", "{}", '"fp32.onnx"', json.dumps({"file": 3}), "{not json"])
def test_wrong_shape_manifest_reads_as_absent(tmp_path, content):
    from imgcls.artifacts import read_manifest

    (tmp_path / "fp32.json").write_text(content)
    assert read_manifest(tmp_path, "fp32") is None


def test_manifest_file_must_be_a_bare_name(tmp_path, lite0_fp32):
    from imgcls.artifacts import read_manifest

    _, manifest = lite0_fp32
    for bad in ("../../etc/passwd", "/etc/passwd", "sub/fp32.onnx", ".."):
        (tmp_path / "fp32.json").write_text(json.dumps({**manifest, "file": bad}))
        assert read_manifest(tmp_path, "fp32") is None, bad
    (tmp_path / "fp32.json").write_text(json.dumps(manifest))
    assert read_manifest(tmp_path, "fp32") == manifest
