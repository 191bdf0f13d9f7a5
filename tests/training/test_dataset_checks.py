"""Bad datasets fail before any training with a clear DatasetError; odd files are skipped and counted.

Images here are small generated PNG/JPEG files (real, decodable images); the damaged ones are
damaged the way real files are: truncated, empty, text with an image name.
"""

from __future__ import annotations

import io
import json
import subprocess
import time

import numpy as np
import pytest
from PIL import Image

from imgcls.errors import DatasetError, InputError
from imgcls.training import TrainSettings, load_zh_names, scan_dataset, stratified_split, train
from training_helpers import cli_env, imgcls_cmd


def _image_bytes(seed: int, fmt: str = "PNG", size=(40, 30)) -> bytes:
    rng = np.random.default_rng(seed)
    image = Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def make_tree(root, spec: dict[str, int], fmt: str = "PNG"):
    """root/<class>/<i>.png with ``spec[class]`` images each."""
    seed = 0
    for name, count in spec.items():
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(count):
            seed += 1
            (folder / f"{i}.{fmt.lower()}").write_bytes(_image_bytes(seed, fmt))
    return root


def expect_error(root, match: str, **kwargs) -> str:
    with pytest.raises(DatasetError, match=match) as info:
        scan_dataset(root, **kwargs)
    assert info.value.exit_code == 2
    return info.value.message


def test_missing_folder(tmp_path):
    expect_error(tmp_path / "nope", "does not exist")


def test_file_instead_of_folder(tmp_path):
    path = tmp_path / "data.zip"
    path.write_bytes(b"PK")
    expect_error(path, "is a file; give a folder with one sub-folder per class")


def test_empty_folder(tmp_path):
    (tmp_path / "data").mkdir()
    expect_error(tmp_path / "data", "is empty. Put one sub-folder per class")


def test_images_without_class_folders(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.png").write_bytes(_image_bytes(1))
    expect_error(tmp_path / "data", "has files but no class sub-folders")


def test_fewer_than_two_classes(tmp_path):
    make_tree(tmp_path / "data", {"cats": 5})
    message = expect_error(tmp_path / "data", "at least 2 classes")
    assert "Found 1 class folder (cats)" in message


def test_class_with_one_image_and_empty_class(tmp_path):
    root = make_tree(tmp_path / "data", {"cats": 3, "dogs": 1})
    (root / "birds").mkdir()
    message = expect_error(root, "at least 2 readable images")
    assert "'dogs' has 1" in message and "'birds' has 0" in message and "'cats'" not in message


def test_non_image_files_are_ignored_and_counted(tmp_path):
    root = make_tree(tmp_path / "data", {"cats": 2, "dogs": 2})
    (root / "cats" / "notes.txt").write_text("not a photo")
    (root / "dogs" / "labels.csv").write_text("a,b\n")
    (root / "README.md").write_text("# my data")
    (root / "dogs" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")  # hidden: silently skipped
    data = scan_dataset(root)
    assert data.counts() == [2, 2]
    assert sorted(data.non_images) == ["README.md", "cats/notes.txt", "dogs/labels.csv"]
    assert data.summary()["non_image_files_ignored"] == 3


def test_unreadable_images_are_listed_and_skipped(tmp_path):
    root = make_tree(tmp_path / "data", {"cats": 3, "dogs": 3}, fmt="JPEG")
    good = (root / "cats" / "0.jpeg").read_bytes()
    (root / "cats" / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (root / "dogs" / "empty.png").write_bytes(b"")
    (root / "dogs" / "text.jpg").write_text("this is not an image\n" * 20)
    data = scan_dataset(root)
    assert data.counts() == [3, 3]
    skipped = dict(data.unreadable)
    assert set(skipped) == {"cats/truncated.jpg", "dogs/empty.png", "dogs/text.jpg"}
    assert "truncated" in skipped["cats/truncated.jpg"]
    assert "empty" in skipped["dogs/empty.png"]
    assert all(item.path.name not in {"truncated.jpg", "empty.png", "text.jpg"} for item in data.items)


def test_skipping_that_leaves_a_class_short_is_an_error(tmp_path):
    root = make_tree(tmp_path / "data", {"cats": 3, "dogs": 1})
    (root / "dogs" / "broken.png").write_bytes(_image_bytes(99)[:60])
    message = expect_error(root, "at least 2 readable images")
    assert "'dogs' has 1" in message and "1 unreadable images were skipped" in message


def test_validation_folder_with_unknown_class(tmp_path):
    make_tree(tmp_path / "val", {"cats": 1, "horses": 1})
    expect_error(
        tmp_path / "val",
        "classes the training data does not: horses",
        class_names=["cats", "dogs"],
        what="validation",
        min_per_class=0,
    )


def test_train_fails_before_training_and_writes_nothing(tmp_path):
    root = make_tree(tmp_path / "data", {"cats": 4, "dogs": 1})
    out = tmp_path / "bundle"
    started = time.perf_counter()
    with pytest.raises(DatasetError, match="'dogs' has 1"):
        train(TrainSettings(data_dir=root, out=out, threads=1))
    assert time.perf_counter() - started < 20
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".bundle")]  # no staging left behind


def test_cli_bad_dataset_exit_code_and_message(tmp_path):
    (tmp_path / "data").mkdir()
    proc = subprocess.run(
        imgcls_cmd("train", str(tmp_path / "data"), "--out", str(tmp_path / "b")),
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert "is empty. Put one sub-folder per class" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


def test_output_folder_protection(tmp_path):
    root = make_tree(tmp_path / "data", {"cats": 2, "dogs": 2})
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "keep.jpg").write_bytes(b"precious")
    with pytest.raises(InputError, match="other files in it"):
        train(TrainSettings(data_dir=root, out=photos, threads=1, overwrite=True))
    assert (photos / "keep.jpg").read_bytes() == b"precious"
    existing = tmp_path / "old-bundle"
    existing.mkdir()
    (existing / "config.json").write_text("{}")
    with pytest.raises(InputError, match="--overwrite"):
        train(TrainSettings(data_dir=root, out=existing, threads=1))
    with pytest.raises(InputError, match="inside the training folder, where it would become a class"):
        train(TrainSettings(data_dir=root, out=root / "model", threads=1))


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("mode", "deep", "--mode must be linear or full"),
        ("base", "vgg16", "--base must be one of"),
        ("val_split", 1.0, "--val-split must be between 0 and 1"),
        ("epochs", 0, "--epochs must be at least 1"),
        ("lr", -1.0, "--lr must be positive"),
        ("image_size", 8, "--image-size must be 32-1024"),
        ("name", "my bundle!", "--name 'my bundle!' must start with"),
    ],
)
def test_bad_settings(tmp_path, field, value, message):
    root = make_tree(tmp_path / "data", {"cats": 2, "dogs": 2})
    with pytest.raises(InputError, match=message.replace("(", r"\(")):
        train(TrainSettings(data_dir=root, out=tmp_path / "b", threads=1, **{field: value}))


