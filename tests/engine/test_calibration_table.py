"""INT8 from a calibration table: the embedded model's shipped table, `--save-table` / `--table`, and
the checks that keep a wrong table from installing an artifact."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pytest

from imgcls.artifacts import ensure_artifact, graph_digest, quantize_int8, quantize_int8_from_table
from imgcls.catalog import resolve_model
from imgcls.errors import ArtifactVerificationError, ModelError
from imgcls.runtimes.onnx import OnnxRuntime

IMGCLS = [sys.executable, "-m", "imgcls"]


@pytest.fixture(scope="module")
def spec():
    return resolve_model("efficientnet_lite0")


@pytest.fixture(scope="module")
def shipped(spec) -> dict:
    assert spec.calibration_table is not None and spec.calibration_table.is_file()
    return json.loads(spec.calibration_table.read_text())


def _same_versions_as(table: dict) -> bool:
    return all(version(package) == built for package, built in table["built_with"].items())


def _table_variant(shipped: dict, path: Path, **changes) -> Path:
    path.write_text(json.dumps({**shipped, **changes}))
    return path


def test_shipped_table_builds_an_int8_that_agrees_with_fp32_on_held_out_photos(spec, shipped, lite0_fp32, lite0_int8,
                                                                                 dev_dir, tmp_path):
    from imgcls.artifacts import load_images_as_batch

    manifest = quantize_int8_from_table(spec, spec.calibration_table, out_dir=tmp_path)
    assert manifest["verification"]["passed"] and (tmp_path / "int8.onnx").is_file()
    held_out = sorted(dev_dir.glob("*.JPEG"))[1::2]
    batch = load_images_as_batch(spec, held_out)
    fp32, int8 = OnnxRuntime(lite0_fp32[0], threads=2), OnnxRuntime(tmp_path / "int8.onnx", threads=2)
    agreement = float(np.mean([
        (fp32.run(batch[i : i + 25]).argmax(1) == int8.run(batch[i : i + 25]).argmax(1)).mean()
        for i in range(0, len(batch), 25)]))
    assert agreement >= 0.95, agreement
    if _same_versions_as(shipped):
        # The table's claim: with its library versions, the build is the graph and weights of the
        # artifact calibrated on the even-numbered dev photos (the test store's, by quantize_int8),
        # whatever folder this checkout is in.
        assert graph_digest(tmp_path / "int8.onnx") == shipped["int8_graph_sha256"] == graph_digest(lite0_int8[0])
        assert manifest["verification"]["method"].startswith("the same graph and weights")
        assert manifest["verification"]["top1_agreement"] == shipped["verification"]["top1_agreement"]


def test_save_table_then_rebuild_gives_the_same_artifact(spec, lite0_fp32, dev_dir, tmp_path):
    photos = sorted(dev_dir.glob("*.JPEG"))
    first, second, table = tmp_path / "a", tmp_path / "b", tmp_path / "mine.json"
    first.mkdir(), second.mkdir()
    calibrated = quantize_int8(spec, photos[:160:2], photos[1:80:2], out_dir=first, save_table=table)
    saved = json.loads(table.read_text())
    assert saved["int8_graph_sha256"] == graph_digest(first / "int8.onnx") and saved["calibration"]["images"] == 80
    assert len(saved["ranges"]) > 50 and all(lo <= hi for lo, hi in saved["ranges"].values())
    rebuilt = quantize_int8_from_table(spec, table, out_dir=second)
    assert (second / "int8.onnx").read_bytes() == (first / "int8.onnx").read_bytes()
    assert rebuilt["verification"]["top1_agreement"] == calibrated["verification"]["top1_agreement"]
    assert rebuilt["calibration"]["table"]["file"] == "mine.json"


def test_other_library_versions_are_checked_against_fp32_on_synthetic_images(spec, shipped, lite0_fp32, tmp_path):
    table = _table_variant(shipped, tmp_path / "other.json", int8_graph_sha256="0" * 64)
    manifest = quantize_int8_from_table(spec, table, out_dir=tmp_path)
    check = manifest["verification"]
    assert check["passed"] and check["images"] == 32 and check["median_logit_cosine"] >= 0.9
    assert "synthetic" in check["method"]


def test_a_wrong_table_installs_nothing_and_says_why(spec, shipped, lite0_fp32, tmp_path):
    names = list(shipped["ranges"])
    rotated = dict(zip(names, [shipped["ranges"][n] for n in names[1:] + names[:1]]))  # each range on another tensor
    wrong = _table_variant(shipped, tmp_path / "rotated.json", ranges=rotated, int8_graph_sha256="0" * 64)
    with pytest.raises(ArtifactVerificationError, match="median logit cosine of only"):
        quantize_int8_from_table(spec, wrong, out_dir=tmp_path)
    partial = _table_variant(shipped, tmp_path / "partial.json", ranges=dict(list(shipped["ranges"].items())[::2]))
    with pytest.raises(ModelError, match="does not fit efficientnet_lite0's ONNX graph .no range for tensor"):
        quantize_int8_from_table(spec, partial, out_dir=tmp_path)
    other = _table_variant(shipped, tmp_path / "other-weights.json", weights_sha256="ab" * 32)
    with pytest.raises(ModelError, match="made for other weights"):
        quantize_int8_from_table(spec, other, out_dir=tmp_path)
    junk = tmp_path / "junk.json"
    junk.write_text('{"ranges": 3}')
    with pytest.raises(ModelError, match="is not an imgcls calibration table"):
        quantize_int8_from_table(spec, junk, out_dir=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".json")) == []  # no artifact, no temp file


def test_int8_for_a_model_without_a_table_explains_how_to_build_it(spec, tmp_path, monkeypatch):
    monkeypatch.setenv("IMGCLS_HOME", str(tmp_path / "empty-home"))
    with pytest.raises(ModelError, match="imgcls models quantize efficientnet_lite0 --calibration DIR"):
        ensure_artifact(dataclasses.replace(spec, calibration_table=None), "int8")


def test_every_command_defaults_to_the_int8_built_from_the_table(fp32_only_home, dev_dir, dev_labels, tmp_path,
                                                                  monkeypatch):
    """`auto`, the server's default, is every command's: a model without a table stays fp32 without
    trying a build; the first `predict` builds the INT8 from the shipped table and answers with it;
    `eval` and the Python API then use it; `--precision fp32` still answers fp32."""
    from imgcls.engine import Classifier

    home = fp32_only_home
    photo = dev_dir / "n01440764_tench.JPEG"
    monkeypatch.setenv("IMGCLS_HOME", str(home))
    without_table = Classifier(dataclasses.replace(resolve_model("efficientnet_lite0"), calibration_table=None))
    assert without_table.precision == "fp32" and without_table.predict(photo)[0].top[0]["class_index"] == 0
    assert not list(home.glob("artifacts/*/int8.*"))

    def imgcls(*args) -> subprocess.CompletedProcess:
        result = subprocess.run([*IMGCLS, *map(str, args)], capture_output=True, text=True, timeout=300,
                                env={**os.environ, "IMGCLS_HOME": str(home), "COLUMNS": "200"})
        assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
        return result

    first = imgcls("predict", photo)
    assert "calibration table" in first.stderr and "efficientnet_lite0 (int8)" in first.stdout
    assert "tench" in first.stdout
    manifest = json.loads(next(home.glob("artifacts/*/int8.json")).read_text())
    assert manifest["calibration"]["table"]["file"] == "efficientnet_lite0.json"

    subset = dict(sorted(dev_labels.items())[:16])
    labels = tmp_path / "labels.csv"
    labels.write_text("file,class_index\n" + "".join(f"{k},{v}\n" for k, v in subset.items()))
    assert json.loads(imgcls("eval", dev_dir, "--labels", labels, "--json").stdout)["precision"] == "int8"
    fp32 = json.loads(imgcls("eval", dev_dir, "--labels", labels, "--json", "--precision", "fp32").stdout)
    assert fp32["precision"] == "fp32" and fp32["images"] == 16
    assert Classifier("efficientnet_lite0").precision == "int8"


def test_quantize_cli_rejects_contradictory_options(tmp_path, dev_dir):
    both = subprocess.run([*IMGCLS, "models", "quantize", "efficientnet_lite0", "--calibration", dev_dir,
                           "--table", Path(resolve_model("efficientnet_lite0").calibration_table)],
                          capture_output=True, text=True, timeout=120)
    assert both.returncode == 2 and "not both" in both.stderr
    lonely = subprocess.run([*IMGCLS, "models", "quantize", "efficientnet_lite0", "--save-table", tmp_path / "t.json"],
                            capture_output=True, text=True, timeout=120)
    assert lonely.returncode == 2 and "--save-table needs --calibration" in lonely.stderr
