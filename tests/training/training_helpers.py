"""Helpers shared by the training tests (a uniquely named module: tests/ is not a package)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
IMGCLS = ROOT / ".venv" / "bin" / "imgcls"
if not IMGCLS.exists():
    IMGCLS = Path(sys.executable).with_name("imgcls")

# Coarse categories as ImageNet class-index sets. Each has >= 12 photos among the dev photos.
CATEGORIES: dict[str, set[int]] = {
    "dogs": set(range(151, 269)),
    "birds": set(range(7, 25)) | set(range(80, 101)) | set(range(127, 147)),
    # insects and spiders
    "bugs": set(range(70, 80)) | set(range(300, 327)),
    # land vehicles: the road/rail vehicles of ImageNet plus carts and cycles
    "vehicles": {
        407,
        436,
        444,
        466,
        468,
        511,
        555,
        569,
        573,
        575,
        581,
        586,
        603,
        609,
        627,
        654,
        656,
        661,
        665,
        670,
        671,
        675,
        690,
        705,
        717,
        734,
        751,
        757,
        779,
        802,
        803,
        817,
        820,
        829,
        864,
        866,
        867,
        870,
        880,
    },
    # dishes, vegetables and fruit (923 plate .. 965 burrito; drinks 966-969 left out)
    "food": set(range(923, 966)),
}
MIN_PER_CATEGORY = 12


def imgcls_cmd(*args: str) -> list[str]:
    return [str(IMGCLS), *args]


def cli_env(**extra: str) -> dict:
    """Environment for CLI subprocesses: the test model store, one thread (the box is shared)."""
    return {**os.environ, "IMGCLS_THREADS": "1", "PYTHONUNBUFFERED": "1", **extra}


def dev_by_category(dev_dir: Path, dev_labels: dict[str, int]) -> dict[str, list[Path]]:
    grouped = {name: [] for name in CATEGORIES}
    for file, index in sorted(dev_labels.items()):
        for name, members in CATEGORIES.items():
            if index in members:
                grouped[name].append(dev_dir / file)
    return grouped


def link_dataset(root: Path, grouped: dict[str, list[Path]], per_class: int | None = None) -> Path:
    """ImageFolder tree of symlinks: root/<category>/<photo>."""
    for name, photos in grouped.items():
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for photo in photos[:per_class]:
            (folder / photo.name).symlink_to(photo)
    return root
