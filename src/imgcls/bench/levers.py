"""Optional section "levers": the tuning experiments behind the server's defaults, reproducible.

Not part of the default run (it roughly doubles it): ``imgcls bench --sections levers``.

* **server settings** over HTTP (default model, INT8, concurrency 1 and 8): ONNX Runtime
  threads per call x model workers, micro-batch size and wait, decode threads, access-log level;
  each variant is a fresh ``imgcls serve`` with extra flags, under the same load generator.
* **ONNX Runtime spinning**: model calls (2 intra-op threads) while another thread decodes JPEGs,
  as in the server; images/s of both with idle pool threads sleeping at once, spinning for
  ``SOLO_SPIN_US`` (the solo session's setting) and spinning as ONNX Runtime does by default.
* **JPEG draft mode** on phone-sized photos: dev photos upscaled to 1024/2048/3024-px shorter
  sides and re-encoded (the dev photos themselves are mostly ~500x375, too small for draft mode
  to act); decode + preprocess CPU time, top-1 changes and top-1 accuracy, full vs draft.
* **torch in the serving process**: resident memory of the server's imports with and without
  ``import torch``.
"""

from __future__ import annotations

import io
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

import numpy as np

from imgcls.bench.data import BenchModel
from imgcls.bench.http_bench import HttpPlan, run_imgcls_http
from imgcls.runtimes import run_in_chunks

__all__ = ["SERVER_VARIANTS", "run_server_variants", "measure_spinning", "measure_draft_large", "measure_torch_rss"]

SERVER_VARIANTS: list[tuple[str, list[str]]] = [
    ("defaults", []),
    ("no solo session (--solo-threads 1)", ["--solo-threads=1"]),
    ("1 thread x 1 worker", ["--threads=1", "--model-workers=1"]),
    ("2 threads x 1 worker", ["--threads=2", "--model-workers=1"]),
    ("2 threads x 2 workers", ["--threads=2", "--model-workers=2"]),
    ("max-batch 4", ["--max-batch=4"]),
    ("max-batch 16", ["--max-batch=16"]),
    ("max-wait 0 ms", ["--max-wait-ms=0"]),
    ("max-wait 10 ms", ["--max-wait-ms=10"]),
    ("1 decode thread", ["--decode-threads=1"]),
    ("log-level warning", ["--log-level=warning"]),
]


def run_server_variants(model: BenchModel, photos: list[tuple[str, bytes]], *, precision: str,
                        concurrency: tuple[int, ...], seconds: float, warmup_s: float, log_dir: Path,
                        variants: list[tuple[str, list[str]]] | None = None,
                        progress: Callable[[str], None] = lambda s: None) -> list[dict]:
    """HTTP figures for each server variant (one fresh server each, requests at ``precision``)."""
    only = BenchModel(model.key, model.reference, model.title, {precision: model.precisions[precision]},
                      model.int8_note, model.torch_weights)
    rows = []
    for label, args in variants or SERVER_VARIANTS:
        progress(f"levers: server variant '{label}'")
        plan = HttpPlan(concurrency, seconds, warmup_s, list(args))
        http_rows, _ = run_imgcls_http([only], photos, plan, log_dir)
        for row in http_rows:
            rows.append({"variant": label, "args": args, "concurrency": row.concurrency, "rps": row.result["rps"],
                         "p50_ms": row.result["p50_ms"], "p99_ms": row.result["p99_ms"],
                         "errors": row.result["errors"], "mean_batch": row.mean_batch,
                         "server_cpu_ms_per_request": row.server_cpu_ms_per_request,
                         "peak_rss_mb": row.server_peak_rss_mb})
    return rows


