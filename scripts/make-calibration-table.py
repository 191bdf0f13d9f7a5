"""Remake the embedded model's shipped INT8 calibration table from the shared dev photos.

    .venv/bin/python scripts/make-calibration-table.py [DEV_DIR]

Calibrates on the even-numbered dev photos, verifies on the odd-numbered ones (the split the
benchmark and the tests use), and writes src/imgcls/catalog/calibration/efficientnet_lite0.json
with the digest of the INT8 artifact (graph and weights) and the library versions that made it. Run it after raising
onnxruntime / onnx / onnxscript in constraints.txt, and commit the table with the new pins.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from imgcls.artifacts import quantize_int8, write_calibration_table
from imgcls.catalog import CALIBRATION_TABLES, resolve_model

ROOT = Path(__file__).resolve().parents[1]
dev = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT.parent / "shared" / "data" / "imagenet-samples" / "dev"
photos = sorted(dev.glob("*.JPEG"))
if len(photos) < 100:
    sys.exit(f"Expected the shared dev photos in {dev}; found {len(photos)} JPEGs.")
table_path = CALIBRATION_TABLES / "efficientnet_lite0.json"
spec = resolve_model("efficientnet_lite0")
manifest = quantize_int8(spec, photos[::2], photos[1::2], save_table=table_path)
table = json.loads(table_path.read_text())
table["calibration"]["photos"] = (
    f"ImageNet validation photos: the {len(photos[::2])} even-numbered files of the shared dev set "
    f"(../shared/data/imagenet-samples/dev, one photo per class); verified on the {len(photos[1::2])} odd-numbered ones")
write_calibration_table(table_path, table)
print(f"{table_path}: {len(table['ranges'])} ranges, INT8 graph {table['int8_graph_sha256'][:12]}, "
      f"top-1 agreement {manifest['verification']['top1_agreement']:.1%} on the held-out photos")
