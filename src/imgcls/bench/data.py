"""What the benchmark runs on: the shared dev photos, its own model store, and its models.

The benchmark keeps its artifacts in its own store (``<out>/cache`` by default, used as
``IMGCLS_HOME`` for itself and for the servers it starts), so a run never changes the user's
store and a second run reuses the verified artifacts of the first (cold start is measured
"with cached artifacts").

Models:

* ``efficientnet_lite0``: the embedded catalogue model; fp32 exported on first use, INT8
  calibrated on the even-numbered dev photos and verified on the odd-numbered ones (the same
  recipe the test fixtures use).
* ``resnet18-bench``: a bundle with ResNet-18 weights *generated* here (seed 0, torchvision's
  initialisation). Timing does not depend on weight values, and the catalogue's real ResNet-18
  weights are not bundled. Its INT8 artifact goes through the usual agreement gate; see
  ``prepare_resnet_bundle`` for what happens when random weights cannot pass it.

When OpenVINO is installed, each artifact is also verified on it (top-1 agreement with ONNX
Runtime on the odd-numbered dev photos, ``imgcls.runtimes.openvino``); those that pass are
benchmarked on it too.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from imgcls.errors import ImgclsError, InputError

__all__ = ["find_dev_photos", "load_photos", "BenchModel", "prepare_models", "runtime_plan", "RESNET_BUNDLE_NAME",
           "use_store"]

log = logging.getLogger("imgcls.bench")

RESNET_BUNDLE_NAME = "resnet18-bench"
LITE0 = "efficientnet_lite0"


def _candidates() -> list[Path]:
    rel = Path("data") / "imagenet-samples" / "dev"
    roots = []
    if os.environ.get("IMGCLS_SHARED"):
        roots.append(Path(os.environ["IMGCLS_SHARED"]))
    repo = Path(__file__).resolve().parents[3]  # src/imgcls/bench/data.py -> the checkout
    roots += [repo.parent / "shared", Path.cwd().parent / "shared", Path.cwd() / "shared"]
    return [root / rel for root in roots]


def find_dev_photos(explicit: Path | None = None) -> Path:
    """The folder of dev JPEGs: ``explicit``, else ``$IMGCLS_SHARED`` or ``../shared`` beside the checkout.

    Raises:
        InputError: no such folder with JPEGs in it.
    """
    options = [explicit] if explicit else _candidates()
    for folder in options:
        if folder and folder.is_dir() and any(folder.glob("*.JPEG")):
            return folder
    where = explicit or _candidates()[0]
    raise InputError(f"No dev photos (*.JPEG) found at {where}; pass --photos DIR.")


def load_photos(folder: Path) -> list[tuple[str, bytes]]:
    """All dev JPEGs as (file name, bytes), sorted by name."""
    return [(p.name, p.read_bytes()) for p in sorted(folder.glob("*.JPEG"))]


def read_labels(folder: Path) -> dict[str, int]:
    path = folder / "labels.csv"
    if not path.is_file():
        return {}
    with path.open(newline="") as handle:
        return {row["file"]: int(row["class_index"]) for row in csv.DictReader(handle)}


def use_store(cache: Path) -> None:
    """Point this process (and the servers it starts) at the benchmark's own model store."""
    cache.mkdir(parents=True, exist_ok=True)
    os.environ["IMGCLS_HOME"] = str(cache.resolve())


@dataclass
class BenchModel:
    """One benchmarked model: how to name it to ``imgcls serve`` and which artifacts it has."""

    key: str  # short name in tables: "lite0" or "resnet18"
    reference: str  # catalogue name or bundle folder, as given to Classifier / imgcls serve
    title: str
    precisions: dict[str, Path]  # precision -> verified ONNX file
    int8_note: str = ""  # how the INT8 artifact was built, shown in the report
    torch_weights: Path | None = None  # weights for the PyTorch eager reference / the baseline
    openvino: dict[str, dict] = field(default_factory=dict)  # precision -> OpenVINO verification record

    def spec(self):
        from imgcls.catalog import resolve_model

        return resolve_model(self.reference)

    def runtime_label(self, precision: str, runtime: str) -> str:
        """How tables name a runtime: "onnxruntime", or "openvino-bf16" / "openvino-f32"."""
        if runtime == "openvino":
            return f"openvino-{self.openvino[precision]['inference_precision']}"
        return runtime

    def open_runtime(self, precision: str, runtime: str, threads: int, concurrent_calls: int = 1,
                     spin_us: int | None = 0):
        """A runtime on this model's verified artifact: ONNX Runtime (``spin_us``: how long its idle
        pool threads spin, None = ONNX Runtime's default), or OpenVINO when verified on it."""
        if runtime == "openvino":
            from imgcls.runtimes.openvino import OpenVinoRuntime

            return OpenVinoRuntime(self.precisions[precision], threads=threads,
                                   precision=self.openvino[precision]["inference_precision"], streams=concurrent_calls)
        from imgcls.runtimes.onnx import OnnxRuntime

        return OnnxRuntime(self.precisions[precision], threads=threads, spin_us=spin_us)


def runtime_plan(models: list[BenchModel]) -> list[tuple[BenchModel, str, str]]:
    """(model, precision, runtime) for every server the HTTP and breakdown sections measure: each
    artifact on ONNX Runtime, then those verified on OpenVINO."""
    plan = [(model, precision, "onnxruntime") for model in models for precision in model.precisions]
    return plan + [(model, precision, "openvino") for model in models for precision in model.openvino]


