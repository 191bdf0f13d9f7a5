"""Section 1: model-only latency per model x runtime x precision x batch x threads.

Inputs are real dev photos, decoded and preprocessed once up front, so only the model call is
timed. Each configuration is warmed up, then called back to back for a fixed time budget; the
figures are per image (call time / batch size): median and p90 wall-clock ms, plus the CPU time
the whole process spent per image (``time.process_time`` counts every thread, ONNX Runtime's
and PyTorch's pools included), which is what limits throughput on a 2-core machine.

With more than one thread ONNX Runtime is timed twice: ``onnxruntime`` rows use the serving
setting (a call with every core is the server's solo call: idle pool threads spin for
``SOLO_SPIN_US`` then sleep, so they never hold the decode core for long), ``onnxruntime-spin``
rows ONNX Runtime's own defaults (idle pool threads spin for ~20 ms) -- the setting the issue's
prototype figures were measured with, so those are the rows compared with them. A batch-1 call
is ~70 small operators, each waking the second thread; a thread that has gone to sleep costs a
futex wake whose price depends on the host (see ``imgcls.runtimes.onnx``).
"""

from __future__ import annotations

import gc
import time
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np

from imgcls.bench.data import BenchModel
from imgcls.bench.stats import percentile
from imgcls.runtimes.onnx import SOLO_SPIN_US

__all__ = ["ModelRow", "run_model_section", "PROTOTYPE_MS", "ORT_SPINNING", "prototype_limit", "prepared_inputs"]

# The prototype figures on this machine (ONNX Runtime, batch 1, 2 threads), upper ends;
# the target is to stay within 1.3x of them.
PROTOTYPE_MS = {
    ("lite0", "onnxruntime", "fp32"): 5.5,
    ("lite0", "onnxruntime", "int8"): 2.7,
    ("resnet18", "onnxruntime", "fp32"): 19.0,
    ("resnet18", "onnxruntime", "int8"): 5.8,
    ("resnet18", "torch", "fp32"): 45.0,
    ("resnet18", "openvino-bf16", "fp32"): 9.9,
}
TARGET_FACTOR = 1.3
ORT_SPINNING = "onnxruntime-spin"  # runtime label of the rows timed with ONNX Runtime's defaults


@dataclass
class ModelRow:
    model: str
    runtime: str
    precision: str
    batch: int
    threads: int
    calls: int
    median_ms: float  # per image
    p90_ms: float  # per image
    cpu_ms: float  # process CPU time per image (all threads)
    samples_ms: list[float]  # per-image latency of every timed call (for the chart)
    note: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def prepared_inputs(model: BenchModel, photos: list[tuple[str, bytes]], count: int = 16) -> np.ndarray:
    """``count`` dev photos decoded and preprocessed for ``model`` (float32 NCHW)."""
    from imgcls.preprocess import decode_image, preprocess

    pp = model.spec().preprocessing
    arrays = [preprocess(decode_image(data).image, pp) for _, data in photos[:count]]
    while len(arrays) < count:
        arrays.extend(arrays[: count - len(arrays)])
    return np.stack(arrays).astype(np.float32)


def time_calls(run: Callable[[np.ndarray], np.ndarray], inputs: np.ndarray, batch: int, *,
               budget_s: float, min_calls: int = 5, warmup_calls: int = 3) -> tuple[list[float], float, int]:
    """Call ``run`` on rotating slices of ``inputs`` for ``budget_s``.

    Returns (per-image ms of each call, process CPU ms per image, number of calls).
    """
    slices = [inputs[(i * batch) % len(inputs):][:batch] for i in range(max(1, len(inputs) // batch))]
    slices = [s if len(s) == batch else inputs[:batch] for s in slices]
    for i in range(warmup_calls):
        run(slices[i % len(slices)])
    samples: list[float] = []
    gc.collect()
    cpu0, started = time.process_time(), time.perf_counter()
    i = 0
    while i < min_calls or time.perf_counter() - started < budget_s:
        t0 = time.perf_counter()
        run(slices[i % len(slices)])
        samples.append((time.perf_counter() - t0) * 1000 / batch)
        i += 1
    cpu_ms = (time.process_time() - cpu0) * 1000 / (i * batch)
    return samples, cpu_ms, i


def _runtimes(model: BenchModel, precision: str, threads: int, include_torch: bool):
    """(runtime name, factory) pairs for one model/precision/threads."""
    serving_spin_us = SOLO_SPIN_US if threads > 1 else 0  # the server's calls with every core are solo calls
    out = [("onnxruntime", lambda: model.open_runtime(precision, "onnxruntime", threads, spin_us=serving_spin_us))]
    if threads > 1:  # with one thread there is no pool to spin
        out.append((ORT_SPINNING, lambda: model.open_runtime(precision, "onnxruntime", threads, spin_us=None)))
    if precision in model.openvino:
        out.append((model.runtime_label(precision, "openvino"), lambda: model.open_runtime(precision, "openvino",
                                                                                            threads)))
    if include_torch and precision == "fp32" and model.key == "resnet18":
        def make_torch():
            from imgcls.runtimes.torch_ref import TorchRuntime

            return TorchRuntime(model.spec(), weights=model.torch_weights, threads=threads)

        out.append(("torch", make_torch))
    return out


def run_model_section(models: list[BenchModel], photos: list[tuple[str, bytes]], *, batches: tuple[int, ...],
                      threads: tuple[int, ...], budget_s: float, include_torch: bool = True,
                      progress: Callable[[str], None] = lambda s: None) -> list[ModelRow]:
    """Time every configuration, one runtime family after the other."""
    rows: list[ModelRow] = []
    plan = []
    for model in models:
        inputs = prepared_inputs(model, photos, max(16, max(batches) * 2))
        for precision in model.precisions:
            for n_threads in threads:
                for runtime_name, factory in _runtimes(model, precision, n_threads, include_torch):
                    order = {"onnxruntime": 0, ORT_SPINNING: 0, "torch": 2}.get(runtime_name, 1)
                    plan.append((order, model, inputs, precision, n_threads, runtime_name, factory))
    # ONNX Runtime first, then OpenVINO, PyTorch last: a runtime's thread pool can outlive its
    # session, and must not idle-spin under the next one's timings.
    plan.sort(key=lambda item: item[0])
    for _, model, inputs, precision, n_threads, runtime_name, factory in plan:
        runtime = factory()
        try:
            for batch in batches:
                progress(f"model {model.key} {runtime_name} {precision} batch {batch} threads {n_threads}")
                samples, cpu_ms, calls = time_calls(runtime.run, inputs, batch, budget_s=budget_s)
                rows.append(ModelRow(model.key, runtime_name, precision, batch, n_threads, calls,
                                     round(percentile(samples, 50), 2), round(percentile(samples, 90), 2),
                                     round(cpu_ms, 2), [round(s, 3) for s in samples]))
        finally:
            runtime.close()
            del runtime
            gc.collect()
    return rows


def prototype_limit(row: dict) -> float | None:
    """The issue's limit for a model-only row (1.3x its prototype; batch 1, 2 threads only), in ms/image.

    Both ONNX Runtime settings get the prototype's limit; which of them is scored is the report's
    choice (``report.targets``).
    """
    if row["batch"] != 1 or row["threads"] != 2 or row["runtime"] == "torch":
        return None
    runtime = "onnxruntime" if row["runtime"] == ORT_SPINNING else row["runtime"]
    proto = PROTOTYPE_MS.get((row["model"], runtime, row["precision"]))
    return None if proto is None else round(proto * TARGET_FACTOR, 2)
