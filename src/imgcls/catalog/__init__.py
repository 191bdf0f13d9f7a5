"""Model catalogue, weights resolution and bundles: everything that says *what* a model is.

``resolve_model(name_or_path)`` turns a catalogue name, an imported bundle name or a bundle folder
into a ``ModelSpec``: the one record the runtimes, engine, server and docs work from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from imgcls.catalog.bundles import is_bundle, read_bundle_config, verify_bundle_weights
from imgcls.catalog.entries import CATALOG, ModelEntry, Preprocessing, get_entry
from imgcls.catalog.store import find_weights, store_home, weights_status
from imgcls.errors import UnknownModelError
from imgcls.labels import imagenet_labels

# Calibration tables of catalogue models, made with `imgcls models quantize --save-table`.
CALIBRATION_TABLES = Path(__file__).parent / "calibration"

__all__ = ["ModelSpec", "resolve_model", "default_model_name", "list_models", "CATALOG", "CALIBRATION_TABLES", "ModelEntry"]


@dataclass(frozen=True)
class ModelSpec:
    """A resolved model: enough to find weights, build artifacts, label outputs and describe it."""

    name: str
    title: str
    architecture: str
    num_classes: int
    preprocessing: Preprocessing
    weights_sha256: str
    source: str  # "catalog" or "bundle"
    entry: ModelEntry | None = None
    bundle_dir: Path | None = None
    labels_en: tuple[str, ...] = field(default=(), repr=False)
    labels_zh: tuple[str, ...] | None = field(default=None, repr=False)
    # INT8 activation ranges shipped with the model (imgcls.artifacts.quantize_int8_from_table):
    # an INT8 artifact can then be built without calibration photos.
    calibration_table: Path | None = None

    def label_language(self, lang: str) -> str:
        """The language answers in ``lang`` actually use: English when the model has no such names."""
        return lang if lang in self.languages else "en"

    def labels(self, lang: str = "en") -> tuple[str, ...]:
        """Class names in ``lang``; bundles without Chinese names fall back to their own names."""
        return self.labels_zh if self.label_language(lang) == "zh" else self.labels_en

    @property
    def languages(self) -> list[str]:
        return ["en", "zh"] if self.labels_zh else ["en"]

    def weights_path(self, explicit: Path | None = None) -> Path:
        """A checksum-verified weights file (only export/training needs it; serving uses ONNX)."""
        if self.entry is not None:
            return find_weights(self.entry, explicit)
        return verify_bundle_weights(self.bundle_dir, read_bundle_config(self.bundle_dir))


def _from_entry(entry: ModelEntry) -> ModelSpec:
    return ModelSpec(
        name=entry.name,
        title=entry.title,
        architecture=entry.architecture,
        num_classes=entry.num_classes,
        preprocessing=entry.preprocessing,
        weights_sha256=entry.weights.sha256,
        source="catalog",
        entry=entry,
        labels_en=imagenet_labels("en"),
        labels_zh=imagenet_labels("zh"),
        calibration_table=_existing(CALIBRATION_TABLES / f"{entry.name}.json"),
    )


def _from_bundle(folder: Path) -> ModelSpec:
    config = read_bundle_config(folder)
    zh = config.get("class_names_zh")
    return ModelSpec(
        name=str(config["name"]),
        title=str(config.get("title") or f"{config['name']} (fine-tuned {config.get('base_model', config['architecture'])})"),
        architecture=str(config["architecture"]),
        num_classes=len(config["class_names"]),
        preprocessing=Preprocessing.from_dict(config["preprocessing"]),
        weights_sha256=str(config["weights"]["sha256"]),
        source="bundle",
        bundle_dir=folder.resolve(),
        labels_en=tuple(config["class_names"]),
        labels_zh=tuple(zh) if zh else None,
        calibration_table=_existing(folder.resolve() / "calibration.json"),
    )


def _existing(path: Path) -> Path | None:
    return path if path.is_file() else None


def resolve_model(name_or_path: str | Path) -> ModelSpec:
    """Catalogue name, imported bundle name, or path to a bundle folder -> ModelSpec."""
    text = str(name_or_path)
    if text in CATALOG:
        return _from_entry(CATALOG[text])
    path = Path(text).expanduser()
    if ("/" in text or text.startswith(".")) and path.is_dir():
        if is_bundle(path):
            return _from_bundle(path)
        raise UnknownModelError(f"{text} is a folder but not a model bundle (no config.json).")
    stored = store_home() / "bundles" / text
    if text and "/" not in text and is_bundle(stored):
        return _from_bundle(stored)
    if path.is_dir() and is_bundle(path):
        return _from_bundle(path)
    get_entry(text)  # raises UnknownModelError listing the known names
    raise AssertionError("unreachable")


def default_model_name() -> str:
    """``resnet18`` when its weights are installed, otherwise the embedded ``efficientnet_lite0``."""
    available, _ = weights_status(CATALOG["resnet18"])
    return "resnet18" if available else "efficientnet_lite0"


def list_models() -> list[dict]:
    """Every catalogue model and imported bundle with availability and the reason if unavailable."""
    rows = []
    for entry in CATALOG.values():
        available, why = weights_status(entry)
        rows.append({"name": entry.name, "title": entry.title, "source": "catalog", "available": available,
                     "detail": why, "licence": entry.licence})
    bundles = store_home() / "bundles"
    if bundles.is_dir():
        for folder in sorted(bundles.iterdir()):
            if is_bundle(folder):
                try:
                    spec = _from_bundle(folder)
                    rows.append({"name": spec.name, "title": spec.title, "source": "bundle", "available": True,
                                 "detail": f"bundle with {spec.num_classes} classes", "licence": ""})
                except Exception as exc:  # a broken bundle is listed, not fatal
                    rows.append({"name": folder.name, "title": folder.name, "source": "bundle",
                                 "available": False, "detail": str(exc), "licence": ""})
    return rows
