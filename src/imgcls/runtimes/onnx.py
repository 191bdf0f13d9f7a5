"""ONNX Runtime: the serving runtime, with thread counts and spinning set explicitly.

An intra-op thread count is fixed when a session opens, so a runtime that should use one thread
per call under load (throughput) but all cores for a request that is alone (latency) holds a
second session for the latter: ``solo_threads``.

Spinning: a batch-1 call is ~70 small operators, and between two of them the pool threads wait.
With spinning off every wait is a sleep and every operator a futex wake-up: Lite0 INT8 took
6.1-7.7 ms a call after a decode instead of 4.8-6.5 with brief spinning. ONNX Runtime's default
keeps a thread spinning for ~20 ms after *each call*, on a 2-core box the core the next JPEG
decodes on. The solo session therefore spins briefly (``SOLO_SPIN_US``): long enough to bridge
the gap between two operators, too short to matter once the call has ended. Sessions with one
thread have no pool, so nothing to spin.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from imgcls.runtimes import default_threads

__all__ = ["OnnxRuntime", "SOLO_SPIN_US"]

# How long an idle pool thread of the solo session spins before it sleeps. Measured (Lite0 INT8,
# a decode before each call, 2-vCPU Xeon guest): 20-100 us all cut the call's median by 1.1-1.6 ms and
# cost 0-1.5 core-ms; 1000 us cost 3.5 and spinning without a limit 9.5 core-ms per call.
SOLO_SPIN_US = 50


class OnnxRuntime:
    name = "onnxruntime"

    def __init__(self, model_path: str | Path, threads: int | None = None, spin_us: int | None = 0,
                 solo_threads: int | None = None, solo_spin_us: int | None = SOLO_SPIN_US):
        """Open an inference session.

        Args:
            model_path: the ONNX file.
            threads: intra-op threads (default: the cores this process may use).
            spin_us: how long idle pool threads spin before sleeping, in microseconds; 0 (the
                default) sleeps at once: on a 2-core box a spinning thread steals the core that
                decodes the next request's JPEG. None keeps ONNX Runtime's default (spin).
            solo_threads: if more than ``threads``, also open a session with this many threads
                for ``run(batch, solo=True)`` (costs that session's memory: ~13 MB for
                EfficientNet-Lite0 INT8, ~28 MB for ResNet-18 INT8).
            solo_spin_us: ``spin_us`` for that session (see ``SOLO_SPIN_US``).
        """
        self.threads = threads or default_threads()
        self.session = _open_session(model_path, self.threads, spin_us)
        self.solo_threads = solo_threads if solo_threads and solo_threads > self.threads else None
        self._solo_session = (_open_session(model_path, self.solo_threads, solo_spin_us)
                              if self.solo_threads else None)
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name

    def run(self, batch: np.ndarray, solo: bool = False) -> np.ndarray:
        """Logits for a float32 NCHW batch. ``solo``: nothing else is computing, use every core."""
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        session = self._solo_session if solo and self._solo_session is not None else self.session
        return session.run([self.output_name], {self.input_name: batch})[0]

    def computes_on_caller(self, solo: bool = False) -> bool:
        """True when a ``run`` does all its work on the calling thread (one intra-op thread: ONNX
        Runtime then opens no pool), so that thread's CPU clock measures the call's whole cost."""
        uses_solo = solo and self._solo_session is not None
        return (self.solo_threads if uses_solo else self.threads) == 1

    def close(self) -> None:
        self.session = self._solo_session = None


def _open_session(model_path: str | Path, threads: int, spin_us: int | None):
    try:
        import onnxruntime as ort
    except ImportError as exc:  # pragma: no cover - core dependency
        raise ImportError("onnxruntime is required to serve: pip install onnxruntime") from exc
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0" if spin_us == 0 else "1")
    if spin_us:  # bounded spinning: ONNX Runtime 1.26 and later
        options.add_session_config_entry("session.intra_op.spin_duration_us", str(spin_us))
    options.log_severity_level = 3
    return ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
