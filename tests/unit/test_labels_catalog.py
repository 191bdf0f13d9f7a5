"""Labels (both languages) and the catalogue schema."""

from __future__ import annotations

import re

import pytest

from imgcls.catalog import CATALOG, resolve_model
from imgcls.catalog.entries import Preprocessing
from imgcls.errors import UnknownModelError
from imgcls.labels import imagenet_labels, imagenet_wnids

CJK = re.compile(r"[\u3400-\u9fff]")


def test_english_labels_match_shared_classes(dev_dir):
    import csv

    with (dev_dir.parent / "classes.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["name"] for r in rows] == list(imagenet_labels("en"))
    assert [r["wnid"] for r in rows] == list(imagenet_wnids())


def test_chinese_labels_complete_unique_and_chinese():
    en, zh = imagenet_labels("en"), imagenet_labels("zh")
    assert len(zh) == len(en) == 1000
    for index, name in enumerate(zh):
        assert name.strip() == name and name, f"class {index} has an empty/padded Chinese name"
        assert CJK.search(name), f"class {index} ({en[index]}) Chinese name {name!r} has no Chinese characters"
        assert not name.isascii()
    # Where ImageNet's English names are unique, the Chinese names are too.
    duplicates = {}
    for index, name in enumerate(zh):
        duplicates.setdefault(name, []).append(index)
    clashes = {name: idx for name, idx in duplicates.items() if len(idx) > 1 and len({en[i] for i in idx}) > 1}
    assert not clashes, clashes
    # ImageNet's own duplicates ('crane' bird vs machine, the two 'maillot's) are told apart in Chinese.
    assert zh[134] != zh[517] and zh[638] != zh[639]
    assert (zh[0], zh[1], zh[2]) == ("丁鲷", "金鱼", "大白鲨")


def test_unknown_language_is_an_error():
    with pytest.raises(ValueError):
        imagenet_labels("fr")


@pytest.mark.parametrize("entry", list(CATALOG.values()), ids=lambda e: e.name)
def test_catalogue_entry_schema(entry):
    assert re.fullmatch(r"[0-9a-f]{64}", entry.weights.sha256)
    assert entry.weights.url or entry.weights.python_package, "weights need a source"
    assert entry.licence and entry.reference_accuracy
    assert entry.num_classes == 1000 and entry.labels == "imagenet1k"
    pp = entry.preprocessing
    assert pp.resize >= pp.crop > 0 and len(pp.mean) == len(pp.std) == 3 and all(s > 0 for s in pp.std)
    assert Preprocessing.from_dict(pp.to_dict()) == pp
    assert "centre-crop" in pp.describe()
    spec = resolve_model(entry.name)
    assert len(spec.labels("en")) == len(spec.labels("zh")) == entry.num_classes


def test_catalogue_is_importable_without_runtimes():
    import subprocess
    import sys

    code = ("import sys, imgcls.catalog, imgcls.preprocess, imgcls.engine, imgcls.cli;"
            "bad = [m for m in ('torch', 'onnx', 'ray', 'av') if m in sys.modules]; print(bad); sys.exit(bool(bad))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_unknown_model_names_the_known_ones():
    with pytest.raises(UnknownModelError, match="efficientnet_lite0"):
        resolve_model("resnet9000")


def test_public_api_is_what_it_claims():
    import imgcls

    assert imgcls.__all__ == ["Classifier", "__version__"]
    from imgcls.engine import Classifier

    assert imgcls.Classifier is Classifier
