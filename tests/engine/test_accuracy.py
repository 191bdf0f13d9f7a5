"""Right answers on real photos: accuracy of the embedded model per precision, via the real CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from imgcls.engine import Classifier

ROOT = Path(__file__).resolve().parents[2]
IMGCLS = [sys.executable, "-m", "imgcls"]


def accuracy(predictions, labels):
    top1 = np.mean([p.top[0]["class_index"] == labels[Path(p.source).name] for p in predictions])
    top5 = np.mean([labels[Path(p.source).name] in [t["class_index"] for t in p.top] for p in predictions])
    return float(top1), float(top5)


@pytest.mark.slow
def test_embedded_model_fp32_accuracy_on_dev_photos(lite0_fp32, dev_dir, dev_labels, artifacts_dir):
    clf = Classifier("efficientnet_lite0", "fp32", batch_size=16)
    predictions = clf.predict(sorted(dev_dir / name for name in dev_labels), top_k=5)
    assert all(p.ok for p in predictions)
    top1, top5 = accuracy(predictions, dev_labels)
    (artifacts_dir / "accuracy-efficientnet_lite0-fp32.json").write_text(json.dumps({"top1": top1, "top5": top5}))
    assert top1 >= 0.86 and top5 >= 0.95, (top1, top5)


@pytest.mark.slow
def test_embedded_model_int8_accuracy_on_held_out_photos(lite0_int8, dev_dir, dev_labels, artifacts_dir):
    # The fixture calibrated on the even-numbered photos; score only the odd, held-out ones.
    held_out = sorted(dev_dir.glob("*.JPEG"))[1::2]
    clf = Classifier("efficientnet_lite0", "int8", batch_size=16)
    fp32 = Classifier("efficientnet_lite0", "fp32", batch_size=16)
    predictions = clf.predict(held_out, top_k=5)
    top1, top5 = accuracy(predictions, dev_labels)
    ref_top1, _ = accuracy(fp32.predict(held_out, top_k=5), dev_labels)
    agreement = np.mean([a.top[0]["class_index"] == b.top[0]["class_index"]
                         for a, b in zip(predictions, fp32.predict(held_out, top_k=1))])
    (artifacts_dir / "accuracy-efficientnet_lite0-int8.json").write_text(
        json.dumps({"top1": top1, "top5": top5, "fp32_top1_same_images": ref_top1, "agreement": agreement}))
    assert top1 >= 0.85, (top1, ref_top1)
    assert agreement >= 0.95


@pytest.mark.slow
def test_cli_json_output_matches_python_api(lite0_fp32, dev_dir, dev_labels):
    files = sorted(dev_dir / name for name in dev_labels)[:12]
    result = subprocess.run([*IMGCLS, "predict", *map(str, files), "--format", "json", "--model", "efficientnet_lite0"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [row["file"] for row in rows] == [str(f) for f in files]
    api = Classifier("efficientnet_lite0")
    for row, prediction in zip(rows, api.predict(files)):
        assert row["model"] == "efficientnet_lite0"
        assert list(row) == ["file", "model", "precision", "top", "input"] and row["precision"] == api.precision
        assert len(row["top"]) == 5 and set(row["top"][0]) == {"class_index", "label", "score"}
        assert [t["class_index"] for t in row["top"]] == [t["class_index"] for t in prediction.top]
        scores = [t["score"] for t in row["top"]]
        assert scores == sorted(scores, reverse=True) and 0 < sum(scores) <= 1.0001
        assert row["input"]["format"] == "JPEG"


def test_python_api_accepts_paths_bytes_and_pil(lite0_fp32, dev_dir):
    from PIL import Image

    path = dev_dir / "n01440764_tench.JPEG"
    clf = Classifier("efficientnet_lite0")
    by_path, by_bytes, by_pil = clf.predict([path, path.read_bytes(), Image.open(path)], top_k=3, lang="zh")
    assert by_path.top == by_bytes.top
    assert by_pil.top[0]["class_index"] == by_path.top[0]["class_index"] == 0
    assert by_path.top[0]["label"] == "丁鲷"
    single = clf.predict(str(path))
    assert len(single) == 1 and single[0].ok


@pytest.mark.slow
def test_solo_session_gives_the_same_probabilities(lite0_int8, dev_dir):
    """The server's lone-request session (all cores) is the same model as its one-thread session."""
    clf = Classifier("efficientnet_lite0", "int8", threads=1, solo_threads=2)
    assert clf.runtime.solo_threads == 2
    photos = sorted(dev_dir.glob("*.JPEG"))[:4]
    batch = np.stack([clf.to_array(clf.decode(p.read_bytes()).image) for p in photos])
    shared, solo = clf.probabilities(batch), clf.probabilities(batch, solo=True)
    assert np.abs(shared - solo).max() < 1e-5
    assert Classifier("efficientnet_lite0", "int8", threads=2, solo_threads=2).runtime.solo_threads is None
