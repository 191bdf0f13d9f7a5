"""Parity (b): the project's preprocessing equals torchvision's IMAGENET1K_V1 preset on every dev photo.

Runs ``ref_scripts/ref_preprocess.py`` in the reference venv, where ``imgcls.preprocess`` runs on
the same Pillow/numpy versions as the project venv (scripts/make-ref-venv.sh pins them), against
``torchvision.models.ResNet18_Weights.IMAGENET1K_V1.transforms()`` itself.
"""

from __future__ import annotations

import csv

import pytest

pytestmark = pytest.mark.parity

MAX_ABS_DIFF = 1e-6


def test_preprocessing_matches_torchvision_preset_on_all_dev_photos(run_ref, dev_dir, record_parity):
    result = run_ref("ref_preprocess.py", dev_dir)
    record_parity("resnet18_preprocessing", result)

    with (dev_dir / "labels.csv").open(newline="") as handle:
        expected_photos = sum(1 for _ in csv.DictReader(handle))
    assert result["photos"] == expected_photos, "every shared dev photo must be compared"
    assert "crop_size=[224]" in result["preset"] and "resize_size=[256]" in result["preset"]
    assert result["max_abs_diff"] <= MAX_ABS_DIFF, (
        f"max abs diff {result['max_abs_diff']:.3e} on {result['worst_photo']}; "
        f"{result['photos_over_1e-6']} photos over {MAX_ABS_DIFF:.0e}"
    )
    for size, diff in result["synthetic_max_abs_diff"].items():
        assert diff <= MAX_ABS_DIFF, f"synthetic {size}: max abs diff {diff:.3e}"
    # Our decoder gives the same pixels as Image.open(...).convert("RGB") (greyscale included);
    # EXIF-rotated photos are the intended exception and are compared upright.
    assert result["decode_identical_to_plain_pillow"] == result["photos"]
