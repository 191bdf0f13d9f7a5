"""Class names for ImageNet-1k in English and Simplified Chinese, and label lookup by language.

The English names are TorchVision's ImageNet category names; the Chinese names were written for
imgcls to be what a Chinese speaker would say (丁鲷, 金鱼, 大白鲨 ...), not word-for-word.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

__all__ = ["LANGUAGES", "imagenet_labels", "imagenet_wnids"]

LANGUAGES = ("en", "zh")


def _read_rows(filename: str) -> list[list[str]]:
    text = resources.files(__package__).joinpath(filename).read_text(encoding="utf-8")
    return [line.split("\t") for line in text.splitlines() if line and not line.startswith("#")]


@lru_cache(maxsize=None)
def imagenet_labels(lang: str = "en") -> tuple[str, ...]:
    """The 1000 ImageNet class names in ``lang`` ('en' or 'zh'), indexed by class index."""
    if lang == "en":
        rows = _read_rows("imagenet1k_en.tsv")
        names = [row[2] for row in rows]
    elif lang == "zh":
        rows = _read_rows("imagenet1k_zh.tsv")
        names = [row[1] for row in rows]
    else:
        raise ValueError(f"unknown language {lang!r}; use one of {', '.join(LANGUAGES)}")
    if [int(row[0]) for row in rows] != list(range(1000)):
        raise RuntimeError(f"label file for {lang!r} is damaged: indices are not 0..999")
    return tuple(names)


@lru_cache(maxsize=None)
def imagenet_wnids() -> tuple[str, ...]:
    return tuple(row[1] for row in _read_rows("imagenet1k_en.tsv"))
