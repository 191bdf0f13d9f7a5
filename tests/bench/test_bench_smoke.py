"""The benchmark suite end to end on a tiny configuration: real CLI, real servers, real JPEGs.

Figures are not asserted against targets here (they depend on the machine and its load); the
tests check that every section ran against real processes and wrote coherent results.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from imgcls.bench.report import baseline_ratios
from imgcls.runtimes.openvino import openvino_available

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
BASELINE_VENV = ROOT / "bench-results" / ".venv-baseline"


def run_bench(out: Path, home: Path, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "imgcls", "bench", "--quick", "--out", str(out), "--cache", str(home),
            "--models", "lite0", "--batches", "1", "--threads", "1", "--concurrency", "2", "--seconds", "1",
            *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def test_tiny_benchmark_runs_every_section(tmp_path, imgcls_home, lite0_int8):
    done = run_bench(tmp_path, imgcls_home, "--skip-baseline", "--memory-requests", "40", "--cold-runs", "1",
                     "--no-torch-reference")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    doc = json.loads((tmp_path / "latest.json").read_text())

    # With OpenVINO installed, both artifacts are verified on it (held-out dev photos) and run there too.
    runtimes = {"onnxruntime"} | ({"openvino"} if openvino_available() else set())
    latency = doc["model_latency"]
    assert {(r["model"], r["runtime"].split("-")[0], r["precision"], r["batch"], r["threads"]) for r in latency} == {
        ("lite0", runtime, precision, 1, 1) for runtime in runtimes for precision in ("fp32", "int8")}
    assert all(r["calls"] >= 5 and 0 < r["median_ms"] <= r["p90_ms"] and r["cpu_ms"] > 0 for r in latency)
    if openvino_available():
        assert all(doc["models"]["lite0"]["openvino"][p]["passed"] for p in ("fp32", "int8"))

    http = doc["http"]
    assert {(r["precision"], r["concurrency"], r["runtime"].split("-")[0]) for r in http} == {
        (precision, 2, runtime) for runtime in runtimes for precision in ("fp32", "int8")}
    for row in http:
        assert row["result"]["ok"] > 0 and row["result"]["errors"] == 0, row["result"]
        assert row["result"]["p50_ms"] <= row["result"]["p99_ms"]
        assert row["server_cpu_ms_per_request"] > 0 and row["server_peak_rss_mb"] > 50
        assert row["mean_batch"] is not None and 1 <= row["mean_batch"] <= 2  # from the server's /metrics
        assert 0 < row["host_probe_ms"] < 1000  # decode + resize of one dev photo, timed before the window
    assert doc["servers"]["lite0-int8"]["torch_loaded"] is False

    memory = doc["memory"]
    assert memory["requests"] == 40 and memory["errors"] == 0
    assert memory["peak_rss_mb"] >= memory["rss_ready_mb"] > 50
    assert len(memory["cold_start_s"]) == 1 and 0 < memory["cold_start_s"][0] < 120
    assert memory["torch_loaded"] is False

    breakdown = doc["breakdown"]
    for row in breakdown["rows"]:
        assert row["decode_ms"] > 0 and row["preprocess_ms"] > 0 and row["model_ms"] > 0
        assert row["server_total_ms"] > 0 and row["ceiling_rps"] > 0
        # decode and preprocess come from the server's own counters over the HTTP window; the
        # model too where its calls run on the calling thread (not OpenVINO's stream threads)
        assert row["sources"]["decode"] == row["sources"]["preprocess"] == "server"
        if row["runtime"].startswith("openvino"):
            assert row["sources"]["model"] == "in-process"
        assert row["in_process"]["model_ms"] > 0
    assert breakdown["draft"]["photos"] >= 1

    chart = tmp_path / "latency-latest.png"
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and chart.stat().st_size > 10_000
    for title in ("Model-only latency", "HTTP, one JPEG per request", "Memory", "CPU per image", "Targets"):
        assert title in done.stdout


def test_unknown_section_is_a_usage_error(tmp_path, imgcls_home):
    done = run_bench(tmp_path, imgcls_home, "--sections", "model,gpu", timeout=120)
    assert done.returncode == 2
    assert "Unknown section(s): gpu" in done.stderr and "Traceback" not in done.stderr


def test_baseline_runs_under_the_same_load_generator(tmp_path, imgcls_home, lite0_int8):
    # On a fresh clone this builds the baseline's venv, as `make bench` would (~1-2 min: the local
    # torch wheel, flask, pillow, numpy), in the place `make bench` reuses it from.
    done = run_bench(tmp_path, imgcls_home, "--sections", "http,baseline", "--baseline-venv", str(BASELINE_VENV),
                     timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    doc = json.loads((tmp_path / "latest.json").read_text())
    before, after = doc["baseline"]["rows"]  # it brackets the imgcls runs; ratios use the mean of both
    assert "before imgcls" in before["precision"] and "after imgcls" in after["precision"]
    for row in (before, after):
        assert row["concurrency"] == 2 and row["result"]["ok"] > 0 and row["result"]["errors"] == 0
    (http,) = [r for r in doc["http"] if r["concurrency"] == 2 and r["precision"] == "int8"
               and r["runtime"] == "onnxruntime"]
    mean = (before["result"]["rps"] + after["result"]["rps"]) / 2
    assert baseline_ratios(doc)[("lite0", "int8", 2, "onnxruntime")] == round(http["result"]["rps"] / mean, 2)
    assert doc["baseline"]["torch"].split("+")[0] == "2.13.0"
    assert "ratio" in done.stdout and "x" in done.stdout