def test_stratified_split_is_seeded_and_covers_every_class():
    labels = [0] * 10 + [1] * 2 + [2] * 35
    train_a, val_a = stratified_split(labels, 3, 0.2, seed=7)
    train_b, val_b = stratified_split(labels, 3, 0.2, seed=7)
    _, val_c = stratified_split(labels, 3, 0.2, seed=8)
    assert (train_a, val_a) == (train_b, val_b) and val_a != val_c
    assert sorted(train_a + val_a) == list(range(len(labels)))
    per_class_val = np.bincount([labels[i] for i in val_a], minlength=3).tolist()
    assert per_class_val == [2, 1, 7]  # round(n * 0.2), at least 1, at most n - 1


def test_zh_names_json_tsv_and_errors(tmp_path):
    classes = ["birds", "cats", "dogs"]
    as_json = tmp_path / "zh.json"
    as_json.write_text(json.dumps({"cats": "猫", "dogs": "狗", "birds": "鸟"}, ensure_ascii=False), encoding="utf-8")
    assert load_zh_names(as_json, classes) == (["鸟", "猫", "狗"], [])
    as_tsv = tmp_path / "zh.tsv"
    as_tsv.write_text("cats\t猫\n\ndogs\t狗\n", encoding="utf-8")
    assert load_zh_names(as_tsv, classes) == (["birds", "猫", "狗"], ["birds"])
    typo = tmp_path / "typo.json"
    typo.write_text(json.dumps({"cat": "猫"}), encoding="utf-8")
    with pytest.raises(DatasetError, match="classes the dataset does not have: cat"):
        load_zh_names(typo, classes)
    broken = tmp_path / "broken.json"
    broken.write_text("{not json", encoding="utf-8")
    with pytest.raises(DatasetError, match="is not valid JSON"):
        load_zh_names(broken, classes)
