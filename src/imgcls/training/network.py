"""The network being trained: a catalogue backbone with a new head, plus frozen-backbone features.

Features are what the linear mode trains on. They are computed once per image and cached on disk
keyed by (image content hash, base weights hash, preprocessing), so a second run on the same
photos — another seed, another learning rate, one class added — extracts only what is new.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from imgcls.catalog import ModelSpec
from imgcls.catalog.entries import Preprocessing

__all__ = [
    "build_with_new_head",
    "classifier_name",
    "load_eval_array",
    "FeatureCache",
    "extract_features",
    "deterministic_torch",
]

FEATURE_CACHE_VERSION = "f2"  # bump when the feature definition changes (f2: JPEG draft decoding)


@contextmanager
def deterministic_torch(seed: int, threads: int) -> Iterator[None]:
    """Seed torch, force deterministic kernels and a fixed thread count; restore them afterwards.

    A fixed thread count matters on CPU: reductions are split per thread, so the same seed on a
    different number of threads can differ in the last bits (and then in a chosen epoch).
    """
    import torch

    previous = (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled())
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous[0])
        torch.use_deterministic_algorithms(previous[1])


def classifier_name(network) -> str:
    """Attribute path of the network's final Linear (``fc`` for ResNet, ``_fc`` for Lite0)."""
    target = network.classifier
    for name, module in network.named_modules():
        if module is target:
            return name
    raise ValueError("the network's classifier is not one of its modules")


def build_with_new_head(base: ModelSpec, num_classes: int):
    """The base network with its ImageNet weights and a freshly initialised ``num_classes`` head.

    Every backbone tensor must load (strict apart from the head), so a weights/architecture
    mismatch fails here rather than training on random features.
    """
    import torch

    from imgcls.architectures import build_network

    network = build_network(base.architecture, num_classes)
    head = classifier_name(network)
    state = torch.load(base.weights_path(), map_location="cpu", weights_only=True)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    backbone = {k: v for k, v in state.items() if not k.startswith(head + ".")}
    missing, unexpected = network.load_state_dict(backbone, strict=False)
    if unexpected or any(not k.startswith(head + ".") for k in missing):
        raise ValueError(f"base weights do not fit {base.architecture}: missing {missing}, unexpected {unexpected}")
    return network.eval()


def load_eval_array(path: Path, pp: Preprocessing, draft: bool = True) -> np.ndarray:
    """Decode + preprocess exactly as serving does (``imgcls.preprocess.model_input``)."""
    from imgcls.preprocess import model_input

    return model_input(Path(path).read_bytes(), pp, draft)


class FeatureCache:
    """Per-image feature vectors as ``.npy`` files under one folder per (base weights, preprocessing)."""

    def __init__(self, root: Path, base: ModelSpec, pp: Preprocessing, draft: bool = True):
        decoding = "draft" if draft else "full"
        key = f"{base.name}-{base.weights_sha256[:16]}-{pp.resize}-{pp.crop}-{decoding}-{FEATURE_CACHE_VERSION}"
        self.folder = Path(root) / key

    def _file(self, sha256: str) -> Path:
        return self.folder / sha256[:2] / f"{sha256}.npy"

    def get(self, sha256: str) -> np.ndarray | None:
        try:
            return np.load(self._file(sha256), allow_pickle=False)
        except (OSError, ValueError):  # missing or damaged: recompute
            return None

    def put(self, sha256: str, vector: np.ndarray) -> None:
        target = self._file(sha256)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as handle:
            np.save(handle, vector.astype(np.float32), allow_pickle=False)
        os.replace(tmp, target)


def extract_features(
    network,
    paths: Sequence[Path],
    hashes: Sequence[str],
    pp: Preprocessing,
    *,
    batch_size: int = 32,
    cache: FeatureCache | None = None,
    on_progress: Callable[[int], None] | None = None,
    draft: bool = True,
) -> tuple[np.ndarray, int]:
    """Pooled backbone features (N, D) float32 for ``paths``, in order (``draft``: see ``load_eval_array``).

    Returns:
        (features, how many came from the cache).
    """
    import torch

    vectors: list[np.ndarray | None] = [None] * len(paths)
    todo: list[int] = []
    for i, digest in enumerate(hashes):
        cached = cache.get(digest) if cache else None
        if cached is not None:
            vectors[i] = cached
        else:
            todo.append(i)
    if on_progress and len(paths) - len(todo):
        on_progress(len(paths) - len(todo))
    network.eval()
    for start in range(0, len(todo), batch_size):
        chunk = todo[start : start + batch_size]
        batch = np.stack([load_eval_array(paths[i], pp, draft) for i in chunk])
        with torch.inference_mode():
            out = network.features(torch.from_numpy(batch)).numpy().astype(np.float32)
        for i, vector in zip(chunk, out):
            vectors[i] = vector
            if cache:
                cache.put(hashes[i], vector)
        if on_progress:
            on_progress(len(chunk))
    return np.stack(vectors).astype(np.float32), len(paths) - len(todo)
