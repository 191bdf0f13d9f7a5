"""Full mode: fine-tune every layer with standard augmentation (PIL/numpy; no torchvision).

Recipe, and why:
* RandomResizedCrop (area 25-100%, aspect 3/4-4/3) + horizontal flip on the training images,
  the evaluation transform (the serving preprocessing, exactly) on validation images.
* AdamW; the new head at ``lr``, the pretrained backbone at ``lr * 0.1`` (it is already good and
  must not be wrecked by the random head's first gradients); cosine decay to zero.
* BatchNorm layers keep their ImageNet statistics (eval mode while training): with the small
  batches a CPU affords, per-batch statistics are noisy and the running averages drift away
  from what the backbone was trained with. Their scale/shift parameters still train.
* Every random choice comes from one seeded numpy Generator (data order, crops, flips) and the
  seeded torch generator (dropout, head init), with deterministic kernels and fixed threads.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from imgcls.catalog.entries import Preprocessing
from imgcls.training.events import EpochRecord, Reporter, better
from imgcls.training.network import load_eval_array

__all__ = ["FULL_DEFAULTS", "FullFit", "fine_tune", "random_resized_crop", "to_array"]

FULL_DEFAULTS = {"epochs": 10, "lr": 1e-3, "weight_decay": 1e-4}
BACKBONE_LR_SCALE = 0.1
CROP_SCALE = (0.25, 1.0)
CROP_RATIO = (3 / 4, 4 / 3)
MEMORY_BUDGET = 1 << 30  # keep decoded images / validation tensors in memory up to 1 GiB each


@dataclass
class FullFit:
    state: dict | None  # the best epoch's state_dict (None if no epoch finished)
    val_logits: np.ndarray | None
    history: list[EpochRecord] = field(default_factory=list)
    best_epoch: int = 0
    interrupted: bool = False


def random_resized_crop(image: Image.Image, size: int, rng: np.random.Generator) -> Image.Image:
    """torchvision's RandomResizedCrop: a random area/aspect box, resized to ``size`` (bilinear)."""
    width, height = image.size
    area = width * height
    log_ratio = (math.log(CROP_RATIO[0]), math.log(CROP_RATIO[1]))
    for _ in range(10):
        target = area * rng.uniform(*CROP_SCALE)
        aspect = math.exp(rng.uniform(*log_ratio))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            left = int(rng.integers(0, width - w + 1))
            top = int(rng.integers(0, height - h + 1))
            return image.resize((size, size), Image.BILINEAR, box=(left, top, left + w, top + h))
    # Fallback (extreme aspect ratios): the largest centred box within the allowed ratios.
    ratio = width / height
    if ratio < CROP_RATIO[0]:
        w, h = width, int(round(width / CROP_RATIO[0]))
    elif ratio > CROP_RATIO[1]:
        w, h = int(round(height * CROP_RATIO[1])), height
    else:
        w, h = width, height
    left, top = (width - w) // 2, (height - h) // 2
    return image.resize((size, size), Image.BILINEAR, box=(left, top, left + w, top + h))


def to_array(image: Image.Image, pp: Preprocessing) -> np.ndarray:
    """An already-cropped RGB image -> normalised float32 CHW (the same arithmetic as serving)."""
    arr = np.asarray(image, dtype=np.uint8).astype(np.float32) / np.float32(255.0)
    arr = (arr - np.asarray(pp.mean, np.float32)) / np.asarray(pp.std, np.float32)
    return np.ascontiguousarray(arr.transpose(2, 0, 1))


