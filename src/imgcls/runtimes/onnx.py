"""ONNX Runtime: the serving runtime. Thread counts are set explicitly, spinning is off by default."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from imgcls.runtimes import default_threads

__all__ = ["OnnxRuntime"]


class OnnxRuntime:
    name = "onnxruntime"

    def __init__(self, model_path: str | Path, threads: int | None = None, spinning: bool = False):
        """Open an inference session.

        Args:
            model_path: the ONNX file.
            threads: intra-op threads (default: the cores this process may use).
            spinning: let idle worker threads spin. Off by default: on a 2-core box a spinning
                thread steals the core that decodes the next request's JPEG.
        """
        try:
            import onnxruntime as ort
        except ImportError as exc:  # pragma: no cover - core dependency
            raise ImportError("onnxruntime is required to serve: pip install onnxruntime") from exc
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or default_threads()
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
        options.log_severity_level = 3
        self.threads = options.intra_op_num_threads
        self.session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name

    def run(self, batch: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        return self.session.run([self.output_name], {self.input_name: batch})[0]

    def close(self) -> None:
        self.session = None
