"""ONNX artifacts: export (fp32), static INT8 quantisation, verification, and the on-disk cache.

Every artifact is verified before it may serve, and the figures are kept next to it:

* fp32: max |logit difference| against PyTorch <= 1e-3 and identical top-1 on a verification
  batch run at batch sizes 1 and N (a legacy exporter once produced a silently wrong graph).
* int8: top-1 agreement with fp32 >= 95% on the user's verification images; or, built from a
  calibration table (the embedded model ships one), the same graph and weights as the artifact
  the table was verified with (see ``quantize_int8_from_table``).

Artifacts are cached under ``$IMGCLS_HOME/artifacts/<model>-<weights sha>-<exporter version>/``
(or shipped inside a bundle's ``onnx/`` folder) with a manifest holding each file's SHA-256, so
a corrupt or truncated file is detected at load time and never serves. Loading needs neither
torch nor onnx; building does.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
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
    "Builder",
    "verified_artifacts",
    "auto_precision",
    "build_in_subprocess",
    "export_fp32",
    "quantize_int8",
    "quantize_int8_from_table",
    "write_calibration_table",
    "graph_digest",
    "read_manifest",
]

log = logging.getLogger(__name__)

# Bump when the export or quantisation code changes what it writes: old caches are then ignored.
EXPORTER_VERSION = "x1"
PRECISIONS = ("fp32", "int8")
FP32_MAX_LOGIT_DIFF = 1e-3
INT8_MIN_AGREEMENT = 0.95
CALIBRATION_TABLE_FORMAT = "imgcls-int8-calibration/1"
TABLE_MIN_SYNTHETIC_COSINE = 0.9


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


# (spec, reference, precision): build a missing artifact outside this process; ``reference`` is
# how the user named the model (a catalogue name or a bundle folder). See `build_in_subprocess`.
Builder = Callable[[ModelSpec, str, str], None]


def ensure_artifact(spec: ModelSpec, precision: str = "fp32", *, build: bool = True, builder: Builder | None = None,
                    reference: str | None = None) -> tuple[Path, dict]:
    """Find a verified artifact; build a missing one on first use when the build tools are installed:
    fp32 by export (torch), INT8 only from the model's shipped calibration table, as other INT8
    needs the user's calibration photos (`imgcls models quantize`).

    ``builder`` builds it somewhere else than in this process (the server and the Ray driver use
    `build_in_subprocess`, so they never import torch); it raises ModelError on failure.
    ``reference`` is how the user named the model (a bundle folder, say), for the builder and for
    the commands the messages suggest.
    """
    named = reference or spec.name
    try:
        return find_artifact(spec, precision)
    except ModelError as exc:
        if isinstance(exc, ArtifactVerificationError):
            raise
        if precision == "int8" and spec.calibration_table is None:
            raise ModelError(
                f"No INT8 artifact for {spec.name}. Build one, calibrated on your own photos: "
                f"imgcls models quantize {named} --calibration DIR"
            ) from None
        if not build or not _torch_available():
            how = f"imgcls models {'export' if precision == 'fp32' else 'quantize'} {named}"
            raise ModelError(
                f"{exc.message} Build it with `{how}` (needs the export extra: pip install 'imgcls[export]')."
            ) from None
        if builder is not None:
            builder(spec, named, precision)
        elif precision == "int8":
            log.warning("%s Building it from the model's calibration table now (one-off, ~10 s).", exc.message)
            quantize_int8_from_table(spec, spec.calibration_table)  # exports the fp32 first if need be
        else:
            log.warning("%s Building the fp32 artifact now (one-off, takes ~30 s).", exc.message)
            export_fp32(spec)
        return find_artifact(spec, precision)


def verified_artifacts(spec: ModelSpec, precisions: tuple[str, ...] = PRECISIONS) -> dict[str, tuple[Path, dict]]:
    """The model's verified artifacts by precision (of ``precisions``). One that exists but fails
    its checksum or verification raises ArtifactVerificationError: it is never silently skipped."""
    found = {}
    for precision in precisions:
        try:
            found[precision] = find_artifact(spec, precision)
        except ArtifactVerificationError:
            raise
        except ModelError:
            continue
    return found


def auto_precision(spec: ModelSpec, found: dict[str, tuple[Path, dict]] | None = None, *, build: bool = True,
                   builder: Builder | None = None, reference: str | None = None,
                   runtime: str = "onnxruntime") -> tuple[str, dict[str, tuple[Path, dict]]]:
    """The precision "auto" means, the default everywhere (server, CLI, Python API, Ray): INT8
    when the model has a verified INT8 artifact, or one can be built from its calibration table
    (``build``, ``builder`` and ``reference`` as for `ensure_artifact`; the embedded model ships a table), and,
    on OpenVINO, it is verified there; else fp32. ``found`` is `verified_artifacts`, for a caller
    that keeps every precision (the server); without it only the INT8 is looked up, so a command
    that answers in INT8 does not also hash the fp32 file (18-45 MB). Returns the precision and
    the artifacts found after any build. A failed build is logged and gives fp32.

    Why INT8: on the embedded model it answers like fp32 (88.0 % top-1 for both on the 300 dev
    photos) and the server runs 25-34 % more requests per second in ~75 MB less memory
    (docs/benchmarks.md). Models without a table (ResNet-18, bundles until `imgcls models
    quantize`) stay fp32, as INT8 needs calibration photos.
    """
    if found is None:
        found = verified_artifacts(spec, ("int8",))
    if "int8" not in found:
        if spec.calibration_table is None or not build:
            return "fp32", found
        try:
            ensure_artifact(spec, "int8", builder=builder, reference=reference)  # exports the fp32 first if need be
        except ModelError as exc:
            log.warning("%s %s runs in fp32.", exc.message, spec.name)
            return "fp32", found
        found = verified_artifacts(spec)
        if "int8" not in found:
            return "fp32", found
    if runtime == "openvino":
        from imgcls.runtimes.openvino import require_verification

        try:
            require_verification(spec, "int8", found["int8"])
        except ModelError:
            return "fp32", found
    return "int8", found


def build_in_subprocess(spec: ModelSpec, reference: str, precision: str) -> None:
    """Build a missing artifact with `imgcls models` in a child process, so the caller (the
    server, the Ray driver) never imports torch or the quantiser: fp32 by export, INT8 from the
    model's calibration table. A `Builder`: `ensure_artifact` calls it once it has checked that
    the build tools are installed."""
    if precision == "fp32":
        what, command = "the fp32 ONNX artifact", ["export", reference]
    else:
        what, command = "the INT8 artifact from the model's calibration table", ["quantize", reference]
    print(f"Building {what} for {spec.name} (one-off, up to a minute)...", file=sys.stderr, flush=True)
    done = subprocess.run([sys.executable, "-m", "imgcls", "models", *command], check=False)
    if done.returncode != 0:
        raise ModelError(f"Building {what} for {spec.name} failed (see the messages above).")


def _torch_available() -> bool:
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


def write_calibration_table(path: Path, table: dict) -> None:
    """Write a calibration table: readable JSON, one tensor's range per line."""
    head = json.dumps({k: v for k, v in table.items() if k != "ranges"}, indent=1)[:-2]
    ranges = ",\n".join(f"  {json.dumps(name)}: {json.dumps(pair)}" for name, pair in table["ranges"].items())
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(f'{head},\n "ranges": {{\n{ranges}\n }}\n}}\n', encoding="utf-8")
    os.replace(tmp, path)


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
    _drop_stack_traces(tmp_path)  # before verification: the verified bytes are the installed bytes

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


