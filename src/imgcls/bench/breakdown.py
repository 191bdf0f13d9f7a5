"""Section 5: where each image's CPU time goes, and how far that is from the 2-core limit.

The server measures its own stages while the HTTP benchmark loads it (``imgcls_stage_cpu_seconds``
in its ``/metrics``, read from each working thread's CPU clock): JPEG decode, preprocess (resize,
crop, normalise) and the model call at the batch sizes it formed, under the real contention of
that window. This module also measures them in process, on an otherwise idle server-less run
(``time.process_time``), with building the response (softmax, top-5, JSON); those figures fill
in any stage the server could not measure and are kept beside the server's for comparison: a
separate run minutes later saw a different host (run 24: in-process model 11.6 core-ms per
image, while the server's c8 window had used 13.6 core-ms per request in all). Over HTTP, psutil
gives the server's CPU time per request; what the stages do not explain is the HTTP layer
(uvicorn, FastAPI, multipart parsing, logging, metrics, thread hand-offs, the event loop). With
the load generator's own CPU time,
``cores x 1000 / (server + client core-ms per request)`` is the throughput ceiling of this
machine for that configuration, and the measured req/s is shown as a fraction of it.

It also measures the JPEG draft-mode lever on the dev photos: how many photos are big enough
for draft decoding to apply, the decode time with and without it, and how many top-1 answers
change.
"""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

import numpy as np

from imgcls.bench.data import BenchModel

__all__ = ["StageCosts", "measure_stages", "DraftResult", "measure_draft", "combine"]


@dataclass
class StageCosts:
    model: str
    precision: str
    images: int
    decode_ms: float  # core-ms per image
    preprocess_ms: float
    model_ms: float
    model_batch: int
    model_threads: int
    model_workers: int
    response_ms: float
    runtime: str = "onnxruntime"

    def to_dict(self) -> dict:
        return asdict(self)


def _cpu_per_item(fn, items, repeat: int = 1) -> float:
    start = time.process_time()
    for _ in range(repeat):
        for item in items:
            fn(item)
    return (time.process_time() - start) * 1000 / (len(items) * repeat)


def measure_stages(model: BenchModel, precision: str, photos: list[tuple[str, bytes]], *, batch: int,
                   threads: int | None = None, workers: int = 1, limit: int = 120,
                   model_budget_s: float = 1.5, runtime: str = "onnxruntime") -> StageCosts:
    """Per-image CPU cost of each stage, with the server's settings (threads per call, concurrent
    model workers, the batch size it formed)."""
    from imgcls.engine import softmax, top_k
    from imgcls.preprocess import decode_image, preprocess
    from imgcls.runtimes import default_threads

    spec = model.spec()
    pp = spec.preprocessing
    data = [blob for _, blob in photos[:limit]]
    decode_image(data[0])  # import/first-call costs out of the window
    decode_ms = _cpu_per_item(decode_image, data)
    images = [decode_image(blob).image for blob in data]
    preprocess_ms = _cpu_per_item(lambda im: preprocess(im, pp), images)
    arrays = np.stack([preprocess(im, pp) for im in images[: max(batch, 8)]])
    threads = threads or default_threads()
    label = model.runtime_label(precision, runtime)
    runtime = model.open_runtime(precision, runtime, threads, concurrent_calls=workers)
    batch = max(1, batch)
    inputs = arrays[:batch] if len(arrays) >= batch else np.resize(arrays, (batch, *arrays.shape[1:]))
    for _ in range(3):
        logits = runtime.run(inputs)
    # As in the server: ``workers`` calls at once on one session (two concurrent calls share the
    # caches and memory bandwidth, which makes each dearer than a call on an idle machine).
    counts = [0] * workers
    wall = time.perf_counter()

    def loop(i: int) -> None:
        while counts[i] < 6 or time.perf_counter() - wall < model_budget_s:
            runtime.run(inputs)
            counts[i] += 1

    start = time.process_time()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(loop, range(workers)))
    model_ms = (time.process_time() - start) * 1000 / (sum(counts) * batch)
    runtime.close()
    labels = spec.labels("en")
    row = logits[0]

    def respond(_):
        probs = softmax(row[None, :])[0]
        top = [{"class_index": i, "label": labels[i], "score": round(p, 6)} for i, p in top_k(probs, 5)]
        return json.dumps({"model": spec.name, "precision": precision, "lang": "en", "results": [
            {"filename": "x.JPEG", "top": top, "input": {"format": "JPEG", "width": 500, "height": 375},
             "timing_ms": {"decode": 1.0, "queue": 1.0, "model": 1.0, "total": 1.0}}]}).encode()

    response_ms = _cpu_per_item(respond, range(200))
    return StageCosts(model.key, precision, len(data), round(decode_ms, 3), round(preprocess_ms, 3),
                      round(model_ms, 3), batch, threads, workers, round(response_ms, 3), label)


