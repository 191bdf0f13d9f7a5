"""The targets table computed from a results document: each ratio reads the row it names."""

from __future__ import annotations

from imgcls.bench.report import baseline_ratios, markdown, targets


def _row(model, precision, c, rps, runtime=None, p50=10.0, p99=50.0):
    row = {"system": "imgcls", "model": model, "precision": precision, "concurrency": c,
           "result": {"rps": rps, "p50_ms": p50, "p99_ms": p99, "errors": 0, "client_cpu_ms_per_request": 0.3},
           "server_cpu_ms_per_request": 10.0, "server_peak_rss_mb": 200.0, "mean_batch": 2.0, "samples_ms": []}
    if runtime:
        row["runtime"] = runtime
    return row


def _doc(http):
    baseline = [{"system": "baseline", "model": "resnet18", "precision": f"fp32 (torch eager, {when})",
                 "concurrency": c, "result": {"rps": rps, "p50_ms": 300.0, "p99_ms": 400.0, "errors": 0,
                                              "client_cpu_ms_per_request": 1.0},
                 "server_cpu_ms_per_request": 80.0, "server_peak_rss_mb": 700.0, "mean_batch": None, "samples_ms": []}
                for when, c, rps in (("before imgcls", 8, 18.0), ("after imgcls", 8, 22.0), ("before imgcls", 1, 20.0))]
    return {"started": "now", "seconds": 1, "settings": {"quick": False, "threads": [2], "concurrency": [1, 8]},
            "machine": {"cpu": "cpu", "cores": 2, "onnxruntime": "x", "python": "3", "load_average_at_start": [0]},
            "photos": {"count": 1, "mean_kb": 1}, "http": http, "baseline": {"rows": baseline}}


def test_each_target_reads_its_own_runtime_row():
    doc = _doc([
        _row("lite0", "int8", 8, 120.0),  # written before rows carried a runtime: ONNX Runtime
        _row("lite0", "int8", 1, 60.0, p50=11.0),
        _row("lite0", "int8", 8, 150.0, runtime="openvino-bf16"),
        _row("resnet18", "fp32", 8, 40.0, runtime="onnxruntime"),
        _row("resnet18", "fp32", 8, 90.0, runtime="openvino-bf16"),
        _row("resnet18", "int8", 8, 100.0, runtime="onnxruntime"),
    ])
    assert baseline_ratios(doc)[("lite0", "int8", 8, "onnxruntime")] == 6.0  # 120 / mean(18, 22)
    found = {t["target"]: (t["measured"], t["ok"]) for t in targets(doc)}
    assert found["HTTP lite0 INT8 c8 vs baseline"] == ("6.0x", True)
    assert found["HTTP lite0 INT8 c1 p50"] == ("11.0 ms", True)
    assert found["HTTP ResNet-18 FP32 c8 vs baseline"] == ("2.0x", True)
    assert found["HTTP ResNet-18 INT8 c8 vs baseline"] == ("5.0x", True)
    assert found["HTTP ResNet-18 FP32 on openvino-bf16 (verified) c8 vs baseline"] == ("4.5x", True)
    text = markdown(doc)
    assert "| imgcls | lite0 | int8 on openvino-bf16 | 8 | 150.0 |" in text and "7.50x" in text


def test_without_openvino_rows_there_is_no_openvino_target():
    found = [t["target"] for t in targets(_doc([_row("resnet18", "fp32", 8, 30.0)]))]
    assert "HTTP ResNet-18 FP32 c8 vs baseline" in found and not any("openvino" in t for t in found)
