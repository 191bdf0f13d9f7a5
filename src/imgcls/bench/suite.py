"""The benchmark run: settings, the order of the sections, and what gets written.

Order matters on a 2-core machine: in-process model timings first (nothing else running), then
the HTTP runs (one server at a time, the load generator in this process), the baseline, the
memory/cold-start runs, and the CPU breakdown, which reuses the HTTP figures.
"""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from imgcls.errors import InputError

__all__ = ["BenchSettings", "run_suite", "SECTIONS", "OPTIONAL_SECTIONS"]

SECTIONS = ("model", "http", "baseline", "memory", "breakdown")  # the default run
OPTIONAL_SECTIONS = ("levers",)  # tuning experiments, on request (see imgcls.bench.levers)


@dataclass
class BenchSettings:
    out: Path = Path("bench-results")
    cache: Path | None = None  # model store (IMGCLS_HOME) of the benchmark; default <out>/cache
    photos: Path | None = None
    baseline_app: Path | None = None
    baseline_venv: Path | None = None  # default <out>/.venv-baseline
    quick: bool = False
    sections: tuple[str, ...] = SECTIONS
    skip_baseline: bool = False
    models: tuple[str, ...] = ("lite0", "resnet18")
    batches: tuple[int, ...] = (1, 4, 8)
    threads: tuple[int, ...] = (1, 2)
    concurrency: tuple[int, ...] = (1, 8, 32)
    model_budget_s: float = 1.5  # per model-only configuration
    http_seconds: float = 8.0  # recorded seconds per HTTP configuration
    http_warmup_s: float = 1.0
    memory_requests: int = 1000
    memory_concurrency: int = 32
    cold_runs: int = 3
    server_args: list[str] = field(default_factory=list)  # extra `imgcls serve` flags (tuning experiments)
    torch_reference: bool = True

    @classmethod
    def quick_defaults(cls, **overrides) -> "BenchSettings":
        """A short run for development: fewer configurations, shorter windows (figures are noisier)."""
        base = dict(quick=True, batches=(1, 8), threads=(2,), concurrency=(1, 8), model_budget_s=0.5,
                    http_seconds=3.0, http_warmup_s=0.5, memory_requests=300, cold_runs=1)
        base.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**base)

    def validate(self) -> None:
        known = SECTIONS + OPTIONAL_SECTIONS
        unknown = [s for s in self.sections if s not in known]
        if unknown:
            raise InputError(f"Unknown section(s): {', '.join(unknown)}. Choose from {', '.join(known)}.")
        if not self.sections:
            raise InputError("Choose at least one section.")
        for name, values in (("--batches", self.batches), ("--threads", self.threads),
                             ("--concurrency", self.concurrency)):
            if not values or any(v < 1 or v > 256 for v in values):
                raise InputError(f"{name} takes numbers between 1 and 256.")
        if self.http_seconds <= 0 or self.model_budget_s <= 0:
            raise InputError("--seconds must be above 0.")

    @property
    def cache_dir(self) -> Path:
        return (self.cache or self.out / "cache").resolve()

    @property
    def venv_dir(self) -> Path:
        return (self.baseline_venv or self.out / ".venv-baseline").resolve()


def _machine() -> dict:
    import onnxruntime

    from imgcls.runtimes import cpu_name

    load = os.getloadavg()
    return {
        "cpu": cpu_name(), "cores": len(os.sched_getaffinity(0)), "python": platform.python_version(),
        "onnxruntime": onnxruntime.__version__, "platform": platform.platform(),
        "load_average_at_start": [round(x, 2) for x in load],
    }


