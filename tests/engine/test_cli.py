"""The CLI on bad inputs, output formats and exit codes (real subprocesses)."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

IMGCLS = [sys.executable, "-m", "imgcls"]


def run(*args, timeout=300):
    return subprocess.run([*IMGCLS, *map(str, args)], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory, dev_dir):
    """The bad-input catalogue of the engine issue, written to disk, with the expected outcome."""
    folder = tmp_path_factory.mktemp("inputs")
    photo = Image.open(dev_dir / "n01530575_brambling.JPEG").convert("RGB")
    cases = {}

    def add(name, data, expected):
        (folder / name).write_bytes(data)
        cases[name] = expected

    buffer = io.BytesIO()
    photo.save(buffer, format="JPEG", quality=92)
    good = buffer.getvalue()
    add("good.jpg", good, "ok")
    add("empty.jpg", b"", "empty_file")
    add("notes.jpg", b"just some text, not an image\n" * 10, "unsupported_media_type")
    add("truncated.jpg", good[: len(good) // 2], "corrupt_image")
    big = io.BytesIO()
    Image.new("1", (20000, 20000)).save(big, format="PNG")  # 400 megapixels in a few KB
    add("huge.png", big.getvalue(), "image_too_large")
    cmyk = io.BytesIO()
    photo.convert("CMYK").save(cmyk, format="JPEG", quality=92)
    add("cmyk.jpg", cmyk.getvalue(), "ok")
    grey16 = io.BytesIO()
    Image.fromarray((np.asarray(photo.convert("L"), np.uint16) * 257)).save(grey16, format="PNG")
    add("grey16.png", grey16.getvalue(), "ok")
    rgba = io.BytesIO()
    photo.convert("RGBA").save(rgba, format="PNG")
    add("rgba.png", rgba.getvalue(), "ok")
    rotated = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6
    photo.rotate(90, expand=True).save(rotated, format="JPEG", quality=92, exif=exif.tobytes())
    add("rotated.jpg", rotated.getvalue(), "ok")
    return folder, cases


def test_predict_bad_inputs_catalogue(lite0_fp32, bad_inputs):
    folder, cases = bad_inputs
    result = run("predict", folder, "--format", "json", "--model", "efficientnet_lite0", "--top-k", "3")
    assert result.returncode == 1, result.stderr  # some files failed, the rest were classified
    assert "Traceback" not in result.stderr
    rows = {row["file"].rsplit("/", 1)[-1]: row for row in json.loads(result.stdout)}
    assert set(rows) == set(cases)
    for name, expected in cases.items():
        row = rows[name]
        if expected == "ok":
            assert "top" in row and len(row["top"]) == 3, name
        else:
            assert row["error"]["code"] == expected, (name, row)
            assert name in result.stderr  # reported, not silently dropped
    # The converted variants keep the photo's answer (brambling, class 10).
    good = rows["good.jpg"]["top"][0]["class_index"]
    assert good == 10
    for name in ("cmyk.jpg", "rgba.png", "rotated.jpg"):
        assert rows[name]["top"][0]["class_index"] == good, name
    assert "rotated per EXIF orientation 6" in rows["rotated.jpg"]["input"]["conversions"]
    assert "converted from CMYK" in rows["cmyk.jpg"]["input"]["conversions"]
    assert "converted from 16-bit greyscale" in rows["grey16.png"]["input"]["conversions"]


def test_predict_csv_and_output_file(lite0_fp32, bad_inputs, tmp_path):
    folder, _ = bad_inputs
    out = tmp_path / "results.csv"
    result = run("predict", folder / "good.jpg", folder / "notes.jpg", "--format", "csv", "--output", out, "--top-k", "2")
    assert result.returncode == 1
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert [r["rank"] for r in rows if r["file"].endswith("good.jpg")] == ["1", "2"]
    assert {r["precision"] for r in rows} == {"int8"}  # auto: the embedded model's INT8, also on error rows
    failed = [r for r in rows if r["file"].endswith("notes.jpg")]
    assert len(failed) == 1 and "not a supported image" in failed[0]["error"]


@pytest.mark.skipif(not hasattr(__import__("os"), "mkfifo") or not Path("/dev/zero").exists(), reason="POSIX only")
def test_pipes_devices_and_broken_links_are_reported_never_read(lite0_fp32, bad_inputs, tmp_path):
    """Opening a named pipe waits for a writer forever and /dev/zero never ends: a folder holding
    such entries under photo names (or a broken link) gets one error row each, not a hang or a gap."""
    import os
    import shutil

    folder = tmp_path / "odd"
    folder.mkdir()
    shutil.copyfile(bad_inputs[0] / "good.jpg", folder / "good.jpg")
    os.mkfifo(folder / "pipe.jpg")
    (folder / "zero.jpg").symlink_to("/dev/zero")
    (folder / "gone.jpg").symlink_to(folder / "moved-away.jpg")
    result = run("predict", folder, "--format", "json", timeout=120)
    assert result.returncode == 1, result.stderr
    rows = {row["file"].rsplit("/", 1)[-1]: row for row in json.loads(result.stdout)}
    assert set(rows) == {"good.jpg", "pipe.jpg", "zero.jpg", "gone.jpg"}
    assert rows["good.jpg"]["top"][0]["class_index"] == 10
    for name in ("pipe.jpg", "zero.jpg"):
        assert rows[name]["error"]["message"].startswith("Not a regular file"), rows[name]
    assert rows["gone.jpg"]["error"]["message"] == "No such file."
    given = run("predict", folder / "pipe.jpg", timeout=120)  # named on the command line
    assert given.returncode == 2 and "Not a regular file" in given.stderr


def test_predict_exit_codes(lite0_fp32, tmp_path, bad_inputs):
    folder, _ = bad_inputs
    assert run("predict", folder / "good.jpg").returncode == 0
    only_bad = run("predict", folder / "empty.jpg")
    assert only_bad.returncode == 2 and "empty" in only_bad.stderr
    missing = run("predict", tmp_path / "does-not-exist.jpg")
    assert missing.returncode == 2 and "No such file" in missing.stderr
    empty_dir = tmp_path / "empty"
    empty_dir.mkdir()
    nothing = run("predict", empty_dir)
    assert nothing.returncode == 2 and "No input files" in nothing.stderr
    unknown = run("predict", folder / "good.jpg", "--model", "nope")
    assert unknown.returncode == 3 and "Known models" in unknown.stderr and "Traceback" not in unknown.stderr


def test_predict_directory_recursive_glob_and_chinese(lite0_fp32, dev_dir, tmp_path):
    nested = tmp_path / "a" / "b"
    nested.mkdir(parents=True)
    (nested / "tench.jpeg").write_bytes((dev_dir / "n01440764_tench.JPEG").read_bytes())
    (tmp_path / "a" / "readme.txt").write_text("not an image")
    result = run("predict", tmp_path / "a", "--format", "json", "--lang", "zh", "--top-k", "1")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert len(rows) == 1 and rows[0]["top"][0]["label"] == "丁鲷"
    globbed = run("predict", str(tmp_path / "**" / "*.jpeg"), "--format", "json")
    assert globbed.returncode == 0 and len(json.loads(globbed.stdout)) == 1


def test_eval_reports_top1_top5(lite0_fp32, dev_dir, tmp_path, dev_labels):
    subset = dict(sorted(dev_labels.items())[:20])
    labels = tmp_path / "labels.csv"
    labels.write_text("file,class_index\n" + "".join(f"{k},{v}\n" for k, v in subset.items()))
    result = run("eval", dev_dir, "--labels", labels, "--json")
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    assert figures["images"] == 20 and figures["failed"] == 0
    assert 0.7 <= figures["top1"] <= figures["top5"] <= 1.0


def test_large_jpegs_decode_at_reduced_scale_unless_no_draft(lite0_fp32, dev_dir, tmp_path):
    """A phone-sized JPEG (here 2048 px on its shorter side) is decoded at 1/4 scale by default,
    with the same answer; --no-draft decodes every pixel."""
    photo = Image.open(dev_dir / "n01530575_brambling.JPEG").convert("RGB")
    scale = 2048 / min(photo.size)
    big = photo.resize((round(photo.width * scale), round(photo.height * scale)), Image.BICUBIC)
    path = tmp_path / "phone.jpg"
    big.save(path, format="JPEG", quality=90)
    answers = {}
    for flag in ("--draft", "--no-draft"):
        result = run("predict", path, "--format", "json", "--model", "efficientnet_lite0", flag)
        assert result.returncode == 0, result.stderr
        (row,) = json.loads(result.stdout)
        answers[flag] = row
    assert "decoded at 1/4 scale (JPEG draft mode)" in answers["--draft"]["input"]["conversions"]
    assert not any("draft" in c for c in answers["--no-draft"]["input"]["conversions"])
    assert answers["--draft"]["top"][0]["class_index"] == answers["--no-draft"]["top"][0]["class_index"] == 10
    default = json.loads(run("predict", path, "--format", "json", "--model", "efficientnet_lite0").stdout)
    assert default[0]["input"]["conversions"] == answers["--draft"]["input"]["conversions"]
