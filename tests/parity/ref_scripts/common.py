"""Helpers shared by the scripts that run inside the reference venv (.venv-ref, real torchvision).

These scripts are executed by ``.venv-ref/bin/python`` (never imported by pytest): the project's
``src/`` is put on ``sys.path`` so the torch-only / numpy+Pillow-only parts of imgcls can be used
without installing the package there. Results go to a JSON file named on the command line, so
library warnings on stdout/stderr never corrupt them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def setup(src: str) -> None:
    """Make ``imgcls`` importable from the checkout and keep torch to the machine's 2 cores."""
    sys.path.insert(0, str(Path(src).resolve()))
    import torch

    torch.set_num_threads(2)


def write_result(path: str, result: dict) -> None:
    import torch
    import torchvision

    result = {**result, "ref_torch": torch.__version__, "ref_torchvision": torchvision.__version__}
    Path(path).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


def dev_photos(dev_dir: str) -> list[Path]:
    return sorted(p for p in Path(dev_dir).iterdir() if p.suffix.lower() in (".jpeg", ".jpg", ".png"))


def randomize_resnet(model, calibration, seed: int) -> None:
    """Give every parameter AND buffer a distinct random value, with realistic activation scales.

    Default initialisation leaves BatchNorm at weight=1, bias=0, mean=0, var=1, which would hide a
    swapped or misnamed BN tensor. Running statistics are measured on ``calibration`` (train mode,
    cumulative average) so logits keep a real-model magnitude, then the affine terms are jittered.
    """
    import torch
    from torch import nn

    generator = torch.Generator().manual_seed(seed)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative moving average over the calibration passes
    model.train()
    with torch.no_grad():
        for start in range(0, len(calibration), 8):
            model(calibration[start : start + 8])
        for bn in bns:
            bn.weight.copy_(1 + 0.25 * torch.randn(bn.weight.shape, generator=generator))
            bn.bias.copy_(0.1 * torch.randn(bn.bias.shape, generator=generator))
            bn.momentum = 0.1
        fc = model.fc
        fc.weight.copy_(0.05 * torch.randn(fc.weight.shape, generator=generator))
        fc.bias.copy_(0.5 * torch.randn(fc.bias.shape, generator=generator))
    model.eval()