def run_suite(settings: BenchSettings, progress: Callable[[str], None] = lambda s: None) -> dict:
    """Run the chosen sections and return the results document (also written as JSON + PNG)."""
    from imgcls.bench import http_bench
    from imgcls.bench.data import find_dev_photos, load_photos, prepare_models, read_labels
    from imgcls.bench.model_latency import run_model_section

    settings.validate()
    started = time.time()
    out = settings.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    logs = out / "logs"
    photos_dir = find_dev_photos(settings.photos)
    photos = load_photos(photos_dir)
    sections = set(settings.sections)
    if settings.skip_baseline:
        sections.discard("baseline")
    doc: dict = {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": _machine(),
                 "settings": {"quick": settings.quick, "sections": sorted(sections), "models": list(settings.models),
                              "batches": list(settings.batches), "threads": list(settings.threads),
                              "concurrency": list(settings.concurrency), "http_seconds": settings.http_seconds,
                              "memory_requests": settings.memory_requests, "cold_runs": settings.cold_runs,
                              "server_args": settings.server_args},
                 "photos": {"folder": str(photos_dir), "count": len(photos),
                            "mean_kb": round(sum(len(b) for _, b in photos) / len(photos) / 1024, 1)},
                 "load_generator": "imgcls.bench.loadgen: asyncio streams, prebuilt HTTP/1.1 multipart requests, "
                                   "keep-alive, closed loop, one JPEG per request, in the benchmark process"}
    doc["server_config"] = _server_config(settings.server_args)
    progress(f"preparing models ({', '.join(settings.models)}) in {settings.cache_dir}")
    models = prepare_models(list(settings.models), settings.cache_dir, photos_dir)
    doc["models"] = {m.key: {"reference": m.reference, "title": m.title, "precisions": list(m.precisions),
                             "int8": m.int8_note, "openvino": m.openvino} for m in models}

    if "model" in sections:
        rows = run_model_section(models, photos, batches=settings.batches, threads=settings.threads,
                                 budget_s=settings.model_budget_s, include_torch=settings.torch_reference,
                                 progress=progress)
        doc["model_latency"] = [r.to_dict() for r in rows]

    plan = http_bench.HttpPlan(settings.concurrency, settings.http_seconds, settings.http_warmup_s,
                               settings.server_args)
    imgcls_http = "http" in sections or "breakdown" in sections
    baseline_passes: list[tuple[list, dict]] = []
    if "baseline" in sections:
        from imgcls.bench.servers import ensure_baseline_venv, find_baseline_app

        app = find_baseline_app(settings.baseline_app)
        torch_version = ensure_baseline_venv(settings.venv_dir, progress)
        resnet = next((m for m in models if m.key == "resnet18"), None)
        weights = resnet.torch_weights if resnet else None

        # The baseline runs before and after imgcls and ratios use the mean of the two passes,
        # so a host that speeds up or slows down during the run (this shared VM does, by
        # 10-30%) does not bias the ratio one way.
        def baseline_pass(when: str) -> None:
            baseline_passes.append(http_bench.run_baseline_http(settings.venv_dir, app, weights, photos, plan,
                                                                logs, progress, when=when))

        baseline_pass("before imgcls" if imgcls_http else "")

    if imgcls_http:
        rows, facts = http_bench.run_imgcls_http(models, photos, plan, logs, progress)
        doc["http"] = [r.to_dict() for r in rows]
        doc["servers"] = facts

    if baseline_passes:
        if imgcls_http:
            baseline_pass("after imgcls")
        doc["baseline"] = {"app": str(app), "venv": str(settings.venv_dir), "torch": torch_version,
                           "weights": "the benchmark's generated ResNet-18 weights" if resnet else "random (seedless)",
                           "rows": [r.to_dict() for rows, _ in baseline_passes for r in rows],
                           "start_to_ready_s": baseline_passes[0][1]["start_to_ready_s"],
                           "peak_rss_mb_kernel": max(f["peak_rss_mb_kernel"] for _, f in baseline_passes)}

    if "memory" in sections:
        target = models[0]
        precision = "int8" if "int8" in target.precisions else "fp32"
        memory = http_bench.run_memory(target, precision, photos, requests=settings.memory_requests,
                                       concurrency=settings.memory_concurrency, cold_runs=settings.cold_runs,
                                       log_dir=logs, server_args=settings.server_args, progress=progress)
        doc["memory"] = memory.to_dict()

    if "breakdown" in sections:
        doc["breakdown"] = _breakdown(models, photos, doc.get("http", []), settings, progress)

    if "levers" in sections:
        doc["levers"] = _levers(models, photos, read_labels(photos_dir), settings, logs, progress)

    doc["seconds"] = round(time.time() - started, 1)
    doc["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    return doc


def _server_config(server_args: list[str]) -> dict:
    """The `imgcls serve` settings the HTTP sections ran with (defaults + --server-arg flags)."""
    from dataclasses import asdict

    from imgcls.server.config import ServerConfig, available_cores

    defaults = asdict(ServerConfig())
    keep = ("max_batch", "max_wait_ms", "max_queue", "threads", "model_workers", "decode_threads", "log_level")
    config = {k: defaults[k] for k in keep if k in defaults}
    config["cores"] = available_cores()
    config["extra_args"] = list(server_args)
    return config


def _flag(server_args: list[str], name: str) -> str | None:
    value = None
    for i, arg in enumerate(server_args):
        if arg.startswith(f"{name}="):
            value = arg.split("=", 1)[1]
        elif arg == name and i + 1 < len(server_args):
            value = server_args[i + 1]
    return value


def server_threads(server_args: list[str]) -> int:
    """ONNX Runtime threads per model call in the servers started (their --threads, else the default)."""
    from imgcls.runtimes import default_threads
    from imgcls.server.config import ServerConfig

    value = _flag(server_args, "--threads")
    return int(value) if value is not None else (ServerConfig().threads or default_threads())


def server_workers(server_args: list[str]) -> int:
    """Concurrent model calls per model in the servers started (--model-workers, else the default)."""
    from imgcls.server.config import ServerConfig

    value = _flag(server_args, "--model-workers")
    return int(value) if value is not None else ServerConfig().workers_per_model


def _breakdown(models, photos, http_rows: list[dict], settings: BenchSettings, progress) -> dict:
    from imgcls.bench import breakdown
    from imgcls.bench.data import runtime_plan

    cores = len(os.sched_getaffinity(0))
    reference_c = 8 if 8 in settings.concurrency else max(settings.concurrency)
    rows = []
    for model, precision, runtime in runtime_plan(models):
        label = model.runtime_label(precision, runtime)
        http_row = next((r for r in http_rows if r["model"] == model.key and r["precision"] == precision
                         and r.get("runtime", "onnxruntime") == label and r["concurrency"] == reference_c), None)
        batch = round(http_row["mean_batch"]) if http_row and http_row.get("mean_batch") else 1
        progress(f"breakdown: {model.key} {precision} {label} (batch {batch})")
        stages = breakdown.measure_stages(model, precision, photos, batch=batch,
                                          threads=server_threads(settings.server_args),
                                          workers=server_workers(settings.server_args), runtime=runtime)
        rows.append(breakdown.combine(stages, http_row, cores))
    progress("breakdown: JPEG draft mode on the dev photos")
    draft = breakdown.measure_draft(models[0], photos)
    return {"cores": cores, "reference_concurrency": reference_c, "rows": rows, "draft": draft.to_dict()}


def _levers(models, photos, labels, settings: BenchSettings, logs: Path, progress) -> dict:
    from imgcls.bench import levers

    target = models[0]
    precision = "int8" if "int8" in target.precisions else "fp32"
    concurrency = settings.concurrency
    out: dict = {"model": target.key, "precision": precision}
    progress("levers: torch in the serving process (RSS)")
    out["torch_rss_mb"] = levers.measure_torch_rss()
    progress("levers: ONNX Runtime spinning vs a concurrent decode thread")
    out["spinning"] = levers.measure_spinning(target, photos, precision)
    progress("levers: JPEG draft mode on phone-sized re-encodes")
    out["draft_large"] = levers.measure_draft_large(target, photos, labels, count=16 if settings.quick else 48)
    out["server_variants"] = levers.run_server_variants(
        target, photos, precision=precision, concurrency=concurrency, seconds=settings.http_seconds,
        warmup_s=settings.http_warmup_s, log_dir=logs, progress=progress)
    return out


def write_results(doc: dict, out: Path) -> tuple[Path, Path | None]:
    """results-<timestamp>.json (+ .md tables) + latest.json, and the chart (None without matplotlib)."""
    from imgcls.bench.report import markdown, write_chart

    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = out / f"results-{stamp}.json"
    text = json.dumps(doc, indent=1, ensure_ascii=False)
    path.write_text(text + "\n", encoding="utf-8")
    (out / "latest.json").write_text(text + "\n", encoding="utf-8")
    (out / f"results-{stamp}.md").write_text(markdown(doc) + "\n", encoding="utf-8")
    chart = write_chart(doc, out / f"latency-{stamp}.png")
    if chart is not None:
        (out / "latency-latest.png").write_bytes(chart.read_bytes())
    return path, chart
