"""Parity (c): the imgcls fp32 ONNX artifact of ResNet-18 vs torchvision with the same weights.

Run by .venv-ref/bin/python in two steps around the project-venv export:

  ref_onnx.py SRC_DIR weights DEV_DIR OUT_PTH OUT_JSON
      make a random torchvision ResNet-18 state_dict (the official weights are not downloadable
      here) and torch.save it, as torchvision users' files are made;
  ref_onnx.py SRC_DIR check WEIGHTS ONNX INPUTS_NPY PROJECT_LOGITS_NPY OUT_JSON
      load those weights into torchvision.models.resnet18 (strict), run the inputs through it and
      through ONNX Runtime on the artifact, and compare both with the project's PyTorch logits.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

from common import dev_photos, randomize_resnet, setup, write_result


def make_weights(src: str, dev_dir: str, out_pth: str, out_json: str) -> None:
    setup(src)
    import numpy as np
    import torch
    import torchvision

    from imgcls.catalog.entries import CATALOG
    from imgcls.preprocess import decode_image, preprocess

    pp = CATALOG["resnet18"].preprocessing
    photos = dev_photos(dev_dir)[-16:]  # not the ones the check uses first
    calibration = torch.from_numpy(np.stack([preprocess(decode_image(p.read_bytes()).image, pp) for p in photos]))
    torch.manual_seed(11)
    model = torchvision.models.resnet18(weights=None)
    randomize_resnet(model, calibration, seed=12)
    torch.save(model.state_dict(), out_pth)
    digest = hashlib.sha256(Path(out_pth).read_bytes()).hexdigest()
    write_result(out_json, {"weights": out_pth, "sha256": digest, "bytes": Path(out_pth).stat().st_size})


def check(src: str, weights: str, onnx_path: str, inputs_npy: str, project_logits_npy: str, out_json: str) -> None:
    setup(src)
    import numpy as np
    import onnxruntime as ort
    import torch
    import torchvision

    inputs = np.load(inputs_npy)
    project = np.load(project_logits_npy)
    model = torchvision.models.resnet18(weights=None)
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True), strict=True)
    model.eval()
    with torch.no_grad():
        reference = model(torch.from_numpy(inputs)).numpy()

    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(onnx_path, options, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    batched = session.run(None, {input_name: inputs})[0]
    single = np.concatenate([session.run(None, {input_name: inputs[i : i + 1]})[0] for i in range(len(inputs))])

    write_result(out_json, {
        "inputs": int(len(inputs)),
        "ort": ort.__version__,
        "onnx_vs_torchvision_max_abs_logit_diff": float(np.abs(batched - reference).max()),
        "onnx_batch1_vs_torchvision_max_abs_logit_diff": float(np.abs(single - reference).max()),
        "onnx_top1_identical_to_torchvision": bool((batched.argmax(1) == reference.argmax(1)).all()),
        "project_torch_vs_torchvision_max_abs_logit_diff": float(np.abs(project - reference).max()),
        "max_abs_logit": float(np.abs(reference).max()),
        "distinct_top1_classes": int(len(set(reference.argmax(1).tolist()))),
    })


if __name__ == "__main__":
    src, command, args = sys.argv[1], sys.argv[2], sys.argv[3:]
    if command == "weights":
        make_weights(src, *args)
    elif command == "check":
        check(src, *args)
    else:
        raise SystemExit(f"unknown command {command!r}; use 'weights' or 'check'")
