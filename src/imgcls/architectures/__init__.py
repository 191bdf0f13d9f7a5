"""PyTorch network definitions (reference runtime, export and training only; never imported to serve).

Parameter names match the upstream weights so official files load with ``strict=True``.
"""

from __future__ import annotations

from typing import Callable

__all__ = ["build_network", "ARCHITECTURES"]


def _resnet18(num_classes: int):
    from imgcls.architectures.resnet import resnet18

    return resnet18(num_classes=num_classes)


def _efficientnet_lite0(num_classes: int):
    from imgcls.architectures.efficientnet_lite import efficientnet_lite0

    return efficientnet_lite0(num_classes=num_classes)


ARCHITECTURES: dict[str, Callable] = {
    "resnet18": _resnet18,
    "efficientnet_lite0": _efficientnet_lite0,
}


def build_network(architecture: str, num_classes: int = 1000):
    """Return an un-initialised ``torch.nn.Module`` for ``architecture`` in eval mode."""
    try:
        factory = ARCHITECTURES[architecture]
    except KeyError:
        raise ValueError(f"unknown architecture {architecture!r}") from None
    return factory(num_classes).eval()
