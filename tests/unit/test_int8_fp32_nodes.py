"""Which layers INT8 quantisation keeps in fp32: the classifier always, the stem unless a pool follows it."""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402


def _graph(path, stem_tail: list[str]) -> None:
    """input -> Conv(stem) -> stem_tail ops -> Conv -> GlobalAveragePool -> Flatten -> Gemm."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.normal(size=(8, 3, 3, 3)).astype(np.float32), "w0"),
             numpy_helper.from_array(rng.normal(size=(8, 8, 3, 3)).astype(np.float32), "w1"),
             numpy_helper.from_array(rng.normal(size=(4, 8)).astype(np.float32), "wf")]
    nodes = [helper.make_node("Conv", ["input", "w0"], ["s0"], name="stem", pads=[1, 1, 1, 1])]
    last = "s0"
    for i, op in enumerate(stem_tail):
        attrs = {"kernel_shape": [2, 2], "strides": [2, 2]} if op.endswith("Pool") else {}
        nodes.append(helper.make_node(op, [last], [f"t{i}"], name=f"tail{i}", **attrs))
        last = f"t{i}"
    nodes += [helper.make_node("Conv", [last, "w1"], ["c1"], name="body", pads=[1, 1, 1, 1]),
              helper.make_node("GlobalAveragePool", ["c1"], ["g"], name="gap"),
              helper.make_node("Flatten", ["g"], ["f"], name="flat"),
              helper.make_node("Gemm", ["f", "wf"], ["logits"], name="head", transB=1)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 16, 16])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 4])], inits)
    onnx.save(helper.make_model(graph), str(path))


@pytest.mark.parametrize("tail, expected", [
    (["Relu"], ["stem", "head"]),  # EfficientNet-like: the fp32 stem is free
    (["Relu", "MaxPool"], ["head"]),  # ResNet-like: an fp32 stem would leave the pool on the slow path
    (["MaxPool"], ["head"]),
    (["Relu", "Relu", "AveragePool"], ["head"]),
    ([], ["stem", "head"]),
])
def test_fp32_nodes(tmp_path, tail, expected):
    from imgcls.artifacts import _first_last_nodes

    path = tmp_path / "m.onnx"
    _graph(path, tail)
    assert _first_last_nodes(path) == expected
