"""Training data: scan an ImageFolder tree, check every image, split it, read Chinese names.

Layout (as torchvision's ImageFolder): ``DATA_DIR/<class name>/**/<image>``. Folder names are the
class names, sorted, and become the labels in every output. Everything here runs *before* any
training so a bad dataset fails in seconds with a message that says what to fix:

* missing or empty folder, fewer than 2 classes, a class with fewer than 2 readable images
  -> ``DatasetError`` (exit code 2);
* non-image files -> ignored, counted, a few named;
* unreadable or corrupt images -> listed and skipped (decoded with the same safe decoder that
  serves, so a file that trains is a file that serves).
"""

from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from imgcls.errors import DatasetError, ImgclsError

__all__ = [
    "ImageItem",
    "Dataset",
    "scan_dataset",
    "stratified_split",
    "load_zh_names",
]

MIN_IMAGES_PER_CLASS = 2  # one to train on, one to validate with
_EXAMPLES = 5  # how many offending files a message names before saying "and N more"


@dataclass(frozen=True)
class ImageItem:
    """One readable image: where it is, its class index and its content hash (the cache key)."""

    path: Path
    label: int
    sha256: str


@dataclass
class Dataset:
    """A checked dataset: only readable images, plus what was ignored or skipped and why."""

    root: Path
    class_names: list[str]
    items: list[ImageItem]
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (relative path, reason)
    non_images: list[str] = field(default_factory=list)  # relative paths

    def counts(self) -> list[int]:
        """Readable images per class, in class order."""
        counts = [0] * len(self.class_names)
        for item in self.items:
            counts[item.label] += 1
        return counts

    def summary(self) -> dict:
        return {
            "folder": str(self.root),
            "images": len(self.items),
            "images_per_class": dict(zip(self.class_names, self.counts())),
            "unreadable_skipped": [{"file": f, "reason": r} for f, r in self.unreadable],
            "non_image_files_ignored": len(self.non_images),
        }


def _examples(names: list[str]) -> str:
    shown = ", ".join(names[:_EXAMPLES])
    return shown + (f" and {len(names) - _EXAMPLES} more" if len(names) > _EXAMPLES else "")


def _list_classes(root: Path, what: str) -> tuple[list[str], list[str]]:
    """Class folder names (sorted) and the stray files lying next to them."""
    if not root.exists():
        raise DatasetError(f"The {what} folder {root} does not exist.")
    if not root.is_dir():
        raise DatasetError(f"{root} is a file; give a folder with one sub-folder per class.")
    entries = [p for p in root.iterdir() if not p.name.startswith(".")]
    if not entries:
        raise DatasetError(
            f"The {what} folder {root} is empty. Put one sub-folder per class in it, "
            f"each holding that class's images (e.g. {root}/cat/1.jpg, {root}/dog/2.jpg)."
        )
    classes = sorted(p.name for p in entries if p.is_dir())
    strays = sorted(p.name for p in entries if not p.is_dir())
    if not classes:
        raise DatasetError(
            f"The {what} folder {root} has files but no class sub-folders. Put each class's images "
            "in a sub-folder named after the class (the folder names become the labels)."
        )
    return classes, strays


