"""Sections 2-4: HTTP throughput/latency of ``imgcls serve`` and of the seed baseline, memory, cold start.

Every figure comes from real processes on loopback: the server under test is started as a
subprocess, loaded by ``imgcls.bench.loadgen`` (closed loop, one JPEG per request, dev photos
cycled), and observed from outside (psutil CPU time and RSS) and through its own ``/metrics``
(batch sizes, model-call time and the CPU of each stage, so the tables show how batching
behaved and the breakdown reads the same window).

Before each load window the benchmark times a fixed piece of CPU work in its own process (decode
and resize 12 dev photos: ``host_probe_ms``). Shared VMs change speed by 10-30% over minutes;
with the probe beside each row a window that ran on a slow host is visible, not guessed.
"""

from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from imgcls.bench.data import BenchModel, runtime_plan
from imgcls.bench.loadgen import build_requests, http_get, run_load
from imgcls.bench.servers import (
    HOST,
    RssSampler,
    ServerProcess,
    cold_start_seconds,
    start_baseline,
    start_imgcls,
)
from imgcls.bench.stats import median

__all__ = ["HttpRow", "run_imgcls_http", "run_baseline_http", "run_memory", "MemoryResult", "HttpPlan"]

IMGCLS_PATH = "/api/v1/classify"
BASELINE_PATH = "/predict"
MAX_SAMPLES = 600  # latency samples kept per row for the chart and the JSON
PROBE_PHOTOS = 12


@dataclass
class HttpPlan:
    concurrency: tuple[int, ...]
    seconds: float
    warmup_s: float
    server_args: list[str] = field(default_factory=list)  # extra `imgcls serve` flags (tuning experiments)


@dataclass
class HttpRow:
    system: str  # "imgcls" or "baseline"
    model: str
    precision: str
    concurrency: int
    result: dict  # LoadResult.summary()
    server_cpu_ms_per_request: float
    server_peak_rss_mb: float
    mean_batch: float | None = None
    mean_model_call_ms: float | None = None
    samples_ms: list[float] = field(default_factory=list, repr=False)
    runtime: str = "onnxruntime"  # or "openvino-bf16" / "openvino-f32"
    host_probe_ms: float | None = None  # see host_probe_ms(), taken just before this row's window
    # core-ms per image by stage, measured inside the server during this window (its /metrics)
    stage_cpu_ms: dict[str, float] = field(default_factory=dict)

    @property
    def rps(self) -> float:
        return self.result["rps"]

    def to_dict(self) -> dict:
        return asdict(self)


def _downsample(values: list[float], limit: int = MAX_SAMPLES) -> list[float]:
    if len(values) <= limit:
        return [round(v, 2) for v in values]
    step = len(values) / limit
    return [round(values[int(i * step)], 2) for i in range(limit)]


# The series the benchmark reads from the server, one name per line: histogram sums and counts,
# and the per-stage CPU counters (their stage label becomes part of the key).
_SERIES = re.compile(r'^imgcls_(batch_size_sum|batch_size_count|inference_seconds_sum|inference_seconds_count'
                     r'|stage_cpu_seconds_total|stage_images_total)\{([^}]*)\}\s+(\S+)$')
_STAGE_LABEL = re.compile(r'stage="([a-z_]+)"')


def scrape_server_metrics(port: int, precision: str) -> dict[str, float]:
    """For one precision (all models): sums of the batch-size and model-call histograms (keys
    ``imgcls_batch_size_sum`` ...), and the per-stage CPU counters (``cpu_seconds:<stage>``,
    ``images:<stage>``)."""
    status, body = http_get(HOST, port, "/metrics")
    totals: dict[str, float] = {}
    if status != 200:
        return totals
    for line in body.decode("utf-8", "replace").splitlines():
        match = _SERIES.match(line)
        if not match or f'precision="{precision}"' not in match.group(2):
            continue
        name, labels, value = match.groups()
        stage = _STAGE_LABEL.search(labels)
        if stage:
            key = f"{name.removeprefix('stage_').removesuffix('_total')}:{stage.group(1)}"
        else:
            key = f"imgcls_{name}"
        totals[key] = totals.get(key, 0.0) + float(value)
    return totals


