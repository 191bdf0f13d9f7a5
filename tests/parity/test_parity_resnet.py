"""Parity (a): the project's ResNet-18 is torchvision's ResNet-18 (names, shapes, logits).

Runs ``ref_scripts/ref_resnet.py`` in the reference venv: a random torchvision state_dict (every
BatchNorm tensor randomised too) loads into ``imgcls.architectures.resnet.resnet18`` with
``strict=True`` and both give the same logits on real dev photos, random inputs and a non-square
input. The reverse load (ours -> torchvision) is checked as well.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.parity

MAX_LOGIT_DIFF = 1e-5


def test_resnet18_matches_torchvision_with_same_random_weights(run_ref, dev_dir, record_parity):
    result = run_ref("ref_resnet.py", dev_dir)
    record_parity("resnet18_architecture", result)

    assert result["keys_identical"], (result["only_in_ours"], result["only_in_torchvision"])
    assert result["shapes_identical"]
    assert result["strict_load"] == {"missing": [], "unexpected": []}
    assert result["num_keys"] == 122  # 62 parameters + 3 buffers for each of the 20 BatchNorms
    assert result["photos"] >= 16
    for inputs, diff in result["max_abs_logit_diff"].items():
        assert diff <= MAX_LOGIT_DIFF, f"{inputs}: max |logit diff| {diff:.3e} > {MAX_LOGIT_DIFF:.0e}"
        # The logits must be of a real model's size, or a tiny diff would prove nothing.
        assert result["max_abs_logit"][inputs] > 1.0, result["max_abs_logit"]
    assert all(result["top1_identical"].values()), result["top1_identical"]
    assert result["max_abs_feature_diff"] <= MAX_LOGIT_DIFF
    assert result["reverse_load_max_abs_logit_diff"] <= MAX_LOGIT_DIFF