@dataclass
class DraftResult:
    photos: int
    eligible: int  # photos large enough for draft decoding to apply
    decode_full_ms: float  # core-ms per eligible photo
    decode_draft_ms: float
    top1_changed: int  # among eligible photos, with the model below at fp32
    model: str
    all_decode_full_ms: float  # per photo over all dev photos
    all_decode_draft_ms: float

    def to_dict(self) -> dict:
        return asdict(self)


def measure_draft(model: BenchModel, photos: list[tuple[str, bytes]]) -> DraftResult:
    """Draft-mode JPEG decoding vs full decoding on every dev photo: time and top-1 changes."""
    from imgcls.preprocess import decode_image, preprocess
    from imgcls.runtimes.onnx import OnnxRuntime

    pp = model.spec().preprocessing
    blobs = [blob for _, blob in photos]
    drafted = [decode_image(b, draft_size=pp.resize) for b in blobs]
    eligible = [i for i, d in enumerate(drafted) if any("draft" in c for c in d.report.conversions)]
    full_all = _cpu_per_item(decode_image, blobs)
    draft_all = _cpu_per_item(lambda b: decode_image(b, draft_size=pp.resize), blobs)
    if not eligible:
        return DraftResult(len(blobs), 0, 0.0, 0.0, 0, model.key, round(full_all, 3), round(draft_all, 3))
    subset = [blobs[i] for i in eligible]
    full_ms = _cpu_per_item(decode_image, subset, repeat=2)
    draft_ms = _cpu_per_item(lambda b: decode_image(b, draft_size=pp.resize), subset, repeat=2)
    runtime = OnnxRuntime(model.precisions["fp32"], threads=min(2, os.cpu_count() or 1))
    full = np.stack([preprocess(decode_image(b).image, pp) for b in subset])
    draft = np.stack([preprocess(drafted[i].image, pp) for i in eligible])
    changed = int((runtime.run(full).argmax(1) != runtime.run(draft).argmax(1)).sum())
    runtime.close()
    return DraftResult(len(blobs), len(eligible), round(full_ms, 3), round(draft_ms, 3), changed, model.key,
                       round(full_all, 3), round(draft_all, 3))


def combine(stages: StageCosts, http_row: dict | None, cores: int) -> dict:
    """One breakdown row: the stages + the HTTP remainder, the machine ceiling and the distance to it.

    Decode, preprocess and model come from the server's own per-stage CPU counters over the HTTP
    window when it measured them (``stage_cpu_ms``), so they share that window's host speed and
    contention with the server total they are subtracted from; a stage it did not measure (the
    model on OpenVINO, whose calls run on its own threads) falls back to the in-process figure,
    which the row's ``sources`` names. The in-process figures stay in the row as ``in_process``.
    """
    measured = (http_row or {}).get("stage_cpu_ms") or {}
    costs, sources = {}, {}
    for stage in ("decode", "preprocess", "model"):
        in_server = measured.get(stage)
        costs[stage] = in_server if in_server is not None else getattr(stages, f"{stage}_ms")
        sources[stage] = "server" if in_server is not None else "in-process"
    inproc = costs["decode"] + costs["preprocess"] + costs["model"] + stages.response_ms
    out = {"model": stages.model, "precision": stages.precision, "runtime": stages.runtime,
           "decode_ms": costs["decode"], "preprocess_ms": costs["preprocess"], "model_ms": costs["model"],
           "model_batch": stages.model_batch, "response_ms": stages.response_ms, "stages_ms": round(inproc, 3),
           "sources": sources,
           "in_process": {"decode_ms": stages.decode_ms, "preprocess_ms": stages.preprocess_ms,
                          "model_ms": stages.model_ms}}
    if http_row:
        server = http_row["server_cpu_ms_per_request"]
        client = http_row["result"]["client_cpu_ms_per_request"]
        ceiling = cores * 1000 / (server + client) if server + client > 0 else 0.0
        out.update({
            "concurrency": http_row["concurrency"],
            "http_other_ms": round(server - inproc, 3),
            "server_total_ms": server,
            "client_ms": client,
            "ceiling_rps": round(ceiling, 1),
            "server_only_ceiling_rps": round(cores * 1000 / server, 1) if server else 0.0,
            "measured_rps": http_row["result"]["rps"],
            "fraction_of_ceiling": round(http_row["result"]["rps"] / ceiling, 3) if ceiling else 0.0,
        })
    return out
