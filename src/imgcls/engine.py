"""The Classifier: decode -> preprocess -> batch -> run -> softmax -> top-k, on ONNX Runtime.

This is the one code path the CLI, the HTTP server, Ray workers and the video timeline share.
It never imports torch when verified artifacts exist (the fp32 artifact is built on first use
when they do not and the export extra is installed).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence, Union

import numpy as np
from PIL import Image

from imgcls.artifacts import PRECISIONS, auto_precision, ensure_artifact
from imgcls.catalog import ModelSpec, default_model_name, resolve_model
from imgcls.errors import ImgclsError, InputError
from imgcls.preprocess import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_PIXELS,
    DecodedImage,
    InputReport,
    decode_image,
    preprocess,
)

__all__ = ["Classifier", "Prediction", "softmax", "top_k", "ranked", "ImageInput"]

ImageInput = Union[str, Path, bytes, Image.Image]


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted, dtype=np.float64)
    return (exp / exp.sum(axis=-1, keepdims=True)).astype(np.float32)


SCORE_DECIMALS = 6  # every output (CLI, HTTP, Ray, video) prints scores at this precision


def top_k(probabilities: np.ndarray, k: int) -> list[tuple[int, float]]:
    k = max(1, min(k, probabilities.shape[-1]))
    idx = np.argpartition(-probabilities, k - 1)[:k]
    idx = idx[np.argsort(-probabilities[idx], kind="stable")]
    return [(int(i), float(probabilities[i])) for i in idx]


def ranked(probabilities: np.ndarray, k: int) -> list[tuple[int, float]]:
    """``top_k`` with scores rounded the way every imgcls output reports them."""
    return [(index, round(score, SCORE_DECIMALS)) for index, score in top_k(probabilities, k)]


@dataclass
class Prediction:
    """One input's answer, or its error. ``top`` is [(class_index, label, score)] best first."""

    source: str
    model: str
    top: list[dict] = field(default_factory=list)
    input: dict | None = None
    error: ImgclsError | None = None
    timing_ms: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self, file_key: str = "file") -> dict:
        data = {file_key: self.source, "model": self.model}
        if self.error is not None:
            data["error"] = self.error.to_dict()
        else:
            data["top"] = self.top
            data["input"] = self.input
        return data


