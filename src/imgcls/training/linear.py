"""Linear mode: a softmax head on frozen, cached features, fitted by full-batch L-BFGS.

Why this recipe: the problem is convex (L2-regularised multinomial logistic regression), so
L-BFGS reaches the optimum in tens of iterations over features that fit in memory — seconds
even for thousands of images — and, with no mini-batch sampling, the result depends only on the
data (deterministic up to floating point, which we pin with a fixed thread count). Features are
standardised first so one weight-decay value suits both backbones, then the scaling is folded
back into the head so the saved network takes raw features like any other.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from imgcls.training.events import EpochRecord, Reporter, better

__all__ = ["HeadFit", "fit_linear_head", "LINEAR_DEFAULTS"]

# epochs = L-BFGS iterations (it usually converges well before); lr = L-BFGS step scale
# (1.0 with a line search is the textbook choice); weight decay on standardised features.
LINEAR_DEFAULTS = {"epochs": 100, "lr": 1.0, "weight_decay": 1e-2}


@dataclass
class HeadFit:
    """The head of the best epoch, in raw-feature space, and how the run went."""

    weight: np.ndarray  # (classes, features) float32
    bias: np.ndarray  # (classes,) float32
    history: list[EpochRecord] = field(default_factory=list)
    best_epoch: int = 0
    interrupted: bool = False
    converged: bool = False


def fit_linear_head(
    train_x: np.ndarray,
    train_y: np.ndarray,
    val_x: np.ndarray,
    val_y: np.ndarray,
    num_classes: int,
    *,
    epochs: int,
    lr: float,
    weight_decay: float,
    reporter: Reporter,
) -> HeadFit:
    """Fit ``logits = W x + b`` by L-BFGS; keep the epoch with the best validation score.

    Ctrl-C stops after the current iteration and returns the best head so far
    (``interrupted=True``); if no epoch finished, ``best_epoch`` is 0 and the head is all zeros.
    """
    import torch
    from torch.nn import functional as F

    x = torch.from_numpy(np.asarray(train_x, np.float64))
    mean = x.mean(0)
    std = x.std(0, unbiased=False).clamp_min(1e-6)  # dead (always-zero) features stay harmless
    xs = (x - mean) / std
    vs = (torch.from_numpy(np.asarray(val_x, np.float64)) - mean) / std
    y = torch.from_numpy(np.asarray(train_y, np.int64))
    vy = torch.from_numpy(np.asarray(val_y, np.int64))

    # Zero start: the objective is strictly convex, so the start only changes the path, and
    # zeros make that path independent of the random seed.
    w = torch.zeros(num_classes, xs.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros(num_classes, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS(
        [w, b],
        lr=lr,
        max_iter=1,
        history_size=20,
        line_search_fn="strong_wolfe",
        tolerance_grad=1e-10,
        tolerance_change=1e-14,
    )

    def objective() -> torch.Tensor:
        return F.cross_entropy(xs @ w.T + b, y) + 0.5 * weight_decay * (w * w).sum()

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = objective()
        loss.backward()
        return loss

    fit = HeadFit(weight=np.zeros((num_classes, xs.shape[1]), np.float32), bias=np.zeros(num_classes, np.float32))
    best: EpochRecord | None = None
    best_state = (w.detach().clone(), b.detach().clone())
    previous = float("inf")
    reporter.stage("Training the linear head", total=epochs)
    for epoch in range(1, epochs + 1):
        try:
            started = time.perf_counter()
            optimizer.step(closure)
            with torch.no_grad():
                logits, val_logits = xs @ w.T + b, vs @ w.T + b
                value = float(objective())
                record = EpochRecord(
                    epoch=epoch,
                    train_loss=float(F.cross_entropy(logits, y)),
                    train_acc=float((logits.argmax(1) == y).double().mean()),
                    val_loss=float(F.cross_entropy(val_logits, vy)) if len(vy) else float("nan"),
                    val_acc=float((val_logits.argmax(1) == vy).double().mean()) if len(vy) else float("nan"),
                    seconds=time.perf_counter() - started,
                )
            if better(record, best):
                record.best, best = True, record
                best_state = (w.detach().clone(), b.detach().clone())
            fit.history.append(record)
            reporter.epoch(record, epochs)
            reporter.advance()
        except KeyboardInterrupt:
            fit.interrupted = True
            break
        # Converged: the objective no longer moves (relative 1e-9); further iterations only
        # shuffle rounding errors.
        if abs(previous - value) <= 1e-9 * max(1.0, abs(value)):
            fit.converged = True
            break
        previous = value

    if best is not None:
        fit.best_epoch = best.epoch
        w_best, b_best = best_state
        # Fold the standardisation into the head: W (x - m) / s + b = (W / s) x + (b - (W / s) m).
        w_raw = w_best / std
        fit.weight = w_raw.numpy().astype(np.float32)
        fit.bias = (b_best - w_raw @ mean).numpy().astype(np.float32)
    return fit
