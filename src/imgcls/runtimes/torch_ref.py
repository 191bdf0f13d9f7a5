"""PyTorch reference runtime: builds the network from a ModelSpec and its verified weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["load_torch_model", "TorchRuntime"]


def load_torch_model(spec, weights: Path | None = None):
    """Build ``spec``'s network and load its checksum-verified weights with ``strict=True``."""
    try:
        import torch
    except ImportError as exc:
        raise ImportError(
            "PyTorch is needed to export, quantise or train (not to serve): pip install 'imgcls[export]'"
        ) from exc
    from imgcls.architectures import build_network

    path = weights or spec.weights_path()
    network = build_network(spec.architecture, spec.num_classes)
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    network.load_state_dict(state, strict=True)
    return network.eval()


class TorchRuntime:
    name = "torch"

    def __init__(self, spec, weights: Path | None = None, threads: int | None = None):
        import torch

        if threads:
            torch.set_num_threads(threads)
        self._torch = torch
        self.model = load_torch_model(spec, weights)

    def run(self, batch: np.ndarray) -> np.ndarray:
        with self._torch.inference_mode():
            return self.model(self._torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))).numpy()

    def computes_on_caller(self, solo: bool = False) -> bool:
        return False  # torch's intra-op pool does the work

    def close(self) -> None:
        self.model = None