def _drop_stack_traces(onnx_path: Path) -> None:
    """Remove the Python stack trace the torch exporter records on every node. It holds absolute
    paths of the machine that built the artifact (the checkout, the venv: a user's home folder in a
    bundle they share), and makes the same graph's bytes differ between checkouts. The other
    metadata (module names, scopes) has no paths and stays, for whoever reads the graph."""
    import onnx

    model = onnx.load(str(onnx_path))
    for node in [*model.graph.node, *(node for function in model.functions for node in function.node)]:
        kept = [prop for prop in node.metadata_props if prop.key != "pkg.torch.onnx.stack_trace"]
        del node.metadata_props[:]
        node.metadata_props.extend(kept)
    onnx.save(model, str(onnx_path))


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
    save_table: Path | None = None,
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
        save_table: also write the activation ranges, the options and the verification figures
            to this JSON file, from which ``quantize_int8_from_table`` rebuilds the same artifact
            on another machine without the photos.

    Raises:
        ArtifactVerificationError: top-1 agreement with fp32 below 95%; nothing is cached.
    """
    from onnxruntime.quantization import CalibrationDataReader

    fp32_path, _ = ensure_artifact(spec, "fp32")
    folder = out_dir or fp32_path.parent
    calibration = sorted(calibration)[:max_calibration]
    calib_batch = load_images_as_batch(spec, calibration, draft)

    class _Reader(CalibrationDataReader):
        def __init__(self, batch: np.ndarray):
            self._items = iter([{"input": batch[i : i + 1]} for i in range(len(batch))])

        def get_next(self):
            return next(self._items, None)

    options = {"method": method, "exclude_first_last": exclude_first_last, "activations": activations,
               "reduce_range": reduce_range}
    ranges_file = folder / f".int8-ranges.{os.getpid()}.json"
    try:
        tmp_path, nodes_to_exclude, seconds = _quantize_static(
            fp32_path, folder, _Reader(calib_batch), ranges_file if save_table else None, **options)
        ranges = _read_ort_ranges(ranges_file) if save_table else None
    finally:
        ranges_file.unlink(missing_ok=True)

    verify_batch = calib_batch if not verification else load_images_as_batch(spec, sorted(verification), draft)
    result = _agreement_check(fp32_path, tmp_path, verify_batch, "separate folder" if verification else "calibration folder")
    if not result["passed"]:
        tmp_path.unlink(missing_ok=True)
        raise ArtifactVerificationError(
            f"INT8 artifact for {spec.name} agrees with fp32 on only {result['top1_agreement']:.1%} of "
            f"{len(verify_batch)} images (needs {INT8_MIN_AGREEMENT:.0%}). Nothing was installed; "
            "try more or more typical calibration photos, or --method percentile."
        )
    calibration_record = {"images": int(len(calib_batch)), "method": method, "draft_decoding": bool(draft),
                          "fp32_first_last_layers": bool(exclude_first_last), "fp32_nodes": nodes_to_exclude}
    manifest = _install_int8(spec, folder, tmp_path, result, calibration_record, seconds)
    if save_table is not None:
        write_calibration_table(Path(save_table), {
            "format": CALIBRATION_TABLE_FORMAT,
            "model": spec.name,
            "weights_sha256": spec.weights_sha256,
            "calibration": calibration_record,
            "options": options,
            "int8_graph_sha256": graph_digest(folder / "int8.onnx"),
            "verification": {k: v for k, v in result.items() if k != "passed"},
            "built_with": _quantisation_versions(),
            "ranges": ranges,
        })
    return manifest


def quantize_int8_from_table(spec: ModelSpec, table_path: Path, verification: list[Path] | None = None,
                             *, out_dir: Path | None = None, draft: bool = True) -> dict:
    """Rebuild an INT8 artifact from a calibration table written by ``quantize_int8(save_table=...)``
    (or shipped with the model, ``spec.calibration_table``): no calibration photos needed.

    Verification, in order of strength:
      * ``verification`` photos given: top-1 agreement with fp32 >= 95% on them;
      * otherwise, when the artifact built here has the same graph and weights (``graph_digest``)
        as the one the table was made with, that artifact's verification on real photos carries over;
      * otherwise (other onnx / onnxruntime / exporter versions built another graph) the INT8
        logits must follow the fp32 ones on synthetic images (median cosine >= 0.9). Measured on
        Lite0: 0.978 with the right table; ranges swapped between tensors give -0.16, ranges 3x
        too wide 0.78.

    Raises:
        ModelError: the table is unreadable or belongs to other weights.
        ArtifactVerificationError: the check fails; nothing is cached.
    """
    from onnxruntime.quantization.calibrate import CalibrationMethod, TensorData, TensorsData, save_tensors_data

    table = _read_calibration_table(spec, Path(table_path))
    fp32_path, _ = ensure_artifact(spec, "fp32")
    folder = out_dir or fp32_path.parent
    ranges_file = folder / f".int8-ranges.{os.getpid()}.json"
    data = {name: TensorData(lowest=np.array([lo], np.float32), highest=np.array([hi], np.float32))
            for name, (lo, hi) in table["ranges"].items()}
    save_tensors_data(TensorsData(CalibrationMethod.MinMax, data), ranges_file)
    try:
        tmp_path, nodes_to_exclude, seconds = _quantize_static(fp32_path, folder, None, ranges_file, **table["options"])
    except ModelError:
        raise
    except Exception as exc:  # ONNX Runtime's quantiser meets a tensor the table has no range for, and the like
        (folder / f".int8.{os.getpid()}.onnx.tmp").unlink(missing_ok=True)
        detail = f"no range for tensor {exc.args[0]!r}" if isinstance(exc, KeyError) and exc.args else repr(exc)[:200]
        raise ModelError(f"The calibration table {Path(table_path).name} does not fit {spec.name}'s ONNX graph "
                         f"({detail}). Calibrate on your photos: imgcls models quantize {spec.name} --calibration DIR") from None
    finally:
        ranges_file.unlink(missing_ok=True)

    shipped = table["verification"]
    if verification:
        result = _agreement_check(fp32_path, tmp_path, load_images_as_batch(spec, sorted(verification), draft),
                                  "separate folder")
        failure = (f"agrees with fp32 on only {result['top1_agreement']:.1%} of {result['images']} images "
                   f"(needs {INT8_MIN_AGREEMENT:.0%})")
    elif graph_digest(tmp_path) == table["int8_graph_sha256"]:
        result = {"method": "the same graph and weights (graph SHA-256) as the INT8 artifact verified when the "
                            "calibration table was made: its top-1 agreement with fp32 on the table's verification photos",
                  **{k: shipped[k] for k in ("images", "verification_source", "top1_agreement", "threshold")
                     if k in shipped}, "passed": True}
        if "photos" in table["calibration"]:
            result["verification_source"] = table["calibration"]["photos"]
        failure = ""
    else:
        cosine = _synthetic_logit_cosine(spec, fp32_path, tmp_path)
        result = {"method": "INT8 built from a calibration table under other library versions than the table's "
                            f"({', '.join(f'{k} {v}' for k, v in table.get('built_with', {}).items())}): median "
                            "cosine of its logits with fp32 on 32 synthetic images; verify on your photos with "
                            "--verify DIR for the real agreement",
                  "images": 32, "median_logit_cosine": cosine, "threshold": TABLE_MIN_SYNTHETIC_COSINE,
                  "passed": cosine >= TABLE_MIN_SYNTHETIC_COSINE}
        failure = f"follows fp32 on synthetic images with a median logit cosine of only {cosine:.3f} " \
                  f"(needs {TABLE_MIN_SYNTHETIC_COSINE})"
        if result["passed"]:
            log.warning("The INT8 artifact built from %s differs from the one the table was verified with (other "
                        "library versions); checked against fp32 on synthetic images only (median logit cosine "
                        "%.3f).", Path(table_path).name, cosine)
    if not result["passed"]:
        tmp_path.unlink(missing_ok=True)
        raise ArtifactVerificationError(
            f"INT8 artifact for {spec.name} built from the calibration table {Path(table_path).name} {failure}. "
            f"Nothing was installed; calibrate on your photos: imgcls models quantize {spec.name} --calibration DIR"
        )
    calibration_record = {**table["calibration"], "fp32_nodes": nodes_to_exclude,
                          "table": {"file": Path(table_path).name, "sha256": sha256_file(Path(table_path))}}
    return _install_int8(spec, folder, tmp_path, result, calibration_record, seconds)


def _quantize_static(fp32_path: Path, folder: Path, reader, ranges_file: Path | None, *, method: str,
                     exclude_first_last: bool, activations: str, reduce_range: bool) -> tuple[Path, list[str], float]:
    """ONNX Runtime's static QDQ quantisation of ``fp32_path`` into a temporary file in ``folder``.

    With a ``reader`` it calibrates on the reader's images (and, given ``ranges_file``, keeps the
    ranges there); without one it takes the ranges from ``ranges_file``. Returns (temporary
    file, nodes kept fp32, seconds)."""
    import inspect

    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if ranges_file is not None and "calibration_cache_path" not in inspect.signature(quantize_static).parameters:
        raise ModelError("Calibration tables need onnxruntime >= 1.32 (pip install -U onnxruntime).")
    prepared = folder / f".int8-prep.{os.getpid()}.onnx"
    tmp_path = folder / f".int8.{os.getpid()}.onnx.tmp"
    quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
    nodes_to_exclude = _first_last_nodes(prepared) if exclude_first_last else []
    methods = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
               "entropy": CalibrationMethod.Entropy}
    cache = {} if ranges_file is None else {"calibration_cache_path": str(ranges_file)}
    started = time.perf_counter()
    try:
        quantize_static(
            str(prepared), str(tmp_path), reader,
            quant_format=QuantFormat.QDQ, per_channel=True,
            activation_type=QuantType.QInt8 if activations == "int8" else QuantType.QUInt8,
            weight_type=QuantType.QInt8, reduce_range=reduce_range,
            # A table's ranges are min/max pairs whatever method found them.
            calibrate_method=methods[method] if reader is not None else CalibrationMethod.MinMax,
            nodes_to_exclude=nodes_to_exclude, extra_options={"CalibMovingAverage": False}, **cache,
        )
    finally:
        prepared.unlink(missing_ok=True)
    return tmp_path, nodes_to_exclude, time.perf_counter() - started


def graph_digest(onnx_path: Path) -> str:
    """SHA-256 of an ONNX model without its nodes' metadata and doc strings. The torch exporter
    records each node's Python stack trace, with the absolute paths of the checkout and its venv,
    and the quantiser carries them over: two checkouts built the same graph and weights with
    different bytes (measured: /work/main vs a clone elsewhere, every node differed in that
    metadata only). `export_fp32` now drops those traces, but artifacts exported before keep them."""
    import hashlib

    import onnx

    model = onnx.load(str(onnx_path))
    for node in model.graph.node:
        del node.metadata_props[:]
        node.doc_string = ""
    return hashlib.sha256(model.SerializeToString()).hexdigest()


def _read_ort_ranges(ranges_file: Path) -> dict[str, list[float]]:
    """ONNX Runtime's calibration cache -> {tensor: [low, high]} (float32 values, exact in JSON)."""
    from onnxruntime.quantization.calibrate import load_tensors_data

    data = load_tensors_data(ranges_file).data
    return {name: [float(np.asarray(td.range_value[0]).reshape(-1)[0]), float(np.asarray(td.range_value[1]).reshape(-1)[0])]
            for name, td in sorted(data.items())}


