"""Self-describing model bundles: a folder with ``config.json`` + weights (+ an optional report).

A bundle is what ``imgcls train`` writes, and it is a model everywhere a catalogue name is:
predict, serve, export, quantize, eval. ``config.json`` carries everything needed to use it
(architecture, class names, preprocessing, weights checksum), so nothing is guessed.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from imgcls.catalog.entries import Preprocessing
from imgcls.catalog.store import sha256_file, store_home
from imgcls.errors import ChecksumError, ModelError

__all__ = ["BUNDLE_FORMAT", "is_bundle", "read_bundle_config", "write_bundle_config", "import_bundle"]

BUNDLE_FORMAT = "imgcls-bundle/1"
CONFIG_NAME = "config.json"
_REQUIRED = ("name", "architecture", "class_names", "preprocessing", "weights")


def is_bundle(path: str | Path) -> bool:
    return (Path(path) / CONFIG_NAME).is_file()


def read_bundle_config(path: str | Path) -> dict:
    """Read and validate a bundle's config. Raises ModelError with a plain message when broken."""
    folder = Path(path)
    try:
        config = json.loads((folder / CONFIG_NAME).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(f"{folder} is not a model bundle (no {CONFIG_NAME}).") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ModelError(f"{folder}/{CONFIG_NAME} is not valid JSON.") from None
    missing = [key for key in _REQUIRED if key not in config]
    if missing:
        raise ModelError(f"{folder}/{CONFIG_NAME} is missing: {', '.join(missing)}.")
    names = config["class_names"]
    if not isinstance(names, list) or len(names) < 2 or not all(isinstance(n, str) and n for n in names):
        raise ModelError(f"{folder}/{CONFIG_NAME}: class_names must be a list of at least 2 names.")
    zh = config.get("class_names_zh")
    if zh is not None and (not isinstance(zh, list) or len(zh) != len(names)):
        raise ModelError(f"{folder}/{CONFIG_NAME}: class_names_zh must have one entry per class.")
    Preprocessing.from_dict(config["preprocessing"])  # validates the values
    return config


def write_bundle_config(path: str | Path, config: dict) -> None:
    config = {"format": BUNDLE_FORMAT, **config}
    target = Path(path) / CONFIG_NAME
    target.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def verify_bundle_weights(folder: Path, config: dict) -> Path:
    weights = folder / config["weights"]["file"]
    if not weights.is_file():
        raise ModelError(f"Bundle {config['name']}: weights file {config['weights']['file']} is missing.")
    if sha256_file(weights) != config["weights"]["sha256"]:
        raise ChecksumError(f"Bundle {config['name']}: weights do not match the checksum in {CONFIG_NAME}.")
    return weights


def import_bundle(path: str | Path) -> Path:
    """Validate a bundle (config + weights checksum) and copy it into the store under its name."""
    source = Path(path)
    config = read_bundle_config(source)
    verify_bundle_weights(source, config)
    name = str(config["name"])
    if not name.replace("_", "").replace("-", "").replace(".", "").isalnum():
        raise ModelError(f"Bundle name {name!r} must be letters, digits, '-', '_' or '.'.")
    target = store_home() / "bundles" / name
    if target.exists():
        shutil.rmtree(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(source, target)
    return target