class Classifier:
    """Classify images with one model at one precision.

    Example:
        >>> clf = Classifier()                      # default model, precision "auto"
        >>> clf.predict("cat.jpg")[0].top[0]        # doctest: +SKIP
        {'class_index': 281, 'label': 'tabby', 'score': 0.83}

    Args:
        model: catalogue name, imported bundle name, bundle folder or a resolved ModelSpec;
            None = default model.
        precision: 'auto' (the default, as for the server: INT8 where the model has a verified
            INT8 artifact or a calibration table to build one, else fp32; see
            `imgcls.artifacts.auto_precision`), 'fp32' or 'int8'. With ``build_missing`` a
            missing artifact is built on first use: fp32 by export, INT8 from the model's
            calibration table (the embedded model ships one; other models need
            `imgcls models quantize`). ``.precision`` then says which one answers.
        threads: ONNX Runtime intra-op threads (default: all cores available).
        solo_threads: threads for ``probabilities(batch, solo=True)``, a call made while nothing
            else computes (the server's lone request); more than ``threads`` opens a second session.
        batch_size: images per model call.
        max_pixels / max_bytes: decoding caps.
        draft: decode large JPEGs (shorter side >= 4x the model's resize, e.g. >= 1024 px) at
            1/2, 1/4 or 1/8 scale, never below 2x the resize: 1.9x faster at 1024 px and 3.4x at
            2048 px, with the same top-1 accuracy on the dev photos at those sizes (see
            docs/benchmarks.md). False decodes every pixel, exactly like torchvision's pipeline.
        artifact: an already verified (onnx path, manifest) for this model and precision, so a
            caller that verified it (the server, at start-up) does not hash the file again.
        runtime: "onnxruntime", or "openvino" once the artifact has an OpenVINO verification
            record (`imgcls models verify-openvino`); see imgcls.runtimes.openvino.
        concurrent_calls: model calls that may run at once from different threads (the server's
            model workers); OpenVINO needs to know, ONNX Runtime sessions run them as they come.
    """

    def __init__(
        self,
        model: str | Path | ModelSpec | None = None,
        precision: str = "auto",
        *,
        threads: int | None = None,
        solo_threads: int | None = None,
        batch_size: int = 8,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        max_bytes: int = DEFAULT_MAX_BYTES,
        draft: bool = True,
        build_missing: bool = True,
        artifact: tuple[Path, dict] | None = None,
        runtime: str = "onnxruntime",
        concurrent_calls: int = 1,
    ):
        self.spec: ModelSpec = model if isinstance(model, ModelSpec) else resolve_model(model or default_model_name())
        how = {"build": build_missing,  # messages name the model as the user did (a bundle folder, say)
               "reference": None if isinstance(model, ModelSpec) or model is None else str(model)}
        if precision == "auto":
            precision, found = auto_precision(self.spec, runtime=runtime, **how)
            artifact = artifact or found.get(precision)
        elif precision not in PRECISIONS:
            raise InputError(f"Unknown precision '{precision}': use auto, fp32 or int8.")
        self.precision = precision
        self.batch_size = max(1, batch_size)
        self.max_pixels, self.max_bytes, self.draft = max_pixels, max_bytes, draft
        self.artifact_path, self.manifest = artifact or ensure_artifact(self.spec, precision, **how)
        self.runtime = _open_runtime(runtime, self.spec, precision, (self.artifact_path, self.manifest),
                                     threads, solo_threads, concurrent_calls)

    @property
    def name(self) -> str:
        return self.spec.name

    def labels(self, lang: str = "en") -> tuple[str, ...]:
        return self.spec.labels(lang)

    # -- the stages, exposed so the server can run them on different threads ----------------
    def decode(self, data: bytes) -> DecodedImage:
        return decode_image(data, max_bytes=self.max_bytes, max_pixels=self.max_pixels,
                            draft_size=self.spec.preprocessing.resize if self.draft else None)

    def to_array(self, image: Image.Image) -> np.ndarray:
        return preprocess(image, self.spec.preprocessing)

    def probabilities(self, batch: np.ndarray, solo: bool = False) -> np.ndarray:
        """float32 NCHW -> softmax probabilities, in model calls of at most ``batch_size``.
        ``solo``: the caller knows nothing else is computing, so the call may use ``solo_threads``."""
        outputs = [self.runtime.run(batch[i : i + self.batch_size], solo=solo)
                   for i in range(0, len(batch), self.batch_size)]
        return softmax(np.concatenate(outputs) if outputs else np.zeros((0, self.spec.num_classes), np.float32))

    def format_top(self, probabilities: np.ndarray, k: int = 5, lang: str = "en") -> list[dict]:
        names = self.labels(lang)
        return [{"class_index": i, "label": names[i], "score": p} for i, p in ranked(probabilities, k)]

    def warm_up(self, batch_sizes: Iterable[int] = (1,)) -> None:
        """Run each batch size once so the first real calls do not pay for allocation (a solo
        session, if any, at batch 1: what a lone request sends it)."""
        size = self.spec.preprocessing.crop
        for n in sorted(set(batch_sizes)):
            self.runtime.run(np.zeros((n, 3, size, size), np.float32))
        if self.runtime.solo_threads:
            self.runtime.run(np.zeros((1, 3, size, size), np.float32), solo=True)

    # -- the convenience API ---------------------------------------------------------------
    def predict(self, inputs: ImageInput | Sequence[ImageInput], top_k: int = 5, lang: str = "en") -> list[Prediction]:
        """Classify one input or a list of inputs (paths, bytes or PIL images).

        Unreadable inputs get a Prediction with ``error`` set; they never abort the others.
        """
        items = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
        return list(self.predict_iter(items, top_k=top_k, lang=lang))

    def predict_iter(self, items: Iterable[ImageInput], top_k: int = 5, lang: str = "en") -> Iterable[Prediction]:
        pending: list[tuple[Prediction, np.ndarray]] = []
        for item in items:
            prediction, array = self._prepare(item)
            if array is None:
                yield prediction
                continue
            pending.append((prediction, array))
            if len(pending) >= self.batch_size:
                yield from self._finish(pending, top_k, lang)
                pending = []
        if pending:
            yield from self._finish(pending, top_k, lang)

    def _prepare(self, item: ImageInput) -> tuple[Prediction, np.ndarray | None]:
        source = _describe(item)
        prediction = Prediction(source=source, model=self.name)
        started = time.perf_counter()
        try:
            if isinstance(item, Image.Image):
                decoded = _from_pil(item)
            else:
                data = item if isinstance(item, (bytes, bytearray)) else _read_file(Path(item), self.max_bytes)
                decoded = self.decode(bytes(data))
            array = self.to_array(decoded.image)
        except ImgclsError as exc:
            prediction.error = exc
            return prediction, None
        prediction.input = decoded.report.to_dict()
        prediction.timing_ms["decode_preprocess"] = round((time.perf_counter() - started) * 1000, 2)
        return prediction, array

    def _finish(self, pending: list[tuple[Prediction, np.ndarray]], k: int, lang: str) -> list[Prediction]:
        started = time.perf_counter()
        probabilities = self.probabilities(np.stack([array for _, array in pending]))
        per_image = (time.perf_counter() - started) * 1000 / len(pending)
        for (prediction, _), probs in zip(pending, probabilities):
            prediction.top = self.format_top(probs, k, lang)
            prediction.timing_ms["model"] = round(per_image, 2)
        return [prediction for prediction, _ in pending]

    def close(self) -> None:
        self.runtime.close()