class _TrainImages:
    """Decoded training images, shrunk to the resize size (plenty for crops), cached in memory."""

    def __init__(self, paths: Sequence[Path], pp: Preprocessing, draft: bool = True):
        self.paths, self.pp = list(paths), pp
        self.draft_size = pp.resize if draft else None  # a 12-MP JPEG: ~4x less decode work
        self.cache: dict[int, Image.Image] = {}
        self.used = 0

    def get(self, index: int) -> Image.Image:
        if index in self.cache:
            return self.cache[index]
        from imgcls.preprocess import decode_image

        image = decode_image(self.paths[index].read_bytes(), draft_size=self.draft_size).image
        short = min(image.size)
        if short > self.pp.resize:
            scale = self.pp.resize / short
            image = image.resize(
                (max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.BILINEAR
            )
        size = image.width * image.height * 3
        if self.used + size <= MEMORY_BUDGET:
            self.cache[index] = image
            self.used += size
        return image


def _freeze_batchnorm(network) -> None:
    from torch import nn

    for module in network.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()


def fine_tune(
    network,
    train_paths: Sequence[Path],
    train_labels: Sequence[int],
    val_paths: Sequence[Path],
    val_labels: Sequence[int],
    pp: Preprocessing,
    *,
    epochs: int,
    lr: float,
    weight_decay: float,
    batch_size: int,
    seed: int,
    reporter: Reporter,
    draft: bool = True,
) -> FullFit:
    """Train all layers of ``network`` (its head already sized for the classes).

    ``draft``: decode large JPEGs at a reduced scale, as the server does by default.
    Ctrl-C stops at once and returns the best epoch so far (``interrupted=True``).
    """
    import torch
    from torch.nn import functional as F

    from imgcls.training.network import classifier_name

    rng = np.random.default_rng(seed)
    head_prefix = classifier_name(network) + "."
    head = [p for n, p in network.named_parameters() if n.startswith(head_prefix)]
    backbone = [p for n, p in network.named_parameters() if not n.startswith(head_prefix)]
    optimizer = torch.optim.AdamW(
        [{"params": backbone, "lr": lr * BACKBONE_LR_SCALE}, {"params": head, "lr": lr}], weight_decay=weight_decay
    )
    steps_per_epoch = math.ceil(len(train_paths) / batch_size)
    total_steps = max(1, epochs * steps_per_epoch)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * step / total_steps))
    )

    images = _TrainImages(train_paths, pp, draft)
    labels = np.asarray(train_labels, np.int64)
    val_y = torch.from_numpy(np.asarray(val_labels, np.int64))
    keep_val = len(val_paths) * 3 * pp.crop * pp.crop * 4 <= MEMORY_BUDGET
    cached_val: list[np.ndarray] | None = None

    def val_logits() -> torch.Tensor:
        """Validation logits with the serving preprocessing (tensors kept after the first epoch)."""
        nonlocal cached_val
        network.eval()
        batches = (
            cached_val
            if cached_val is not None
            else (
                np.stack([load_eval_array(p, pp, draft) for p in val_paths[s : s + batch_size]])
                for s in range(0, len(val_paths), batch_size)
            )
        )
        seen_batches, outputs = [], []
        with torch.inference_mode():
            for batch in batches:
                seen_batches.append(batch)
                outputs.append(network(torch.from_numpy(batch)))
        if keep_val:
            cached_val = seen_batches
        return torch.cat(outputs)

    fit = FullFit(state=None, val_logits=None)
    best: EpochRecord | None = None
    try:
        for epoch in range(1, epochs + 1):
            reporter.stage(f"Epoch {epoch}/{epochs}", total=len(train_paths))
            started = time.perf_counter()
            order = rng.permutation(len(train_paths))
            seen = correct = 0
            loss_sum = 0.0
            for start in range(0, len(order), batch_size):
                chunk = order[start : start + batch_size]
                crops = [random_resized_crop(images.get(int(i)), pp.crop, rng) for i in chunk]
                flips = rng.random(len(chunk)) < 0.5
                batch = np.stack(
                    [to_array(c.transpose(Image.FLIP_LEFT_RIGHT) if f else c, pp) for c, f in zip(crops, flips)]
                )
                target = torch.from_numpy(labels[chunk])
                network.train()
                _freeze_batchnorm(network)
                logits = network(torch.from_numpy(batch))
                loss = F.cross_entropy(logits, target)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                seen += len(chunk)
                loss_sum += loss.item() * len(chunk)
                correct += int((logits.detach().argmax(1) == target).sum())
                reporter.advance(len(chunk))
            logits = val_logits()
            record = EpochRecord(
                epoch=epoch,
                train_loss=loss_sum / seen,
                train_acc=correct / seen,
                val_loss=float(F.cross_entropy(logits, val_y)),
                val_acc=float((logits.argmax(1) == val_y).double().mean()),
                seconds=time.perf_counter() - started,
            )
            if better(record, best):
                record.best, best = True, record
                fit.state = {k: v.detach().clone() for k, v in network.state_dict().items()}
                fit.val_logits = logits.numpy().copy()
                fit.best_epoch = epoch
            fit.history.append(record)
            reporter.epoch(record, epochs)
    except KeyboardInterrupt:
        fit.interrupted = True
    network.eval()
    return fit
