"""ONNX artifacts: export (fp32), static INT8 quantisation, verification, and the on-disk cache.

Every artifact is verified before it may serve, and the figures are kept next to it:

* fp32: max |logit difference| against PyTorch <= 1e-3 and identical top-1 on a verification
  batch run at batch sizes 1 and N (a legacy exporter once produced a silently wrong graph).
* int8: top-1 agreement with fp32 >= 95% on the user's verification images.

Artifacts are cached under ``$IMGCLS_HOME/artifacts/<model>-<weights sha>-<exporter version>/``
(or shipped inside a bundle's ``onnx/`` folder) with a manifest holding each file's SHA-256, so
a corrupt or truncated file is detected at load time and never serves. Loading needs neither
torch nor onnx; building does.
"""

from __future__ import annotations

import json
import logging
import os
import time
import warnings
from pathlib import Path

import numpy as np

from imgcls.catalog import ModelSpec
from imgcls.catalog.store import sha256_file, store_home
from imgcls.errors import ArtifactVerificationError, ModelError

__all__ = [
    "EXPORTER_VERSION",
    "PRECISIONS",
    "FP32_MAX_LOGIT_DIFF",
    "INT8_MIN_AGREEMENT",
    "artifact_dir",
    "find_artifact",
    "ensure_artifact",
    "export_fp32",
    "quantize_int8",
    "read_manifest",
]

log = logging.getLogger(__name__)

# Bump when the export or quantisation code changes what it writes: old caches are then ignored.
EXPORTER_VERSION = "x1"
PRECISIONS = ("fp32", "int8")
FP32_MAX_LOGIT_DIFF = 1e-3
INT8_MIN_AGREEMENT = 0.95


def artifact_dir(spec: ModelSpec) -> Path:
    return store_home() / "artifacts" / f"{spec.name}-{spec.weights_sha256[:16]}-{EXPORTER_VERSION}"


def _search_dirs(spec: ModelSpec) -> list[Path]:
    dirs = []
    if spec.bundle_dir is not None:
        dirs.append(spec.bundle_dir / "onnx")
    dirs.append(artifact_dir(spec))
    return dirs


# Keys find_artifact relies on, with their types. A manifest without them is unreadable, not a crash.
_MANIFEST_FIELDS = {"file": str, "bytes": int, "sha256": str, "weights_sha256": str, "exporter": str, "verification": dict}


