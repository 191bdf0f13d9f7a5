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
        _row("resnet18", "int8", 8, 70.0, runtime="openvino-f32"),
    ])
    assert baseline_ratios(doc)[("lite0", "int8", 8, "onnxruntime")] == 6.0  # 120 / mean(18, 22)
    found = {t["target"]: (t["measured"], t["ok"]) for t in targets(doc)}
    assert found["HTTP lite0 INT8 c8 vs baseline"] == ("6.0x", True)
    assert found["HTTP lite0 INT8 c1 p50"] == ("11.0 ms", True)
    assert found["HTTP ResNet-18 FP32 c8 vs baseline"] == ("2.0x", True)
    assert found["HTTP ResNet-18 INT8 c8 vs baseline"] == ("5.0x", True)
    assert found["HTTP ResNet-18 FP32 on openvino-bf16 (verified) c8 vs baseline"] == ("4.5x", True)
    # INT8 on OpenVINO is shown against the same 4x but not scored: the scored row is ONNX Runtime's
    int8_openvino = next(t for t in targets(doc) if t["target"].startswith("HTTP ResNet-18 INT8 on"))
    assert (int8_openvino["measured"], int8_openvino["ok"], int8_openvino["scored"]) == ("3.5x", False, False)
    text = markdown(doc)
    assert "| HTTP ResNet-18 INT8 on openvino-f32 (verified) c8 vs baseline | >= 4.0x | 3.5x | info: not met |" in text
    assert "| imgcls | lite0 | int8 on openvino-bf16 | 8 | 150.0 |" in text and "7.50x" in text


def test_without_openvino_rows_there_is_no_openvino_target():
    found = [t["target"] for t in targets(_doc([_row("resnet18", "fp32", 8, 30.0)]))]
    assert "HTTP ResNet-18 FP32 c8 vs baseline" in found and not any("openvino" in t for t in found)


def _latency(model, runtime, precision, median, batch=1, threads=2):
    return {"model": model, "runtime": runtime, "precision": precision, "batch": batch, "threads": threads,
            "calls": 10, "median_ms": median, "p90_ms": median + 1, "cpu_ms": median, "samples_ms": []}


def test_model_only_targets_score_the_prototype_setting_and_show_the_serving_one():
    doc = _doc([])
    doc["model_latency"] = [
        _latency("lite0", "onnxruntime", "int8", 4.2),  # serving setting, over 2.7 x 1.3 = 3.51
        _latency("lite0", "onnxruntime-spin", "int8", 2.4),  # ORT defaults, as the prototype
        _latency("lite0", "onnxruntime", "fp32", 6.0),  # no spinning row: scored as before
        _latency("lite0", "onnxruntime-spin", "int8", 9.0, batch=4),  # only batch 1 / 2 threads count
        _latency("resnet18", "openvino-bf16", "fp32", 13.0),
    ]
    found = {t["target"]: t for t in targets(doc)}
    assert {name: (t["ok"], t["scored"]) for name, t in found.items() if name.startswith("model-only")} == {
        "model-only lite0 int8 (serving setting) b1 t2": (False, False),
        "model-only lite0 int8 (ORT defaults, as the prototype) b1 t2": (True, True),
        "model-only lite0 fp32 (serving setting) b1 t2": (True, True),
        "model-only resnet18 fp32 on openvino-bf16 b1 t2": (False, True),
    }
    text = markdown(doc)
    assert "| model-only lite0 int8 (serving setting) b1 t2 | <= 3.51 ms | 4.2 ms | info: not met |" in text
    assert "| model-only resnet18 fp32 on openvino-bf16 b1 t2 | <= 12.87 ms | 13.0 ms | **miss** |" in text


def test_breakdown_stars_the_stages_the_server_could_not_measure():
    from imgcls.bench.breakdown import StageCosts, combine

    stages = StageCosts("lite0", "int8", 100, decode_ms=2.0, preprocess_ms=2.5, model_ms=9.0, model_batch=2,
                        model_threads=1, model_workers=2, response_ms=0.1)
    http = _row("lite0", "int8", 8, 130.0)
    http["server_cpu_ms_per_request"] = 14.0
    measured = combine(stages, {**http, "stage_cpu_ms": {"decode": 1.5, "preprocess": 1.8, "model": 7.6,
                                                         "top_k": 0.05}}, cores=2)
    assert (measured["decode_ms"], measured["model_ms"]) == (1.5, 7.6)  # the server's window, not the idle run
    assert measured["http_other_ms"] == round(14.0 - (1.5 + 1.8 + 7.6 + 0.1), 3)
    assert measured["in_process"]["model_ms"] == 9.0
    unseen = combine(stages, {**http, "stage_cpu_ms": {"decode": 1.5, "preprocess": 1.8}}, cores=2)
    assert unseen["model_ms"] == 9.0 and unseen["sources"]["model"] == "in-process"
    legacy = {k: v for k, v in measured.items() if k not in ("sources", "in_process")}  # a run before run 25

    doc = _doc([http])
    doc["breakdown"] = {"cores": 2, "reference_concurrency": 8, "rows": [measured, unseen, legacy],
                        "draft": {"eligible": 0, "photos": 1, "decode_full_ms": 0, "decode_draft_ms": 0,
                                  "top1_changed": 0, "model": "lite0", "all_decode_full_ms": 1,
                                  "all_decode_draft_ms": 1}}
    lines = [line for line in markdown(doc).splitlines() if line.startswith("| lite0 | int8 |") and "(2)" in line]
    assert len(lines) == 3
    assert "| 7.60 (2) |" in lines[0] and lines[0].endswith("| 9.00 |")
    assert "| 9.00* (2) |" in lines[1]
    assert "| 7.60 (2) |" in lines[2] and lines[2].endswith("| - |")
