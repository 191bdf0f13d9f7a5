"""Small statistics helpers shared by the benchmark sections."""

from __future__ import annotations

import math
import statistics
from typing import Sequence

__all__ = ["percentile", "median"]


def percentile(values: Sequence[float], p: float) -> float:
    """Linear-interpolated percentile (``numpy.percentile``'s default); 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100.0
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else 0.0
