"""ONNX Runtime: the serving runtime. Thread counts are set explicitly, spinning is off by default.

An intra-op thread count is fixed when a session opens, so a runtime that should use one thread
per call under load (throughput) but all cores for a request that is alone (latency) holds a
second session for the latter: ``solo_threads``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from imgcls.runtimes import default_threads

__all__ = ["OnnxRuntime"]


class OnnxRuntime:
    name = "onnxruntime"

    def __init__(self, model_path: str | Path, threads: int | None = None, spinning: bool = False,
                 solo_threads: int | None = None):
        """Open an inference session.

        Args:
            model_path: the ONNX file.
            threads: intra-op threads (default: the cores this process may use).
            spinning: let idle worker threads spin. Off by default: on a 2-core box a spinning
                thread steals the core that decodes the next request's JPEG.
            solo_threads: if more than ``threads``, also open a session with this many threads
                for ``run(batch, solo=True)`` (costs that session's memory: ~13 MB for
                EfficientNet-Lite0 INT8, ~28 MB for ResNet-18 INT8).
        """
        self.threads = threads or default_threads()
        self.session = _open_session(model_path, self.threads, spinning)
        self.solo_threads = solo_threads if solo_threads and solo_threads > self.threads else None
        self._solo_session = _open_session(model_path, self.solo_threads, spinning) if self.solo_threads else None
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name

    def run(self, batch: np.ndarray, solo: bool = False) -> np.ndarray:
        """Logits for a float32 NCHW batch. ``solo``: nothing else is computing, use every core."""
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        session = self._solo_session if solo and self._solo_session is not None else self.session
        return session.run([self.output_name], {self.input_name: batch})[0]

    def close(self) -> None:
        self.session = self._solo_session = None


def _open_session(model_path: str | Path, threads: int, spinning: bool):
    try:
        import onnxruntime as ort
    except ImportError as exc:  # pragma: no cover - core dependency
        raise ImportError("onnxruntime is required to serve: pip install onnxruntime") from exc
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    options.log_severity_level = 3
    return ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
