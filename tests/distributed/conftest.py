"""A few hundred images for the Ray tests: the 300 shared dev photos plus generated ones, some corrupt.

The expected answer for every file comes from the single-process engine (`imgcls.engine.Classifier`),
computed once per session.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

MODEL = "efficientnet_lite0"


def _synthetic(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base = rng.uniform(0, 255, 3)
    slope = rng.uniform(-1, 1, (3, 2))
    channels = [np.clip(base[c] + slope[c, 0] * xx + slope[c, 1] * yy + rng.normal(0, 12, (height, width)), 0, 255)
                for c in range(3)]
    return Image.fromarray(np.stack(channels, -1).astype(np.uint8), "RGB")


def build_corpus(root: Path, dev_dir: Path) -> dict:
    """Generated images in a small folder tree, plus a list file naming them and the dev photos.

    Returns {"root", "list_file", "paths" (every listed file), "corrupt" (paths that must fail)}.
    """
    rng = np.random.default_rng(7)
    tree = root / "generated"
    good, corrupt = [], []
    for i in range(48):
        folder = tree / f"batch{i % 3}" / ("nested" if i % 4 == 0 else "")
        folder.mkdir(parents=True, exist_ok=True)
        image = _synthetic(rng, int(rng.integers(40, 900)), int(rng.integers(40, 700)))
        kind = ("jpg", "png", "gray.png", "rgba.png", "bmp", "webp")[i % 6]
        path = folder / f"img{i:03d}.{kind}"
        if kind == "gray.png":
            image = image.convert("L")
        elif kind == "rgba.png":
            image = image.convert("RGBA")
        image.save(path, format={"jpg": "JPEG", "bmp": "BMP", "webp": "WEBP"}.get(kind, "PNG"))
        good.append(path)
    # Names that test path handling: spaces, non-ASCII, and a PNG that calls itself .jpg.
    _synthetic(rng, 300, 200).save(tree / "holiday photo été.jpg", format="JPEG")
    buffer = io.BytesIO()
    _synthetic(rng, 120, 90).save(buffer, format="PNG")
    (tree / "really-a-png.jpg").write_bytes(buffer.getvalue())
    good += [tree / "holiday photo été.jpg", tree / "really-a-png.jpg"]

    bad = tree / "bad"
    bad.mkdir()
    photo = (dev_dir / "n01440764_tench.JPEG").read_bytes()
    (bad / "truncated.jpg").write_bytes(photo[: len(photo) // 3])
    (bad / "header-only.jpg").write_bytes(photo[:600])
    (bad / "notes.jpg").write_text("this is a text file with a .jpg name\n")
    (bad / "empty.jpg").write_bytes(b"")
    (bad / "noise.jpg").write_bytes(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
    (bad / "page.png").write_text("<!doctype html><html><body>not an image</body></html>")
    (bad / "archive.jpeg").write_bytes(b"PK\x03\x04" + bytes(200))
    corrupt = sorted(bad.iterdir())

    dev = sorted(dev_dir.glob("*.JPEG"))
    list_file = root / "images.txt"
    # Dev photos by absolute path, generated ones relative to the list file, one comment line.
    lines = ["# the shared dev photos, then the generated images"] + [str(p) for p in dev]
    lines += [os.path.relpath(p, root) for p in good + corrupt]
    list_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
    paths = [str(p) for p in dev] + [str(p) for p in good + corrupt]
    return {"root": root, "tree": tree, "list_file": list_file, "paths": paths, "corrupt": [str(p) for p in corrupt]}


@pytest.fixture(scope="session")
def corpus(tmp_path_factory, dev_dir) -> dict:
    return build_corpus(tmp_path_factory.mktemp("ray-corpus"), dev_dir)


@pytest.fixture(scope="session")
def reference(corpus, lite0_fp32) -> dict:
    """Single-process answers for every corpus file: path -> Prediction."""
    from imgcls.engine import Classifier

    classifier = Classifier(MODEL, "fp32", batch_size=8)
    return {p.source: p for p in classifier.predict_iter(corpus["paths"], top_k=5)}


@pytest.fixture(scope="session")
def match_reference(reference):
    """``match_reference(rows, paths)``: asserts the rows equal the single-process answers."""
    return lambda rows, paths: assert_rows_match_reference(rows, reference, paths)


def assert_rows_match_reference(rows: list[dict], reference: dict, paths: list[str]) -> None:
    """Every path has exactly one row, equal to the single-process answer."""
    by_path = {row["path"]: row for row in rows}
    assert len(by_path) == len(rows)
    missing = set(paths) - set(by_path)
    assert not missing, sorted(missing)[:5]
    for path in paths:
        row, expected = by_path[path], reference[path]
        assert row["model"] == MODEL and row["precision"] == "fp32", path  # the reference's precision
        if not expected.ok:
            assert row["error"] == expected.error.message, path
            assert row["top_indices"] == [] and row["top_scores"] == []
            continue
        assert row["error"] is None, (path, row["error"])
        assert row["top_indices"] == [t["class_index"] for t in expected.top], path
        assert row["top_labels"] == [t["label"] for t in expected.top], path
        np.testing.assert_allclose(row["top_scores"], [t["score"] for t in expected.top], atol=1e-5, err_msg=path)
