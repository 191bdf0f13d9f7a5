"""Fast checks of the training building blocks: identical tensors, augmentation, the linear head
(fold, Ctrl-C), metrics, the feature cache, draft decoding of large JPEGs."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from imgcls.catalog import resolve_model
from imgcls.preprocess import preprocess, resize_and_crop
from imgcls.training.events import EpochRecord, NullReporter
from imgcls.training.full import random_resized_crop, to_array
from imgcls.training.linear import fit_linear_head
from imgcls.training.report import classification_metrics


def _photo(width=320, height=240, seed=0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8))


@pytest.mark.parametrize("model", ["efficientnet_lite0", "resnet18"])
def test_augmentation_normalises_exactly_like_serving(model):
    pp = resolve_model(model).preprocessing
    image = _photo()
    assert np.array_equal(to_array(resize_and_crop(image, pp), pp), preprocess(image, pp))


def test_random_resized_crop_is_seeded_and_sized():
    image = _photo()
    a = [np.asarray(random_resized_crop(image, 96, np.random.default_rng(3))) for _ in range(2)]
    b = np.asarray(random_resized_crop(image, 96, np.random.default_rng(4)))
    assert a[0].shape == (96, 96, 3) and np.array_equal(a[0], a[1]) and not np.array_equal(a[0], b)
    strip = _photo(2000, 10)  # no box of the allowed aspect fits: the centred fallback
    assert random_resized_crop(strip, 64, np.random.default_rng(0)).size == (64, 64)


def _blobs(n_per_class=20, classes=3, dim=16, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 3, (classes, dim))
    x = np.concatenate([centres[c] + rng.normal(0, 1, (n_per_class, dim)) for c in range(classes)])
    y = np.repeat(np.arange(classes), n_per_class)
    return np.abs(x).astype(np.float32) * 5 + 2, y  # positive, shifted, scaled: like pooled ReLU features


def test_linear_head_folds_standardisation_into_raw_feature_weights():
    import torch

    x, y = _blobs()
    fit = fit_linear_head(
        x[::2], y[::2], x[1::2], y[1::2], 3, epochs=50, lr=1.0, weight_decay=1e-2, reporter=NullReporter()
    )
    assert fit.best_epoch >= 1 and fit.history[fit.best_epoch - 1].best
    head = torch.nn.Linear(16, 3)
    head.load_state_dict({"weight": torch.from_numpy(fit.weight), "bias": torch.from_numpy(fit.bias)})
    with torch.no_grad():
        logits = head(torch.from_numpy(x[1::2])).numpy()
    assert (logits.argmax(1) == y[1::2]).mean() == pytest.approx(fit.history[fit.best_epoch - 1].val_acc)


def test_linear_head_ctrl_c_keeps_best_so_far():
    class StopAtThree(NullReporter):
        def epoch(self, record: EpochRecord, total_epochs: int) -> None:
            super().epoch(record, total_epochs)
            if record.epoch == 3:
                raise KeyboardInterrupt

    x, y = _blobs(seed=1)
    fit = fit_linear_head(
        x[::2], y[::2], x[1::2], y[1::2], 3, epochs=50, lr=1.0, weight_decay=1e-2, reporter=StopAtThree()
    )
    assert fit.interrupted and len(fit.history) == 3 and 1 <= fit.best_epoch <= 3
    assert np.abs(fit.weight).sum() > 0


def test_classification_metrics_from_a_known_confusion():
    # true:      0 0 0 1 1 2 ; predicted: 0 0 1 1 1 0
    labels = np.array([0, 0, 0, 1, 1, 2])
    logits = np.eye(3)[[0, 0, 1, 1, 1, 0]] * 5
    m = classification_metrics(logits, labels, ["a", "b", "c"])
    assert m["confusion_matrix"] == [[2, 1, 0], [0, 2, 0], [1, 0, 0]]
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["per_class"]["a"]["precision"] == pytest.approx(2 / 3) and m["per_class"]["a"]["recall"] == pytest.approx(
        2 / 3
    )
    assert m["per_class"]["b"]["precision"] == pytest.approx(2 / 3) and m["per_class"]["b"]["recall"] == 1.0
    assert m["per_class"]["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1, "predicted": 0}


def test_heads_of_both_architectures_are_found():
    from imgcls.architectures import build_network
    from imgcls.training.network import classifier_name

    assert classifier_name(build_network("resnet18", 4)) == "fc"
    assert classifier_name(build_network("efficientnet_lite0", 4)) == "_fc"


def test_feature_cache_round_trip_and_damage(tmp_path):
    from imgcls.training.network import FeatureCache

    spec = resolve_model("efficientnet_lite0")
    cache = FeatureCache(tmp_path, spec, spec.preprocessing)
    vector = np.arange(8, dtype=np.float32)
    cache.put("ab" * 32, vector)
    assert np.array_equal(cache.get("ab" * 32), vector)
    assert cache.get("cd" * 32) is None
    cache._file("ab" * 32).write_bytes(b"garbage")
    assert cache.get("ab" * 32) is None  # recomputed, never trusted
    other = FeatureCache(tmp_path, spec, spec.preprocessing.__class__(crop=160, resize=183))
    assert other.folder != cache.folder  # keyed by preprocessing too


def _large_jpeg(path, seed=0, size=(2400, 1800)):
    """A phone-sized JPEG with detail at every scale, so a reduced-scale decode shows."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (size[1] // 8, size[0] // 8, 3), dtype=np.uint8)
    image = Image.fromarray(small).resize(size, Image.BICUBIC)
    noisy = np.asarray(image, np.int16) + rng.integers(-20, 20, (size[1], size[0], 3))
    Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).save(path, quality=90)
    return path