def _calibration_split(photos_dir: Path) -> tuple[list[Path], list[Path]]:
    photos = sorted(photos_dir.glob("*.JPEG"))
    return photos[::2], photos[1::2]


def _ensure_int8(spec, photos_dir: Path, out_dir: Path | None = None) -> tuple[Path, str]:
    from imgcls.artifacts import find_artifact, quantize_int8

    try:
        path, manifest = find_artifact(spec, "int8")
    except ImgclsError:
        calib, verify = _calibration_split(photos_dir)
        log.info("quantising %s to INT8 (calibrated on %d dev photos)", spec.name, len(calib))
        quantize_int8(spec, calib, verify, out_dir=out_dir)
        path, manifest = find_artifact(spec, "int8")
    agreement = manifest.get("verification", {}).get("top1_agreement")
    calibration = manifest.get("calibration", {})
    note = f"top-1 agreement with fp32 {agreement:.1%} on {manifest['verification']['images']} held-out dev photos"
    if "fp32_nodes" in calibration:
        note += f"; layers kept fp32: {', '.join(calibration['fp32_nodes']) or 'none'}"
    elif calibration.get("fp32_first_last_layers") is not None:
        note += "; stem conv + classifier kept fp32" if calibration["fp32_first_last_layers"] else "; all layers INT8"
    return path, note


def prepare_lite0(photos_dir: Path) -> BenchModel:
    """The embedded model's verified fp32 + INT8 artifacts (built once per benchmark store)."""
    from imgcls.artifacts import ensure_artifact
    from imgcls.catalog import resolve_model

    spec = resolve_model(LITE0)
    fp32, _ = ensure_artifact(spec, "fp32")
    int8, note = _ensure_int8(spec, photos_dir)
    return BenchModel("lite0", LITE0, "EfficientNet-Lite0", {"fp32": fp32, "int8": int8}, note,
                      torch_weights=spec.weights_path())


def _write_resnet_bundle(folder: Path) -> Path:
    """A ResNet-18 bundle with generated weights (seed 0) and 1000 placeholder class names."""
    import torch

    from imgcls.architectures.resnet import resnet18
    from imgcls.catalog.bundles import write_bundle_config
    from imgcls.catalog.entries import CATALOG

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    network = resnet18(num_classes=1000).eval()
    weights = folder / "weights.pth"
    torch.save(network.state_dict(), weights)
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    write_bundle_config(folder, {
        "name": RESNET_BUNDLE_NAME,
        "title": "ResNet-18 (generated weights, benchmark only)",
        "architecture": "resnet18",
        "base_model": "resnet18",
        "class_names": [f"class {i}" for i in range(1000)],
        "preprocessing": CATALOG["resnet18"].preprocessing.to_dict(),
        "weights": {"file": weights.name, "sha256": digest},
    })
    return weights


def prepare_resnet_bundle(cache: Path, photos_dir: Path) -> BenchModel:
    """The generated-weights ResNet-18 bundle with verified fp32 and INT8 artifacts in its onnx/ folder."""
    from imgcls.artifacts import export_fp32, find_artifact
    from imgcls.catalog import resolve_model

    folder = (cache / "bundles-bench" / RESNET_BUNDLE_NAME).resolve()
    if not (folder / "config.json").is_file():
        _write_resnet_bundle(folder)
    spec = resolve_model(str(folder))
    try:
        fp32, _ = find_artifact(spec, "fp32")
    except ImgclsError:
        log.info("exporting the generated ResNet-18 to ONNX")
        export_fp32(spec, out_dir=folder / "onnx")
        fp32, _ = find_artifact(spec, "fp32")
    int8, note = _ensure_int8(spec, photos_dir, out_dir=folder / "onnx")
    # Random weights put (nearly) every photo in the same class, so the agreement gate passes
    # trivially here: it says nothing about accuracy. Timing does not depend on weight values.
    note += " (generated weights: the gate passes trivially, timing only)"
    return BenchModel("resnet18", str(folder), "ResNet-18 (generated weights)", {"fp32": fp32, "int8": int8},
                      note, torch_weights=folder / "weights.pth")


def prepare_openvino(model: BenchModel, photos_dir: Path) -> None:
    """Record which artifacts may run on OpenVINO (verified once per store, on the held-out photos)."""
    from imgcls.artifacts import find_artifact
    from imgcls.runtimes.openvino import openvino_available, require_verification, verify_openvino

    if not openvino_available():
        return
    spec = model.spec()
    for precision in model.precisions:
        artifact = find_artifact(spec, precision)
        try:
            model.openvino[precision] = require_verification(spec, precision, artifact)
        except ImgclsError:
            try:
                log.info("verifying %s %s on OpenVINO", spec.name, precision)
                model.openvino[precision] = verify_openvino(spec, precision, _calibration_split(photos_dir)[1])
            except ImgclsError as exc:
                log.warning("%s %s will not be benchmarked on OpenVINO: %s", spec.name, precision, exc.message)


def prepare_models(keys: list[str], cache: Path, photos_dir: Path) -> list[BenchModel]:
    """Build (once) and return the benchmarked models named by ``keys`` ("lite0", "resnet18")."""
    use_store(cache)
    makers = {"lite0": lambda: prepare_lite0(photos_dir), "resnet18": lambda: prepare_resnet_bundle(cache, photos_dir)}
    unknown = [k for k in keys if k not in makers]
    if unknown:
        raise InputError(f"Unknown benchmark model(s): {', '.join(unknown)}; use lite0 and/or resnet18.")
    models = [makers[key]() for key in keys]
    for model in models:
        prepare_openvino(model, photos_dir)
    return models
