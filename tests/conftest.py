"""Shared fixtures: the shared dev photos, a persistent test model store, small generated images."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("IMGCLS_SHARED", ROOT.parent / "shared"))
DEV_DIR = SHARED / "data" / "imagenet-samples" / "dev"
ARTIFACTS_DIR = ROOT / "test-artifacts"

# One model store for the whole suite, kept between runs (git-ignored): exporting and quantising
# are the slow parts, and their verified results are keyed by weights hash, so reuse is safe.
TEST_HOME = Path(os.environ.get("IMGCLS_TEST_HOME", ROOT / ".cache" / "test-home"))
os.environ["IMGCLS_HOME"] = str(TEST_HOME)
TEST_HOME.mkdir(parents=True, exist_ok=True)


def dev_photos_or_skip() -> Path:
    if not (DEV_DIR / "labels.csv").is_file():
        pytest.skip(f"shared dev photos not found at {DEV_DIR} (clone with ../shared beside the project)")
    return DEV_DIR


@pytest.fixture(scope="session")
def dev_dir() -> Path:
    return dev_photos_or_skip()


@pytest.fixture(scope="session")
def dev_labels(dev_dir: Path) -> dict[str, int]:
    with (dev_dir / "labels.csv").open(newline="") as handle:
        return {row["file"]: int(row["class_index"]) for row in csv.DictReader(handle)}


@pytest.fixture(scope="session")
def imgcls_home() -> Path:
    return TEST_HOME


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    ARTIFACTS_DIR.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS_DIR


@pytest.fixture(scope="session")
def lite0_fp32(imgcls_home):
    """The embedded model's verified fp32 artifact (exported once per store)."""
    from imgcls.artifacts import ensure_artifact
    from imgcls.catalog import resolve_model

    spec = resolve_model("efficientnet_lite0")
    return ensure_artifact(spec, "fp32")


@pytest.fixture
def fp32_only_home(lite0_fp32, tmp_path) -> Path:
    """A fresh model store holding only the embedded model's fp32 artifact (linked to the test
    store's): what a first start finds after the export, before any INT8 exists."""
    import json

    from imgcls.artifacts import artifact_dir
    from imgcls.catalog import resolve_model

    home = tmp_path / "fp32-only-home"
    folder = home / "artifacts" / artifact_dir(resolve_model("efficientnet_lite0")).name
    folder.mkdir(parents=True)
    (folder / "fp32.onnx").symlink_to(lite0_fp32[0])
    (folder / "fp32.json").write_text(json.dumps(lite0_fp32[1]))
    return home


@pytest.fixture(scope="session")
def lite0_int8(lite0_fp32, dev_dir):
    """INT8 artifact calibrated on the even-numbered dev photos, verified on the odd ones."""
    from imgcls.artifacts import find_artifact, quantize_int8
    from imgcls.catalog import resolve_model
    from imgcls.errors import ImgclsError

    spec = resolve_model("efficientnet_lite0")
    try:
        return find_artifact(spec, "int8")
    except ImgclsError:
        photos = sorted(dev_dir.glob("*.JPEG"))
        quantize_int8(spec, photos[::2], photos[1::2])
        return find_artifact(spec, "int8")


def pytest_collection_modifyitems(session, config, items):
    """Run the browser tier last: Playwright's sync API keeps an event loop running on the main
    thread for as long as its session-scoped browser lives, which breaks `asyncio.run` in any test
    that comes after it."""
    items.sort(key=lambda item: item.get_closest_marker("browser") is not None)
