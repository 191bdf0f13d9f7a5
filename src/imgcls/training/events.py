"""What a training run tells its caller: stages with progress, one record per epoch, messages.

The training code never prints; the CLI renders these events with Rich, tests collect them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Protocol

__all__ = ["EpochRecord", "Reporter", "NullReporter", "better"]


@dataclass
class EpochRecord:
    """Losses are mean cross-entropy; accuracies are fractions in [0, 1]."""

    epoch: int
    train_loss: float
    train_acc: float
    val_loss: float
    val_acc: float
    seconds: float
    best: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


def better(record: EpochRecord, best: EpochRecord | None) -> bool:
    """Best = highest validation accuracy; ties go to the lower validation loss.

    With few validation images accuracy moves in coarse steps, so the loss breaks ties (an epoch
    that is equally right but more confident generalises better).
    """
    if best is None:
        return True
    return (record.val_acc, -record.val_loss) > (best.val_acc, -best.val_loss)


class Reporter(Protocol):
    def stage(self, name: str, total: int | None = None) -> None:
        """A new stage starts (checking images, extracting features, training, exporting...)."""

    def advance(self, amount: int = 1) -> None:
        """Progress within the current stage."""

    def epoch(self, record: EpochRecord, total_epochs: int) -> None:
        """An epoch finished."""

    def message(self, text: str, level: str = "info") -> None:
        """Something the user should read (level: info, warning)."""

    def done(self) -> None:
        """The run is over (close any live display)."""


class NullReporter:
    """Collects epochs and messages; shows nothing (tests, Python API)."""

    def __init__(self) -> None:
        self.epochs: list[EpochRecord] = []
        self.messages: list[tuple[str, str]] = []
        self.stages: list[str] = []

    def stage(self, name: str, total: int | None = None) -> None:
        self.stages.append(name)

    def advance(self, amount: int = 1) -> None:
        pass

    def epoch(self, record: EpochRecord, total_epochs: int) -> None:
        self.epochs.append(record)

    def message(self, text: str, level: str = "info") -> None:
        self.messages.append((level, text))

    def done(self) -> None:
        pass
