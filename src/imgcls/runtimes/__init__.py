"""Runtimes behind one small interface: ``run(batch) -> logits`` and ``close()``.

ONNX Runtime serves; PyTorch is the reference (parity, export, training). Each imports its
library lazily, so the serving path never imports torch.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

__all__ = ["Runtime", "run_in_chunks", "default_threads", "cpu_name"]


class Runtime(Protocol):
    name: str

    def run(self, batch: np.ndarray) -> np.ndarray:
        """float32 NCHW batch -> float32 logits (N, num_classes)."""

    def computes_on_caller(self, solo: bool = False) -> bool:
        """Whether a ``run`` does all its work on the calling thread (the server then reads the
        model's CPU cost per call from that thread's CPU clock)."""

    def close(self) -> None: ...


def run_in_chunks(runtime: Runtime, batch: np.ndarray, chunk: int = 16) -> np.ndarray:
    """Logits for a batch of any length, ``chunk`` images per call (verification sets, levers):
    one call's activations stay small whatever the number of photos."""
    return np.concatenate([runtime.run(batch[i : i + chunk]) for i in range(0, len(batch), chunk)])


def default_threads() -> int:
    import os

    env = os.environ.get("IMGCLS_THREADS")
    if env:
        return max(1, int(env))
    return max(1, min(len(os.sched_getaffinity(0)), 8))


def cpu_name() -> str:
    """The CPU's model name (recorded with benchmark results and OpenVINO verifications)."""
    import platform
    from pathlib import Path

    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"