def _open_runtime(name: str, spec: ModelSpec, precision: str, artifact: tuple[Path, dict],
                  threads: int | None, solo_threads: int | None, concurrent_calls: int):
    if name == "onnxruntime":
        from imgcls.runtimes.onnx import OnnxRuntime

        return OnnxRuntime(artifact[0], threads=threads, solo_threads=solo_threads)
    if name == "openvino":
        from imgcls.runtimes.openvino import OpenVinoRuntime, require_verification

        record = require_verification(spec, precision, artifact)
        return OpenVinoRuntime(artifact[0], threads=threads, solo_threads=solo_threads,
                               precision=record["inference_precision"], streams=concurrent_calls)
    raise InputError(f"Unknown runtime '{name}': use onnxruntime or openvino.")


def _describe(item: ImageInput) -> str:
    if isinstance(item, (str, Path)):
        return str(item)
    if isinstance(item, Image.Image):
        return "<PIL.Image>"
    return "<bytes>"


def _read_file(path: Path, max_bytes: int) -> bytes:
    """The file's bytes, at most ``max_bytes``. Only regular files are opened: opening a named pipe
    waits for a writer forever, and a device such as /dev/zero never ends."""
    import stat

    from imgcls.errors import PayloadTooLargeError

    too_large = f"The file is larger than the {max_bytes // (1024 * 1024)} MB limit."
    try:
        info = path.stat()
        if stat.S_ISDIR(info.st_mode):
            raise InputError("That is a folder, not a file.")
        if not stat.S_ISREG(info.st_mode):
            raise InputError("Not a regular file (a pipe, socket or device); only files are read.")
        if info.st_size > max_bytes:
            raise PayloadTooLargeError(too_large)
        with path.open("rb") as handle:
            data = handle.read(max_bytes + 1)  # bounded even if the file grew since stat()
        if len(data) > max_bytes:
            raise PayloadTooLargeError(too_large)
        return data
    except FileNotFoundError:
        raise InputError("No such file.") from None
    except PermissionError:
        raise InputError("Permission denied reading the file.") from None
    except OSError as exc:
        raise InputError(f"Could not read the file ({exc.strerror or exc.__class__.__name__}).") from None


def _from_pil(image: Image.Image) -> DecodedImage:
    from imgcls.preprocess import _to_rgb

    report = InputReport(format=image.format or "PIL", width=image.width, height=image.height, mode=image.mode, bytes=0)
    return DecodedImage(image=_to_rgb(image, report), report=report)