def scan_dataset(
    root: str | Path,
    *,
    class_names: list[str] | None = None,
    what: str = "training",
    min_per_class: int = MIN_IMAGES_PER_CLASS,
    on_progress: Callable[[int, int], None] | None = None,
    draft_size: int | None = None,
) -> Dataset:
    """List and check every image of an ImageFolder tree.

    Args:
        root: the folder holding one sub-folder per class.
        class_names: for a separate validation folder: the training classes. Its folders must be
            among them (a class may be missing); indices follow the training order.
        what: "training" or "validation", used in messages.
        min_per_class: the least readable images each class must keep (0 for validation).
        on_progress: called as ``(done, total)`` while images are decoded.
        draft_size: check large JPEGs by decoding them at a reduced scale that keeps the shorter
            side >= 2x this (every byte of the file is still read, so truncation is still caught).

    Returns:
        The checked ``Dataset`` (items sorted by class, then path).

    Raises:
        DatasetError: a problem that makes training impossible, said in plain words.
    """
    from imgcls.preprocess import IMAGE_SUFFIXES, decode_image

    root = Path(root).expanduser()
    folders, strays = _list_classes(root, what)
    if class_names is None:
        if len(folders) < 2:
            raise DatasetError(
                f"Found {len(folders)} class folder ({', '.join(folders)}) in {root}; training needs at "
                "least 2 classes, one sub-folder per class."
            )
        class_names = folders
    else:
        unknown = [name for name in folders if name not in class_names]
        if unknown:
            raise DatasetError(
                f"The {what} folder {root} has classes the training data does not: {_examples(unknown)}. "
                f"Known classes: {_examples(class_names)}."
            )
    index = {name: i for i, name in enumerate(class_names)}

    candidates: list[tuple[Path, int]] = []
    non_images = list(strays)
    for name in folders:
        for path in sorted((root / name).rglob("*")):
            relative = path.relative_to(root)
            if any(part.startswith(".") for part in relative.parts) or not path.is_file():
                continue  # hidden files (.DS_Store, editor swap files) and folders
            if path.suffix.lower() in IMAGE_SUFFIXES:
                candidates.append((path, index[name]))
            else:
                non_images.append(str(relative))

    items: list[ImageItem] = []
    unreadable: list[tuple[str, str]] = []
    for done, (path, label) in enumerate(candidates, 1):
        try:
            data = path.read_bytes()
            decode_image(data, draft_size=draft_size)  # the serving decoder: allow-list, caps, truncation
            items.append(ImageItem(path=path, label=label, sha256=hashlib.sha256(data).hexdigest()))
        except ImgclsError as exc:
            unreadable.append((str(path.relative_to(root)), exc.message))
        except OSError as exc:
            unreadable.append((str(path.relative_to(root)), f"could not read the file ({exc.strerror or exc})"))
        if on_progress:
            on_progress(done, len(candidates))

    dataset = Dataset(
        root=root, class_names=list(class_names), items=items, unreadable=unreadable, non_images=non_images
    )
    if not items:
        detail = f" ({len(unreadable)} unreadable)" if unreadable else ""
        raise DatasetError(f"The {what} folder {root} has no readable images{detail}.")
    short = [f"'{n}' has {c}" for n, c in zip(class_names, dataset.counts()) if c < min_per_class]
    if short:
        skipped = f" ({len(unreadable)} unreadable images were skipped)" if unreadable else ""
        raise DatasetError(
            f"Every class needs at least {min_per_class} readable images (one to train on, one to "
            f"validate with): {_examples(short)}{skipped}."
        )
    return dataset


def stratified_split(labels: list[int], num_classes: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Seeded per-class split into (train indices, validation indices).

    Each class gives ``round(n * fraction)`` images to validation, at least 1 and at most n - 1,
    so every class is both trained on and checked. Indices are returned sorted.
    """
    if not 0.0 < fraction < 1.0:
        raise DatasetError(f"The validation split must be between 0 and 1 (got {fraction}).")
    rng = np.random.default_rng(seed)
    train: list[int] = []
    val: list[int] = []
    for cls in range(num_classes):
        members = [i for i, label in enumerate(labels) if label == cls]
        if not members:
            continue
        order = rng.permutation(len(members))
        n_val = min(len(members) - 1, max(1, int(round(len(members) * fraction))))
        val.extend(members[j] for j in order[:n_val])
        train.extend(members[j] for j in order[n_val:])
    return sorted(train), sorted(val)


def load_zh_names(path: str | Path, class_names: list[str]) -> tuple[list[str], list[str]]:
    """Read a class -> Chinese name mapping (JSON object, or TSV/CSV with two columns).

    Returns:
        (Chinese names in class order, classes that had no entry and keep their folder name).

    Raises:
        DatasetError: unreadable file, or names for classes the dataset does not have (a typo).
    """
    path = Path(path).expanduser()
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"Could not read the Chinese names file {path}: {exc}.") from None
    mapping: dict[str, str] = {}
    if path.suffix.lower() == ".json" or text.lstrip().startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{path} is not valid JSON ({exc.msg}, line {exc.lineno}).") from None
        if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
            raise DatasetError(f"{path} must be a JSON object mapping each class name to its Chinese name.")
        mapping = {str(k).strip(): v.strip() for k, v in data.items()}
    else:
        delimiter = "\t" if "\t" in text else ","
        for number, row in enumerate(csv.reader(text.splitlines(), delimiter=delimiter), 1):
            if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
                continue
            if len(row) < 2:
                raise DatasetError(f"{path} line {number}: expected 'class<TAB>Chinese name'.")
            mapping[row[0].strip()] = row[1].strip()
    unknown = [name for name in mapping if name not in class_names]
    if unknown:
        raise DatasetError(
            f"{path} names classes the dataset does not have: {_examples(unknown)}. "
            f"The classes are the folder names: {_examples(class_names)}."
        )
    empty = [name for name, zh in mapping.items() if not zh]
    if empty:
        raise DatasetError(f"{path} has empty Chinese names for: {_examples(empty)}.")
    missing = [name for name in class_names if name not in mapping]
    return [mapping.get(name, name) for name in class_names], missing