def measure_spinning(model: BenchModel, photos: list[tuple[str, bytes]], precision: str = "int8",
                     seconds: float = 3.0, batch: int = 4) -> list[dict]:
    """Model calls with 2 intra-op threads while one thread decodes JPEGs: spinning off, brief, default."""
    from imgcls.bench.model_latency import prepared_inputs
    from imgcls.preprocess import decode_image
    from imgcls.runtimes.onnx import SOLO_SPIN_US, OnnxRuntime

    inputs = prepared_inputs(model, photos, batch)
    blobs = [blob for _, blob in photos[:64]]
    out = []
    for spin_us in (0, SOLO_SPIN_US, None):
        runtime = OnnxRuntime(model.precisions[precision], threads=2, spin_us=spin_us)
        runtime.run(inputs)
        stop = threading.Event()
        decoded = [0]

        def decode_loop() -> None:
            i = 0
            while not stop.is_set():
                decode_image(blobs[i % len(blobs)])
                decoded[0] += 1
                i += 1

        thread = threading.Thread(target=decode_loop, daemon=True)
        thread.start()
        started, images = time.perf_counter(), 0
        while time.perf_counter() - started < seconds:
            runtime.run(inputs)
            images += batch
        elapsed = time.perf_counter() - started
        stop.set()
        thread.join()
        runtime.close()
        out.append({"spin_us": spin_us, "model_images_per_s": round(images / elapsed, 1),
                    "decodes_per_s": round(decoded[0] / elapsed, 1)})
    return out


def measure_draft_large(model: BenchModel, photos: list[tuple[str, bytes]], labels: dict[str, int] | None = None,
                        count: int = 48, shorter_sides: tuple[int, ...] = (1024, 2048, 3024)) -> list[dict]:
    """Full vs draft decoding of dev photos re-encoded at phone sizes (quality 90), per size:
    decode + preprocess CPU time, top-1 agreement, and top-1 accuracy against ``labels``.

    Upscaled photos hold no detail the originals lacked, so this measures the decoder's speed
    and the effect of its reduced-scale IDCT on the answers, not what a real 12-MP lens adds."""
    from PIL import Image

    from imgcls.preprocess import decode_image, preprocess
    from imgcls.runtimes.onnx import OnnxRuntime

    pp = model.spec().preprocessing
    chosen = photos[:count]
    originals = [decode_image(blob).image for _, blob in chosen]
    truth = np.array([(labels or {}).get(name, -1) for name, _ in chosen])
    runtime = OnnxRuntime(model.precisions["fp32"], threads=2)
    rows = []
    for side in shorter_sides:
        large = []
        for image in originals:
            scale = side / min(image.size)
            big = image.resize((round(image.width * scale), round(image.height * scale)), Image.BICUBIC)
            buffer = io.BytesIO()
            big.save(buffer, format="JPEG", quality=90)
            large.append(buffer.getvalue())
        answers, cost = {}, {}
        for mode, draft_size in (("full", None), ("draft", pp.resize)):
            start = time.process_time()
            arrays = np.stack([preprocess(decode_image(b, draft_size=draft_size).image, pp) for b in large])
            cost[mode] = (time.process_time() - start) * 1000 / len(large)
            answers[mode] = run_in_chunks(runtime, arrays).argmax(1)
        labelled = truth >= 0
        row = {"photos": len(large), "shorter_side": side, "mean_kb": round(sum(map(len, large)) / len(large) / 1024),
               "full_ms": round(cost["full"], 2), "draft_ms": round(cost["draft"], 2),
               "top1_changed": int((answers["full"] != answers["draft"]).sum()), "model": model.key}
        if labelled.any():
            row.update({f"top1_{mode}": round(float((answers[mode][labelled] == truth[labelled]).mean()), 4)
                        for mode in answers})
        rows.append(row)
    runtime.close()
    return rows


def measure_torch_rss() -> dict:
    """RSS (MB) of a fresh interpreter after the server's imports, and after also importing torch."""
    probe = ("import imgcls.server.app, imgcls.server.runner, onnxruntime, numpy{extra}\n"
             "print([l.split()[1] for l in open('/proc/self/status') if l.startswith('VmRSS')][0])")
    out = {}
    for label, extra in (("server imports", ""), ("server imports + torch", ", torch")):
        done = subprocess.run([sys.executable, "-c", probe.format(extra=extra)], capture_output=True, text=True)
        out[label] = round(int(done.stdout.strip() or 0) / 1024, 1) if done.returncode == 0 else None
    return out