def test_training_decodes_large_jpegs_like_the_default_server(tmp_path):
    from imgcls.preprocess import decode_image
    from imgcls.training.full import _TrainImages
    from imgcls.training.network import FeatureCache, load_eval_array

    spec = resolve_model("efficientnet_lite0")
    pp = spec.preprocessing
    path = _large_jpeg(tmp_path / "phone.jpg")
    data = path.read_bytes()
    served = preprocess(decode_image(data, draft_size=pp.resize).image, pp)  # the server's default decode
    exact = preprocess(decode_image(data).image, pp)
    assert not np.array_equal(served, exact)  # the draft decode is in effect for this photo
    assert np.array_equal(load_eval_array(path, pp), served)
    assert np.array_equal(load_eval_array(path, pp, draft=False), exact)
    # full mode's in-memory images: the same reduced decode, then shrunk to the resize size
    drafted, full = _TrainImages([path], pp).get(0), _TrainImages([path], pp, draft=False).get(0)
    assert min(drafted.size) == min(full.size) == pp.resize
    assert not np.array_equal(np.asarray(drafted), np.asarray(full))
    # features of the two decodes never share a cache folder
    assert FeatureCache(tmp_path, spec, pp).folder != FeatureCache(tmp_path, spec, pp, draft=False).folder


def test_dataset_check_with_draft_still_catches_a_truncated_large_jpeg(tmp_path):
    from imgcls.training import scan_dataset

    for name in ("cats", "dogs"):
        (tmp_path / name).mkdir()
        for i in range(2):
            _large_jpeg(tmp_path / name / f"{i}.jpg", seed=i)
    whole = (tmp_path / "cats" / "0.jpg").read_bytes()
    (tmp_path / "cats" / "cut.jpg").write_bytes(whole[: len(whole) * 2 // 3])
    data = scan_dataset(tmp_path, draft_size=256)
    assert data.counts() == [2, 2]
    assert [name for name, _ in data.unreadable] == ["cats/cut.jpg"]
    assert "truncated" in dict(data.unreadable)["cats/cut.jpg"]