def _read_calibration_table(spec: ModelSpec, path: Path) -> dict:
    try:
        table = json.loads(path.read_text(encoding="utf-8"))
        ok = (table.get("format") == CALIBRATION_TABLE_FORMAT and isinstance(table.get("ranges"), dict)
              and all(isinstance(v, list) and len(v) == 2 for v in table["ranges"].values())
              and isinstance(table.get("options"), dict) and isinstance(table.get("int8_graph_sha256"), str))
    except (OSError, UnicodeDecodeError, ValueError, AttributeError):
        ok = False
    if not ok:
        raise ModelError(f"{path} is not an imgcls calibration table (write one with "
                         "`imgcls models quantize MODEL --calibration DIR --save-table FILE`).")
    if table.get("weights_sha256") != spec.weights_sha256:
        raise ModelError(f"The calibration table {path.name} was made for other weights "
                         f"({table.get('model')}, {str(table.get('weights_sha256'))[:12]}), not {spec.name}'s.")
    return table


def _agreement_check(fp32_path: Path, int8_path: Path, batch: np.ndarray, source: str) -> dict:
    """The INT8 verification record: top-1 agreement with fp32 on real photos."""
    fp32_logits, int8_logits = _both_logits(fp32_path, int8_path, batch)
    agreement = float((fp32_logits.argmax(1) == int8_logits.argmax(1)).mean())
    return {"method": "INT8 top-1 agreement with the fp32 artifact on the user's verification images",
            "images": int(len(batch)), "verification_source": source, "top1_agreement": agreement,
            "threshold": INT8_MIN_AGREEMENT, "passed": agreement >= INT8_MIN_AGREEMENT}


