"""Real datasets for the training tests, built from the shared dev photos at test time.

The dev photos are 300 ImageNet images, one per fine class. Grouping fine classes into coarse
categories by ImageNet index gives a real "my own classes" dataset whose validation images are
fine classes never seen in training — a fair test of what a linear head on frozen features can do.
Photos are symlinked (never copied into the repo).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from training_helpers import MIN_PER_CATEGORY, dev_by_category, link_dataset


@pytest.fixture(scope="session")
def categories(dev_dir, dev_labels) -> dict[str, list[Path]]:
    grouped = dev_by_category(dev_dir, dev_labels)
    for name, photos in grouped.items():
        assert len(photos) >= MIN_PER_CATEGORY, f"category {name} has only {len(photos)} dev photos"
    return grouped


@pytest.fixture(scope="session")
def category_dataset(tmp_path_factory, categories) -> Path:
    """All dev photos of the five categories (dogs 35, birds 18, bugs 12, vehicles 13, food 13)."""
    return link_dataset(tmp_path_factory.mktemp("categories") / "data", categories)


@pytest.fixture(scope="session")
def small_dataset(tmp_path_factory, categories) -> Path:
    """Three categories x 8 photos: enough to see learning, cheap enough for full fine-tuning."""
    chosen = {name: categories[name] for name in ("dogs", "birds", "vehicles")}
    return link_dataset(tmp_path_factory.mktemp("small") / "data", chosen, per_class=8)


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory, categories) -> Path:
    """Three categories x 4 photos, for repeated runs (determinism)."""
    chosen = {name: categories[name] for name in ("dogs", "birds", "vehicles")}
    return link_dataset(tmp_path_factory.mktemp("tiny") / "data", chosen, per_class=4)


@pytest.fixture(scope="session")
def linear_bundle(tmp_path_factory, category_dataset):
    """A linear efficientnet_lite0 bundle trained with the defaults (seed 0, 20% validation),
    with its fp32 ONNX artifact exported and verified into the bundle."""
    from imgcls.training import NullReporter, TrainSettings, train

    out = tmp_path_factory.mktemp("bundles") / "categories"
    reporter = NullReporter()
    result = train(
        TrainSettings(
            data_dir=category_dataset,
            out=out,
            base="efficientnet_lite0",
            threads=1,
            zh_names=_zh_file(tmp_path_factory),
        ),
        reporter,
    )
    return result, reporter


def _zh_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("zh") / "names.tsv"
    path.write_text(
        "# class\tChinese name\ndogs\t狗\nbirds\t鸟\nbugs\t昆虫和蜘蛛\nvehicles\t车辆\nfood\t食物\n", encoding="utf-8"
    )
    return path


@pytest.fixture()
def copy_tree():
    """Copy a symlinked dataset into real files (for tests that damage files)."""

    def copy(src: Path, dst: Path) -> Path:
        shutil.copytree(src, dst, symlinks=False)
        return dst

    return copy