def read_manifest(folder: Path, precision: str) -> dict | None:
    """The manifest of an artifact folder, or None when it is missing or unreadable.

    Unreadable includes valid JSON of the wrong shape (a list, missing keys, a ``file`` that is a
    path rather than a name next to the manifest): such an artifact is treated as absent, so it
    is rebuilt (fp32) or reported missing, never loaded and never a traceback.
    """
    try:
        manifest = json.loads((folder / f"{precision}.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    if not isinstance(manifest, dict):
        return None
    for key, kind in _MANIFEST_FIELDS.items():
        if not isinstance(manifest.get(key), kind) or isinstance(manifest.get(key), bool):
            return None
    if Path(manifest["file"]).name != manifest["file"] or manifest["file"] in ("", ".", ".."):
        return None
    return manifest


def find_artifact(spec: ModelSpec, precision: str) -> tuple[Path, dict]:
    """Return (onnx path, manifest) of a verified artifact, checking its checksum.

    Raises:
        ModelError: no artifact of that precision exists yet.
        ArtifactVerificationError: one exists but is corrupt or failed verification.
    """
    if precision not in PRECISIONS:
        raise ModelError(f"Unknown precision '{precision}'; use fp32 or int8.")
    problem = None
    for folder in _search_dirs(spec):
        manifest = read_manifest(folder, precision)
        if manifest is None:
            continue
        if manifest.get("weights_sha256") != spec.weights_sha256 or manifest.get("exporter") != EXPORTER_VERSION:
            continue
        path = folder / manifest["file"]
        if not path.is_file():
            problem = f"{precision} artifact for {spec.name} is missing its ONNX file"
            continue
        if not manifest.get("verification", {}).get("passed"):
            problem = f"{precision} artifact for {spec.name} did not pass verification"
            continue
        if path.stat().st_size != manifest["bytes"] or sha256_file(path) != manifest["sha256"]:
            problem = f"{precision} artifact for {spec.name} is corrupt or truncated (checksum mismatch)"
            continue
        return path, manifest
    if problem:
        raise ArtifactVerificationError(problem + "; rebuild it with `imgcls models export` / `quantize`.")
    raise ModelError(f"No {precision} ONNX artifact for {spec.name} yet.")


def ensure_artifact(spec: ModelSpec, precision: str = "fp32", *, build: bool = True) -> tuple[Path, dict]:
    """Find a verified artifact; build the fp32 one on first use when torch is available.

    INT8 needs the user's calibration photos, so it is never built implicitly.
    """
    try:
        return find_artifact(spec, precision)
    except ModelError as exc:
        if precision == "int8":
            if isinstance(exc, ArtifactVerificationError):
                raise
            raise ModelError(
                f"No INT8 artifact for {spec.name}. Build one, calibrated on your own photos: "
                f"imgcls models quantize {spec.name} --calibration DIR"
            ) from None
        if not build or not _torch_available():
            raise ModelError(
                f"{exc.message} Build it with `imgcls models export {spec.name}` "
                "(needs the export extra: pip install 'imgcls[export]')."
            ) from None
        log.warning("%s Building the fp32 artifact now (one-off, takes ~30 s).", exc.message)
        export_fp32(spec)
        return find_artifact(spec, precision)


def _torch_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("torch") is not None and importlib.util.find_spec("onnxscript") is not None


def _write_manifest(folder: Path, precision: str, onnx_path: Path, spec: ModelSpec, extra: dict) -> dict:
    manifest = {
        "model": spec.name,
        "precision": precision,
        "file": onnx_path.name,
        "bytes": onnx_path.stat().st_size,
        "sha256": sha256_file(onnx_path),
        "weights_sha256": spec.weights_sha256,
        "exporter": EXPORTER_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **extra,
    }
    tmp = folder / f".{precision}.{os.getpid()}.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, folder / f"{precision}.json")
    return manifest


def synthetic_verification_batch(spec: ModelSpec, count: int = 8, seed: int = 0) -> np.ndarray:
    """Seeded, image-like inputs (smooth colour fields + noise), already normalised."""
    rng = np.random.default_rng(seed)
    size = spec.preprocessing.crop
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    images = []
    for _ in range(count):
        a, b, c = rng.uniform(-1, 1, 3), rng.uniform(-1, 1, 3), rng.uniform(0, 1, 3)
        img = c[:, None, None] + a[:, None, None] * xx + b[:, None, None] * yy
        img = img + rng.normal(0, 0.08, (3, size, size))
        img = np.clip(img, 0, 1).astype(np.float32)
        mean = np.asarray(spec.preprocessing.mean, np.float32)[:, None, None]
        std = np.asarray(spec.preprocessing.std, np.float32)[:, None, None]
        images.append((img - mean) / std)
    return np.stack(images).astype(np.float32)


def load_images_as_batch(spec: ModelSpec, paths: list[Path], draft: bool = True) -> np.ndarray:
    """The model's input for each readable photo, decoded as the server decodes by default
    (``imgcls.preprocess.model_input``: with ``draft``, phone photos calibrate ~3x faster)."""
    from imgcls.preprocess import model_input

    arrays = []
    for path in paths:
        try:
            arrays.append(model_input(path.read_bytes(), spec.preprocessing, draft))
        except Exception as exc:  # an unreadable calibration photo is skipped, not fatal
            log.warning("skipping %s: %s", path.name, getattr(exc, "message", exc))
    if not arrays:
        raise ModelError("None of the given images could be read.")
    return np.stack(arrays)


def export_fp32(spec: ModelSpec, out_dir: Path | None = None, verify_images: np.ndarray | None = None) -> dict:
    """Export ``spec`` to ONNX (dynamo exporter, dynamic batch), verify it against PyTorch, cache it.

    Raises:
        ArtifactVerificationError: the exported graph disagrees with PyTorch; nothing is cached.
    """
    import torch

    from imgcls.runtimes.onnx import OnnxRuntime
    from imgcls.runtimes.torch_ref import load_torch_model

    folder = out_dir or artifact_dir(spec)
    folder.mkdir(parents=True, exist_ok=True)
    model = load_torch_model(spec)
    size = spec.preprocessing.crop
    example = torch.zeros(2, 3, size, size)
    tmp_path = folder / f".fp32.{os.getpid()}.onnx.tmp"
    batch = torch.export.Dim("batch", min=1, max=4096)
    logging.getLogger("torch").setLevel(logging.ERROR)
    started = time.perf_counter()
    # The dynamo exporter: the legacy one with dynamic_axes silently produced a wrong Lite0 graph.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # exporter-internal deprecation noise, not the user's concern
        torch.onnx.export(
            model, (example,), str(tmp_path), dynamo=True, external_data=False,
            input_names=["input"], output_names=["logits"], dynamic_shapes=({0: batch},), verbose=False,
        )
    export_seconds = time.perf_counter() - started

    batch_inputs = synthetic_verification_batch(spec) if verify_images is None else verify_images
    with torch.inference_mode():
        reference = model(torch.from_numpy(batch_inputs)).numpy()
    runtime = OnnxRuntime(tmp_path, threads=2)
    onnx_out = runtime.run(batch_inputs)
    single = np.concatenate([runtime.run(batch_inputs[i : i + 1]) for i in range(min(2, len(batch_inputs)))])
    runtime.close()
    max_diff = float(max(np.abs(onnx_out - reference).max(), np.abs(single - reference[: len(single)]).max()))
    top1_equal = bool((onnx_out.argmax(1) == reference.argmax(1)).all())
    verification = {
        "method": "fp32 ONNX vs PyTorch logits on a verification batch (batch N and batch 1)",
        "images": int(len(batch_inputs)),
        "max_abs_logit_diff": max_diff,
        "threshold": FP32_MAX_LOGIT_DIFF,
        "top1_identical": top1_equal,
        "passed": bool(max_diff <= FP32_MAX_LOGIT_DIFF and top1_equal),
    }
    if not verification["passed"]:
        tmp_path.unlink(missing_ok=True)
        raise ArtifactVerificationError(
            f"Exported fp32 graph for {spec.name} does not match PyTorch: max |logit diff| {max_diff:.2e} "
            f"(limit {FP32_MAX_LOGIT_DIFF:.0e}), top-1 identical: {top1_equal}. Nothing was installed."
        )
    final = folder / "fp32.onnx"
    os.replace(tmp_path, final)
    return _write_manifest(folder, "fp32", final, spec, {"verification": verification,
                                                        "export_seconds": round(export_seconds, 1)})


def quantize_int8(
    spec: ModelSpec,
    calibration: list[Path],
    verification: list[Path] | None = None,
    *,
    method: str = "minmax",
    max_calibration: int = 300,
    exclude_first_last: bool = True,
    activations: str = "uint8",
    reduce_range: bool = True,
    out_dir: Path | None = None,
    draft: bool = True,
) -> dict:
    """Static INT8 (QDQ, per-channel weights) calibrated on the user's photos, verified against fp32.

    Args:
        calibration: image files used to calibrate activation ranges.
        verification: image files for the agreement check (default: the calibration files).
        method: 'minmax', 'percentile' or 'entropy'.
        exclude_first_last: keep the stem convolution and the classifier in fp32 (they carry the
            most quantisation error for the least compute); a stem followed by a pooling layer
            is quantised anyway, for speed (see ``_first_last_nodes``).
        draft: decode large JPEGs at reduced scale, as the server does by default (see
            ``load_images_as_batch``).
        activations, reduce_range: uint8 activations with 7-bit weights by default. On AVX2
            CPUs without VNNI the u8s8 kernels can saturate with full-range weights; measured on
            the dev photos: 98% agreement with reduce_range vs 94% with full-range s8s8.

    Raises:
        ArtifactVerificationError: top-1 agreement with fp32 below 95%; nothing is cached.
    """
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from imgcls.runtimes.onnx import OnnxRuntime

    fp32_path, _ = ensure_artifact(spec, "fp32")
    folder = out_dir or fp32_path.parent
    calibration = sorted(calibration)[:max_calibration]
    calib_batch = load_images_as_batch(spec, calibration, draft)

    class _Reader(CalibrationDataReader):
        def __init__(self, batch: np.ndarray):
            self._items = iter([{"input": batch[i : i + 1]} for i in range(len(batch))])

        def get_next(self):
            return next(self._items, None)

    prepared = folder / f".int8-prep.{os.getpid()}.onnx"
    tmp_path = folder / f".int8.{os.getpid()}.onnx.tmp"
    quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
    nodes_to_exclude = _first_last_nodes(prepared) if exclude_first_last else []
    methods = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
               "entropy": CalibrationMethod.Entropy}
    started = time.perf_counter()
    quantize_static(
        str(prepared), str(tmp_path), _Reader(calib_batch),
        quant_format=QuantFormat.QDQ, per_channel=True,
        activation_type=QuantType.QInt8 if activations == "int8" else QuantType.QUInt8,
        weight_type=QuantType.QInt8, reduce_range=reduce_range,
        calibrate_method=methods[method], nodes_to_exclude=nodes_to_exclude,
        extra_options={"CalibMovingAverage": False},
    )
    quant_seconds = time.perf_counter() - started
    prepared.unlink(missing_ok=True)

    verify_batch = calib_batch if not verification else load_images_as_batch(spec, sorted(verification), draft)
    fp32_rt, int8_rt = OnnxRuntime(fp32_path, threads=2), OnnxRuntime(tmp_path, threads=2)
    fp32_top1 = np.concatenate([fp32_rt.run(verify_batch[i : i + 16]).argmax(1) for i in range(0, len(verify_batch), 16)])
    int8_top1 = np.concatenate([int8_rt.run(verify_batch[i : i + 16]).argmax(1) for i in range(0, len(verify_batch), 16)])
    fp32_rt.close(), int8_rt.close()
    agreement = float((fp32_top1 == int8_top1).mean())
    result = {
        "method": "INT8 top-1 agreement with the fp32 artifact on the user's verification images",
        "images": int(len(verify_batch)),
        "verification_source": "separate folder" if verification else "calibration folder",
        "top1_agreement": agreement,
        "threshold": INT8_MIN_AGREEMENT,
        "passed": agreement >= INT8_MIN_AGREEMENT,
    }
    if not result["passed"]:
        tmp_path.unlink(missing_ok=True)
        raise ArtifactVerificationError(
            f"INT8 artifact for {spec.name} agrees with fp32 on only {agreement:.1%} of "
            f"{len(verify_batch)} images (needs {INT8_MIN_AGREEMENT:.0%}). Nothing was installed; "
            "try more or more typical calibration photos, or --method percentile."
        )
    final = folder / "int8.onnx"
    os.replace(tmp_path, final)
    return _write_manifest(folder, "int8", final, spec, {
        "verification": result,
        "calibration": {"images": int(len(calib_batch)), "method": method, "draft_decoding": bool(draft),
                        "fp32_first_last_layers": bool(exclude_first_last), "fp32_nodes": nodes_to_exclude},
        "quantize_seconds": round(quant_seconds, 1),
    })


def _first_last_nodes(onnx_path: Path) -> list[str]:
    """Names of the first Conv and the last Gemm/MatMul in the graph.

    The stem Conv stays out of the list when its output reaches a pooling layer (ResNet's
    Conv -> Relu -> MaxPool): in ONNX Runtime an fp32 stem leaves that MaxPool on the slow NCHW
    path instead of the uint8 NHWC kernel. Measured on ResNet-18 (1 thread, batch 1): 7 ms of a
    39 ms INT8 call went to that MaxPool, 30.5 ms with the stem quantised. EfficientNet-Lite0 has
    no pool there; its fp32 stem costs nothing measurable and keeps top-1 agreement at 98%
    instead of 96.7% on the dev photos (docs/benchmarks.md).
    """
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    convs = [n for n in graph.node if n.op_type == "Conv"]
    heads = [n.name for n in graph.node if n.op_type in ("Gemm", "MatMul")]
    stem = [convs[0].name] if convs and not _feeds_pool(graph, convs[0]) else []
    return [name for name in (stem + heads[-1:]) if name]


def _feeds_pool(graph, node) -> bool:
    """Whether ``node``'s output reaches a MaxPool/AveragePool through element-wise ops only."""
    consumers: dict[str, list] = {}
    for candidate in graph.node:
        for name in candidate.input:
            consumers.setdefault(name, []).append(candidate)
    frontier = list(node.output)
    for _ in range(4):  # Conv -> (BatchNormalization) -> Relu/Clip -> pool
        following = [c for name in frontier for c in consumers.get(name, [])]
        if any(c.op_type in ("MaxPool", "AveragePool") for c in following):
            return True
        following = [c for c in following if c.op_type in ("Relu", "Clip", "BatchNormalization", "LeakyRelu",
                                                           "HardSwish", "Sigmoid", "Mul")]
        if not following:
            return False
        frontier = [name for c in following for name in c.output]
    return False
