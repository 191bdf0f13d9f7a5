"""The closed sets of choices users pick from, shared by the CLI, the HTTP API and the docs."""

from __future__ import annotations

from enum import Enum

__all__ = ["Precision", "DefaultPrecision", "Lang", "RuntimeName"]


class Precision(str, Enum):
    """Which verified ONNX artifact answers: fp32, or the calibrated INT8 (from the model's shipped
    calibration table, or `imgcls models quantize` on your photos)."""

    fp32 = "fp32"
    int8 = "int8"


class DefaultPrecision(str, Enum):
    """The precision a command or server answers in: auto (the default everywhere) picks INT8 where
    the model has it or ships its calibration (imgcls.artifacts.auto_precision), else fp32."""

    auto = "auto"
    fp32 = "fp32"
    int8 = "int8"


class Lang(str, Enum):
    """Label language."""

    en = "en"
    zh = "zh"


class RuntimeName(str, Enum):
    """Which runtime runs the artifact: ONNX Runtime, or OpenVINO after `imgcls models verify-openvino`."""

    onnxruntime = "onnxruntime"
    openvino = "openvino"