def _synthetic_logit_cosine(spec: ModelSpec, fp32_path: Path, int8_path: Path) -> float:
    fp32_logits, int8_logits = _both_logits(fp32_path, int8_path, synthetic_verification_batch(spec, count=32))
    cosine = (fp32_logits * int8_logits).sum(1) / (
        np.linalg.norm(fp32_logits, axis=1) * np.linalg.norm(int8_logits, axis=1) + 1e-12)
    return round(float(np.median(cosine)), 4)


def _both_logits(fp32_path: Path, int8_path: Path, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both artifacts' logits for ``batch``, 16 images per call."""
    from imgcls.runtimes import run_in_chunks
    from imgcls.runtimes.onnx import OnnxRuntime

    runtimes = OnnxRuntime(fp32_path, threads=2), OnnxRuntime(int8_path, threads=2)
    try:
        return tuple(run_in_chunks(rt, batch) for rt in runtimes)
    finally:
        for rt in runtimes:
            rt.close()


def _quantisation_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for package in ("onnxruntime", "onnx", "torch", "onnxscript", "onnx-ir"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            pass
    return found


def _install_int8(spec: ModelSpec, folder: Path, tmp_path: Path, verification: dict, calibration: dict,
                  seconds: float) -> dict:
    final = folder / "int8.onnx"
    os.replace(tmp_path, final)
    return _write_manifest(folder, "int8", final, spec, {"verification": verification, "calibration": calibration,
                                                         "quantize_seconds": round(seconds, 1)})


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
