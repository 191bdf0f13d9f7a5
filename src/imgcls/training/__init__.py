"""Fine-tuning on the user's own classes: an ImageFolder tree in, a self-describing bundle out.

``train(TrainSettings(data_dir, out, base=..., mode="linear"|"full"))`` checks the data before
any training, trains deterministically for a seed, and writes a bundle folder (config.json,
weights.pth, report/, onnx/) that every command accepts wherever a model name goes. Needs the
``train`` extra (torch, matplotlib); serving a bundle does not.
"""

from __future__ import annotations

from imgcls.training.dataset import Dataset, ImageItem, load_zh_names, scan_dataset, stratified_split
from imgcls.training.events import EpochRecord, NullReporter, Reporter
from imgcls.training.trainer import MODES, TrainResult, TrainSettings, train

__all__ = [
    "train",
    "TrainSettings",
    "TrainResult",
    "MODES",
    "scan_dataset",
    "stratified_split",
    "load_zh_names",
    "Dataset",
    "ImageItem",
    "EpochRecord",
    "Reporter",
    "NullReporter",
]
