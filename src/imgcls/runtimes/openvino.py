"""OpenVINO: an optional runtime for the same verified ONNX artifacts (``pip install 'imgcls[openvino]'``).

Why a second runtime: on CPUs with fast bf16 units (AMX; AVX-512 BF16 on Zen 4) OpenVINO runs
an fp32 artifact in bf16, ResNet-18 at ~6 core-ms per image against ONNX Runtime's ~30
(docs/benchmarks.md). Not on every CPU that has bf16 instructions: on an Intel VM exposing
AVX-512 BF16 without AMX, ResNet-18 ran slower in bf16 than in f32 (26.6 vs 19.0 ms), so the
verification times both and keeps bf16 only where it is clearly faster (``choose_precision``).
bf16 changes the logits (up to ~0.5 on real photos for EfficientNet-Lite0), so it may serve only
after a verification record says its top-1 agrees with the verified ONNX Runtime answer (which
itself matches PyTorch to 1e-3 for fp32) on verification images: ``imgcls models verify-openvino``.
The record names the artifact's checksum and the inference precision, so a changed artifact or a
CPU that cannot run that precision needs a new one.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import numpy as np

from imgcls.errors import ArtifactVerificationError, ModelError
from imgcls.runtimes import cpu_name, default_threads, run_in_chunks

__all__ = [
    "OpenVinoRuntime",
    "OPENVINO_MIN_AGREEMENT",
    "BF16_MIN_SPEEDUP",
    "openvino_available",
    "supported_precisions",
    "choose_precision",
    "verify_openvino",
    "require_verification",
    "record_path",
]

OPENVINO_MIN_AGREEMENT = 0.95  # the INT8 gate's bar: top-1 agreement with the verified artifact
BF16_MIN_SPEEDUP = 1.1  # bf16 changes the logits; it has to buy at least this much speed
INSTALL_HINT = "OpenVINO is not installed: pip install 'imgcls[openvino]'."


def openvino_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("openvino") is not None


def _core():
    try:
        import openvino
    except ImportError:
        raise ModelError(INSTALL_HINT) from None
    return openvino.Core()


def supported_precisions(core=None) -> tuple[str, ...]:
    """The inference precisions this CPU runs: f32, and bf16 where it has bf16 instructions."""
    core = core or _core()
    return ("f32", "bf16") if "BF16" in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES") else ("f32",)


def choose_precision(model_path: str | Path, input_size: int, threads: int = 2, rounds: int = 5,
                     calls: int = 6) -> tuple[str, dict]:
    """bf16 if this CPU runs the model at batch 1 at least ``BF16_MIN_SPEEDUP`` times faster in bf16
    than in f32, else f32; with the medians (ms) it was decided on. The two are timed in
    alternating rounds so that a host slowing down mid-way hurts both alike."""
    core = _core()
    if "bf16" not in supported_precisions(core):
        return "f32", {}
    x = np.random.default_rng(0).random((1, 3, input_size, input_size), dtype=np.float32)
    requests = {p: _compile(core, model_path, threads, p, 1).create_infer_request() for p in ("f32", "bf16")}
    times: dict[str, list[float]] = {p: [] for p in requests}
    for request in requests.values():
        for _ in range(3):
            request.infer({0: x})
    for _ in range(rounds):
        for precision, request in requests.items():
            for _ in range(calls):
                started = time.perf_counter()
                request.infer({0: x})
                times[precision].append((time.perf_counter() - started) * 1000)
    medians = {f"{p}_ms": round(float(np.median(t)), 2) for p, t in times.items()}
    faster = medians["f32_ms"] >= BF16_MIN_SPEEDUP * medians["bf16_ms"]
    return ("bf16" if faster else "f32"), medians


def _compile_cache_dir() -> str | None:
    """Compiled-model cache, so a restart loads instead of recompiling; None if not writable."""
    from imgcls.catalog.store import store_home

    folder = store_home() / "openvino-cache"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        return str(folder) if os.access(folder, os.W_OK) else None
    except OSError:
        return None


class OpenVinoRuntime:
    """The ``Runtime`` interface on OpenVINO's CPU plugin; ``run`` is safe from several threads
    (each thread gets its own infer request on the shared compiled model)."""

    name = "openvino"

    def __init__(self, model_path: str | Path, threads: int | None = None, solo_threads: int | None = None,
                 precision: str | None = None, streams: int = 1):
        """Compile the ONNX artifact for the CPU.

        Args:
            model_path: the verified ONNX file.
            threads: inference threads per call (default: the cores this process may use).
            solo_threads: if more than ``threads``, a second compiled model for ``run(batch, solo=True)``.
            precision: inference precision, "bf16" or "f32" (default: OpenVINO's own choice, bf16
                where the CPU has bf16 instructions; the verification record names the one to use).
            streams: calls that may run at once (the server's model workers). Unlike an ONNX
                Runtime session, a compiled model runs one call per stream and queues the rest:
                with one stream, two workers ran ResNet-18 no faster than one.
        """
        core = _core()
        self.threads = threads or default_threads()
        self.precision = precision or ("bf16" if "bf16" in supported_precisions(core) else "f32")
        cache = _compile_cache_dir()
        if cache:
            core.set_property({"CACHE_DIR": cache})
        self.solo_threads = solo_threads if solo_threads and solo_threads > self.threads else None
        self._compiled = _compile(core, model_path, self.threads, self.precision, max(1, streams))
        self._solo = _compile(core, model_path, self.solo_threads, self.precision, 1) if self.solo_threads else None
        self.streams = int(self._compiled.get_property("NUM_STREAMS"))
        self._requests = threading.local()

    def run(self, batch: np.ndarray, solo: bool = False) -> np.ndarray:
        """Logits for a float32 NCHW batch (a copy: the request's output buffer is reused)."""
        use_solo = solo and self._solo is not None
        key = "solo" if use_solo else "main"
        request = getattr(self._requests, key, None)
        if request is None:
            request = (self._solo if use_solo else self._compiled).create_infer_request()
            setattr(self._requests, key, request)
        request.infer({0: np.ascontiguousarray(batch, dtype=np.float32)})
        return request.get_output_tensor(0).data.copy()

    def computes_on_caller(self, solo: bool = False) -> bool:
        """False: OpenVINO may run a call on its own stream threads (it does with two streams, one
        per server model worker: the caller's clock saw 0.55 of 16.5 core-ms), out of the
        caller's CPU clock."""
        return False

    def close(self) -> None:
        self._compiled = self._solo = None
        self._requests = threading.local()


def _compile(core, model_path: str | Path, threads: int, precision: str, streams: int):
    # Streams and threads set explicitly rather than through a performance hint: the caller
    # already decided how many calls run at once and how many threads each may use.
    return core.compile_model(str(model_path), "CPU", {
        "INFERENCE_NUM_THREADS": threads * streams,
        "INFERENCE_PRECISION_HINT": precision,
        "NUM_STREAMS": streams,
    })


# -- verification ---------------------------------------------------------------------------

def record_path(artifact_path: Path) -> Path:
    """Where the verification record of an artifact lives: beside it (``fp32.onnx`` ->
    ``fp32.openvino.json``)."""
    return artifact_path.with_name(artifact_path.stem + ".openvino.json")


def verify_openvino(spec, precision: str, images: list[Path] | None = None, threads: int = 2) -> dict:
    """Run the artifact on OpenVINO and on ONNX Runtime over verification images and keep the record
    if top-1 agreement reaches ``OPENVINO_MIN_AGREEMENT``.

    Args:
        spec: the model (ModelSpec).
        precision: which artifact, "fp32" or "int8" (it must exist and be verified).
        images: photos to verify on (recommended: a few dozen of your own); None uses 32 seeded
            synthetic images, a harder test (their top-1 margins are small) that a bf16 run of a
            model with many near-ties may fail where real photos pass.

    Raises:
        ArtifactVerificationError: agreement below the bar; no record is written.
    """
    from imgcls.artifacts import find_artifact, load_images_as_batch, synthetic_verification_batch
    from imgcls.runtimes.onnx import OnnxRuntime

    _core()  # a clear ModelError if OpenVINO is missing, before any work
    import openvino

    path, manifest = find_artifact(spec, precision)
    batch = load_images_as_batch(spec, list(images)) if images else synthetic_verification_batch(spec, count=32)
    reference_rt = OnnxRuntime(path, threads=threads)
    chosen, timings = choose_precision(path, spec.preprocessing.crop, threads)
    candidate_rt = OpenVinoRuntime(path, threads=threads, precision=chosen)
    try:
        reference = run_in_chunks(reference_rt, batch)
        candidate = run_in_chunks(candidate_rt, batch)
        single = candidate_rt.run(batch[:1])  # batch 1 too: a graph can differ by batch size
    finally:
        reference_rt.close()
        candidate_rt.close()
    agreement = float((reference.argmax(1) == candidate.argmax(1)).mean())
    batch_one_ok = bool(single.argmax(1)[0] == reference.argmax(1)[0])
    record = {
        "runtime": "openvino",
        "openvino": openvino.__version__.split("-")[0],
        "inference_precision": candidate_rt.precision,
        "precision_timing_ms": timings,  # medians at batch 1: bf16 is kept only if BF16_MIN_SPEEDUP x faster
        "cpu": cpu_name(),
        "artifact": path.name,
        "artifact_sha256": manifest["sha256"],
        "method": f"top-1 agreement with ONNX Runtime on the same {precision} artifact (batch 16 and batch 1)",
        "images": int(len(batch)),
        "source": "of your photos" if images else "synthetic images (seeded)",
        "top1_agreement": round(agreement, 4),
        "min_agreement": OPENVINO_MIN_AGREEMENT,
        "max_abs_logit_diff": round(float(np.abs(reference - candidate).max()), 4),
        "passed": bool(agreement >= OPENVINO_MIN_AGREEMENT and batch_one_ok),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if not record["passed"]:
        raise ArtifactVerificationError(
            f"OpenVINO ({record['inference_precision']}) agrees with the verified {precision} artifact of {spec.name} "
            f"on {agreement:.1%} of {len(batch)} {record['source']} (needs {OPENVINO_MIN_AGREEMENT:.0%}"
            f"{'' if batch_one_ok else '; batch 1 disagreed'}). Nothing was recorded; serve it with ONNX Runtime"
            + ("." if images else ", or verify on your own photos: --images DIR.")
        )
    out = record_path(path)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, out)
    return record


def require_verification(spec, precision: str, artifact: tuple[Path, dict], reference: str | None = None) -> dict:
    """The record that lets this artifact serve on OpenVINO on this machine, or a ModelError
    saying which command makes one."""
    path, manifest = artifact
    core = _core()
    runnable = supported_precisions(core)
    command = f"imgcls models verify-openvino {reference or spec.name} --precision {precision} --images DIR"
    try:
        record = json.loads(record_path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(f"The {precision} artifact of {spec.name} has not been verified on OpenVINO. "
                         f"Run `{command}`.") from None
    except (OSError, ValueError):
        raise ModelError(f"The OpenVINO verification record of {spec.name} {precision} is unreadable. "
                         f"Run `{command}` again.") from None
    if not isinstance(record, dict) or record.get("artifact_sha256") != manifest.get("sha256"):
        raise ModelError(f"The {precision} artifact of {spec.name} changed since it was verified on OpenVINO. "
                         f"Run `{command}` again.")
    if record.get("inference_precision") not in runnable:
        raise ModelError(f"{spec.name} {precision} was verified on OpenVINO in {record.get('inference_precision')}, "
                         f"which this CPU does not run. Run `{command}` again.")
    if not record.get("passed"):
        raise ModelError(f"{spec.name} {precision} did not pass OpenVINO verification. Run `{command}` again.")
    return record

