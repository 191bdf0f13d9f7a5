"""ONNX Runtime spinning: the solo session's pool threads spin briefly, the others never.

A small convolution stack stands in for a model: enough work per operator that the second intra-op
thread takes part, so its idle behaviour after a call is what is measured.
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from imgcls.runtimes.onnx import SOLO_SPIN_US, OnnxRuntime


@pytest.fixture(scope="module")
def conv_stack(tmp_path_factory) -> str:
    rng = np.random.default_rng(0)
    nodes, inits, name = [], [], "x"
    for i in range(12):
        weight = numpy_helper.from_array(rng.normal(0, 0.1, (16, 16 if i else 3, 3, 3)).astype(np.float32), f"w{i}")
        inits.append(weight)
        nodes.append(helper.make_node("Conv", [name, f"w{i}"], [f"c{i}"], pads=[1, 1, 1, 1]))
        nodes.append(helper.make_node("Relu", [f"c{i}"], [f"r{i}"]))
        name = f"r{i}"
    graph = helper.make_graph(nodes, "conv_stack", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 96, 96])],
                              [helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, 16, 96, 96])], inits)
    path = tmp_path_factory.mktemp("onnx") / "conv_stack.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return str(path)


def _config(session, key: str) -> str:
    return session.get_session_options().get_session_config_entry(key)


def test_only_the_solo_session_spins_and_only_briefly(conv_stack):
    runtime = OnnxRuntime(conv_stack, threads=1, solo_threads=2)
    assert _config(runtime.session, "session.intra_op.allow_spinning") == "0"
    assert _config(runtime._solo_session, "session.intra_op.allow_spinning") == "1"
    assert _config(runtime._solo_session, "session.intra_op.spin_duration_us") == str(SOLO_SPIN_US)
    plain = OnnxRuntime(conv_stack, threads=2)
    assert _config(plain.session, "session.intra_op.allow_spinning") == "0"
    assert plain._solo_session is None


def _cpu_after_call(runtime: OnnxRuntime, solo: bool) -> float:
    """Median process CPU ms burned in the 20 ms after a call (the caller sleeps, so it is the pool's)."""
    x = np.ones((1, 3, 96, 96), np.float32)
    burned = []
    for _ in range(7):
        runtime.run(x, solo=solo)
        start = time.process_time()
        time.sleep(0.02)
        burned.append((time.process_time() - start) * 1000)
    return statistics.median(burned)


def test_brief_spinning_stops_soon_after_the_call(conv_stack):
    """ONNX Runtime's default keeps a thread busy for the whole 20 ms; the solo setting does not."""
    brief = _cpu_after_call(OnnxRuntime(conv_stack, threads=1, solo_threads=2), solo=True)
    default = _cpu_after_call(OnnxRuntime(conv_stack, threads=2, spin_us=None), solo=False)
    assert brief < 5, f"the solo session's pool burned {brief:.1f} ms in the 20 ms after a call"
    assert default > 2 * brief + 5, f"ORT's default spinning burned only {default:.1f} ms (brief: {brief:.1f})"