def stage_costs(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """Core-ms per image of each stage the server measured between two scrapes."""
    costs = {}
    for key in after:
        if key.startswith("images:"):
            stage = key.split(":", 1)[1]
            images = after[key] - before.get(key, 0.0)
            if images > 0:
                cpu = after.get(f"cpu_seconds:{stage}", 0.0) - before.get(f"cpu_seconds:{stage}", 0.0)
                costs[stage] = round(cpu * 1000 / images, 3)
    return costs


def host_probe_ms(photos: list[tuple[str, bytes]], rounds: int = 3) -> float:
    """Core-ms to decode and resize one dev photo here and now (median of ``rounds`` passes over
    the first ``PROBE_PHOTOS``): the same work every time, so it tracks the host's speed."""
    from imgcls.catalog.entries import EFFICIENTNET_LITE0
    from imgcls.preprocess import decode_image, resize_and_crop

    blobs = [data for _, data in photos[:PROBE_PHOTOS]]
    passes = []
    for _ in range(rounds):
        started = time.thread_time()
        for blob in blobs:
            resize_and_crop(decode_image(blob).image, EFFICIENTNET_LITE0.preprocessing)
        passes.append((time.thread_time() - started) * 1000 / len(blobs))
    return round(median(passes), 2)


def _measure(server: ServerProcess, requests: list[bytes], concurrency: int, plan: HttpPlan, expect: bytes,
             precision: str | None) -> dict:
    """One recorded window: the measured fields of an ``HttpRow`` (result, server CPU and peak RSS,
    and from the server's /metrics, when ``precision`` is given, its batching and stage costs)."""
    with RssSampler(server.pid) as sampler:
        # The warm-up runs as its own short load first, so the server's CPU time and its /metrics
        # are read around the recorded window only.
        if plan.warmup_s > 0:
            run_load(HOST, server.port, requests, concurrency=concurrency, seconds=plan.warmup_s, warmup_s=0,
                     expect=expect)
        before = scrape_server_metrics(server.port, precision) if precision else {}
        cpu0 = server.cpu_seconds()
        result = run_load(HOST, server.port, requests, concurrency=concurrency, seconds=plan.seconds, warmup_s=0,
                          expect=expect)
        cpu = server.cpu_seconds() - cpu0
    after = scrape_server_metrics(server.port, precision) if precision else {}
    done = result.ok + result.errors
    window = {"result": result.summary(), "samples_ms": _downsample(result.latencies_ms),
              "server_cpu_ms_per_request": round(cpu * 1000 / done, 2) if done else 0.0,
              "server_peak_rss_mb": round(sampler.peak / 2**20, 1), "stage_cpu_ms": stage_costs(before, after)}
    calls = after.get("imgcls_batch_size_count", 0) - before.get("imgcls_batch_size_count", 0)
    if calls > 0:
        window["mean_batch"] = round((after["imgcls_batch_size_sum"] - before.get("imgcls_batch_size_sum", 0))
                                     / calls, 2)
        window["mean_model_call_ms"] = round((after["imgcls_inference_seconds_sum"]
                                              - before.get("imgcls_inference_seconds_sum", 0)) * 1000 / calls, 2)
    return window


def run_imgcls_http(models: list[BenchModel], photos: list[tuple[str, bytes]], plan: HttpPlan, log_dir: Path,
                    progress: Callable[[str], None] = lambda s: None) -> tuple[list[HttpRow], dict]:
    """Each model x precision served by its own `imgcls serve`; every concurrency level.

    Returns (rows, facts about each server: start-to-ready seconds, torch loaded or not).
    """
    rows: list[HttpRow] = []
    facts: dict = {}
    for model, precision, runtime in runtime_plan(models):
        # One server per precision, started with it as the default: only that session is loaded.
        label = model.runtime_label(precision, runtime)
        suffix = "" if runtime == "onnxruntime" else f"-{label}"
        progress(f"http: starting imgcls serve with {model.key} {precision} on {label}")
        extra = [] if runtime == "onnxruntime" else ["--runtime", runtime]
        with start_imgcls(f"imgcls-{model.key}-{precision}{suffix}", model.reference, precision, log_dir,
                          plan.server_args + extra) as server:
            facts[f"{model.key}-{precision}{suffix}"] = {"start_to_ready_s": round(server.start_to_ready_s or 0, 2),
                                                         "torch_loaded": server.has_torch_loaded()}
            requests = build_requests(photos, HOST, server.port, f"{IMGCLS_PATH}?precision={precision}")
            for concurrency in plan.concurrency:
                progress(f"http: imgcls {model.key} {precision} {label} concurrency {concurrency}")
                probe = host_probe_ms(photos)
                window = _measure(server, requests, concurrency, plan, b'"top"', precision)
                rows.append(HttpRow("imgcls", model.key, precision, concurrency, runtime=label, host_probe_ms=probe,
                                    **window))
    return rows, facts


def run_baseline_http(venv: Path, app: Path, weights: Path | None, photos: list[tuple[str, bytes]], plan: HttpPlan,
                      log_dir: Path, progress: Callable[[str], None] = lambda s: None,
                      when: str = "") -> tuple[list[HttpRow], dict]:
    """The seed baseline (Flask + PyTorch eager ResNet-18) under the same load generator.
    ``when`` ("before imgcls", "after imgcls") labels the pass when the suite brackets imgcls."""
    rows: list[HttpRow] = []
    label = f"fp32 (torch eager, {when})" if when else "fp32 (torch eager)"
    progress(f"baseline: starting the seed baseline (Flask + PyTorch eager){', ' + when if when else ''}")
    with start_baseline(venv, app, weights, log_dir) as server:
        facts = {"start_to_ready_s": round(server.start_to_ready_s or 0, 2)}
        requests = build_requests(photos, HOST, server.port, BASELINE_PATH)
        for concurrency in plan.concurrency:
            progress(f"baseline: concurrency {concurrency}")
            probe = host_probe_ms(photos)
            window = _measure(server, requests, concurrency, plan, b'"label"', None)
            rows.append(HttpRow("baseline", "resnet18", label, concurrency, host_probe_ms=probe, **window))
        facts["peak_rss_mb_kernel"] = round((server.peak_rss_kernel() or 0) / 2**20, 1)
    return rows, facts


@dataclass
class MemoryResult:
    model: str
    precision: str
    requests: int
    concurrency: int
    errors: int
    rss_ready_mb: float
    peak_rss_sampled_mb: float
    peak_rss_kernel_mb: float | None  # VmHWM: the kernel's exact high-water mark
    rss_after_mb: float
    torch_loaded: bool | None
    cold_start_s: list[float]

    @property
    def peak_mb(self) -> float:
        return max(self.peak_rss_sampled_mb, self.peak_rss_kernel_mb or 0.0)

    @property
    def cold_start_median_s(self) -> float:
        return round(median(self.cold_start_s), 3)

    def to_dict(self) -> dict:
        return {**asdict(self), "peak_rss_mb": round(self.peak_mb, 1), "cold_start_median_s": self.cold_start_median_s}


def run_memory(model: BenchModel, precision: str, photos: list[tuple[str, bytes]], *, requests: int,
               concurrency: int, cold_runs: int, log_dir: Path, server_args: list[str] | None = None,
               progress: Callable[[str], None] = lambda s: None) -> MemoryResult:
    """Peak RSS of a fresh server over ``requests`` requests, then cold start (median of ``cold_runs``)."""
    progress(f"memory: {requests} requests to a fresh server ({model.key} {precision})")
    with start_imgcls(f"memory-{model.key}", model.reference, precision, log_dir, server_args) as server:
        rss_ready = server.rss()
        raw = build_requests(photos, HOST, server.port, f"{IMGCLS_PATH}?precision={precision}")
        with RssSampler(server.pid, interval_s=0.02) as sampler:
            result = run_load(HOST, server.port, raw, concurrency=concurrency, seconds=3600, warmup_s=0,
                              expect=b'"top"', max_requests=requests)
        time.sleep(0.2)
        memory = MemoryResult(model.key, precision, result.ok + result.errors, concurrency, result.errors,
                              round(rss_ready / 2**20, 1), round(sampler.peak / 2**20, 1),
                              round((server.peak_rss_kernel() or 0) / 2**20, 1) or None,
                              round(server.rss() / 2**20, 1), server.has_torch_loaded(), [])
    progress(f"memory: cold start x{cold_runs}")
    memory.cold_start_s = [round(s, 3) for s in cold_start_seconds(model.reference, precision, log_dir, cold_runs,
                                                                   server_args)]
    return memory
