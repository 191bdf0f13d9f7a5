"""Parity (c): the fp32 ONNX artifact of ResNet-18 gives torchvision's logits.

The official weights cannot be downloaded here, so the reference venv makes a random torchvision
ResNet-18 state_dict and ``torch.save``s it (like any torchvision user's file). The project venv
wraps it in a model bundle, exports it with ``imgcls.artifacts.export_fp32`` (which itself
verifies ONNX vs the project's PyTorch model to 1e-3), and the reference venv then compares ONNX
Runtime on that artifact with ``torchvision.models.resnet18`` holding the same weights.
"""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = [pytest.mark.parity, pytest.mark.slow]

MAX_LOGIT_DIFF = 1e-3


def test_onnx_artifact_matches_torchvision(run_ref, dev_dir, tmp_path, record_parity):
    from imgcls.artifacts import export_fp32, find_artifact, synthetic_verification_batch
    from imgcls.catalog import resolve_model
    from imgcls.catalog.bundles import write_bundle_config
    from imgcls.catalog.entries import CATALOG
    from imgcls.preprocess import decode_image, preprocess
    from imgcls.runtimes.torch_ref import TorchRuntime

    bundle = tmp_path / "parity-resnet18"
    bundle.mkdir()
    weights = bundle / "weights.pth"
    made = run_ref("ref_onnx.py", "weights", dev_dir, weights)
    write_bundle_config(bundle, {
        "name": "parity-resnet18",
        "architecture": "resnet18",
        "class_names": [f"class {i}" for i in range(1000)],
        "preprocessing": CATALOG["resnet18"].preprocessing.to_dict(),
        "weights": {"file": weights.name, "sha256": made["sha256"]},
    })
    spec = resolve_model(str(bundle))
    assert spec.architecture == "resnet18" and spec.num_classes == 1000

    pp = spec.preprocessing
    photos = sorted(dev_dir.glob("*.JPEG"))[:16]
    real = np.stack([preprocess(decode_image(p.read_bytes()).image, pp) for p in photos])
    inputs = np.concatenate([real, synthetic_verification_batch(spec, count=4, seed=5)]).astype(np.float32)

    manifest = export_fp32(spec, out_dir=bundle / "onnx", verify_images=inputs)
    onnx_path, found = find_artifact(spec, "fp32")  # the bundle's artifact is verified and servable
    assert onnx_path == bundle / "onnx" / "fp32.onnx" and found["sha256"] == manifest["sha256"]

    project_logits = TorchRuntime(spec, threads=2).run(inputs)
    np.save(tmp_path / "inputs.npy", inputs)
    np.save(tmp_path / "project_logits.npy", project_logits)
    result = run_ref("ref_onnx.py", "check", weights, onnx_path, tmp_path / "inputs.npy",
                     tmp_path / "project_logits.npy")
    verification = manifest["verification"]
    record_parity("resnet18_onnx_fp32", {
        **result,
        "onnx_vs_project_torch_max_abs_logit_diff": verification["max_abs_logit_diff"],
        "onnx_vs_project_torch_top1_identical": verification["top1_identical"],
        "onnx_bytes": manifest["bytes"],
        "export_seconds": manifest.get("export_seconds"),
    })

    assert verification["passed"] and verification["max_abs_logit_diff"] <= MAX_LOGIT_DIFF
    assert result["inputs"] == len(inputs)
    assert result["max_abs_logit"] > 1.0, "logits too small for the comparison to mean anything"
    assert result["distinct_top1_classes"] > 1, "a degenerate net predicting one class proves nothing"
    for key in ("onnx_vs_torchvision_max_abs_logit_diff", "onnx_batch1_vs_torchvision_max_abs_logit_diff",
                "project_torch_vs_torchvision_max_abs_logit_diff"):
        assert result[key] <= MAX_LOGIT_DIFF, f"{key} = {result[key]:.3e} > {MAX_LOGIT_DIFF:.0e}"
    assert result["onnx_top1_identical_to_torchvision"]
