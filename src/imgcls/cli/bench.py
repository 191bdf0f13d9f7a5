"""`imgcls bench`: the benchmark suite, side by side with the seed baseline."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from imgcls.cli._common import console, console_err, fail


def _ints(text: Optional[str], flag: str) -> Optional[tuple[int, ...]]:
    if text is None:
        return None
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        fail(f"{flag} takes comma-separated whole numbers, e.g. 1,8,32.")
    if not values:
        fail(f"{flag} needs at least one number.")
    return values


def _names(text: Optional[str]) -> Optional[tuple[str, ...]]:
    return None if text is None else tuple(part.strip() for part in text.split(",") if part.strip())


def bench(
    quick: bool = typer.Option(False, "--quick", help="Short run for development: fewer configurations, 3 s windows."),
    out: Path = typer.Option(Path("bench-results"), "--out", help="Folder for results JSON, chart, logs, the "
                             "benchmark's model store and the baseline's venv."),
    skip_baseline: bool = typer.Option(False, "--skip-baseline", help="Do not start the seed baseline (no ratios)."),
    sections: Optional[str] = typer.Option(None, "--sections", help="Comma-separated subset of: model, http, "
                                           "baseline, memory, breakdown (default: all of these), plus the optional "
                                           "levers (tuning experiments)."),
    models: Optional[str] = typer.Option(None, "--models", help="Comma-separated: lite0, resnet18 (default: both)."),
    concurrency: Optional[str] = typer.Option(None, "--concurrency", help="HTTP concurrency levels (default 1,8,32)."),
    batches: Optional[str] = typer.Option(None, "--batches", help="Model-only batch sizes (default 1,4,8)."),
    threads: Optional[str] = typer.Option(None, "--threads", help="Model-only thread counts (default 1,2)."),
    seconds: Optional[float] = typer.Option(None, "--seconds", min=0.1, help="Recorded seconds per HTTP level "
                                            "(default 8; quick 3)."),
    memory_requests: Optional[int] = typer.Option(None, "--memory-requests", min=1, help="Requests for the peak-RSS "
                                                  "run (default 1000)."),
    cold_runs: Optional[int] = typer.Option(None, "--cold-runs", min=1, help="Cold starts to time (default 3)."),
    photos: Optional[Path] = typer.Option(None, "--photos", help="Folder of JPEGs (default: "
                                          "../shared/data/imagenet-samples/dev)."),
    baseline: Optional[Path] = typer.Option(None, "--baseline", help="The seed baseline's app.py (default: "
                                            "../shared/peers/seed_baseline/app.py)."),
    cache: Optional[Path] = typer.Option(None, "--cache", help="Model store for the benchmark (default OUT/cache)."),
    baseline_venv: Optional[Path] = typer.Option(None, "--baseline-venv", help="The baseline's own venv, created "
                                                 "when missing (default OUT/.venv-baseline)."),
    server_arg: Optional[list[str]] = typer.Option(None, "--server-arg", help="Extra `imgcls serve` flag for every "
                                                   "server started (repeatable), e.g. --server-arg=--max-batch=4."),
    no_torch: bool = typer.Option(False, "--no-torch-reference", help="Skip the PyTorch eager rows of section 1."),
) -> None:
    """Benchmark models and the HTTP server on real JPEGs, side by side with the seed baseline.

    Prints tables (model-only latency, HTTP req/s and latency with the ratio to the baseline, memory and cold start, a per-image CPU breakdown, and the issue's targets), and writes OUT/results-*.json, OUT/latest.json and a PNG chart. The first run builds the benchmark's artifacts and the baseline's venv (a few minutes); later runs reuse them. Run it on an otherwise idle machine.
    """
    from imgcls.bench.report import print_report
    from imgcls.bench.suite import SECTIONS, BenchSettings, run_suite, write_results
    from imgcls.errors import ImgclsError

    overrides = dict(
        out=out, cache=cache, photos=photos, baseline_app=baseline, baseline_venv=baseline_venv, skip_baseline=skip_baseline,
        sections=_names(sections), models=_names(models), concurrency=_ints(concurrency, "--concurrency"),
        batches=_ints(batches, "--batches"), threads=_ints(threads, "--threads"), http_seconds=seconds,
        memory_requests=memory_requests, cold_runs=cold_runs, server_args=list(server_arg or []),
        torch_reference=not no_torch,
    )
    overrides = {k: v for k, v in overrides.items() if v is not None}
    overrides.setdefault("sections", SECTIONS)
    settings = BenchSettings.quick_defaults(**overrides) if quick else BenchSettings(**overrides)

    def progress(message: str) -> None:
        console_err.print(f"[dim]· {message}[/]")

    try:
        doc = run_suite(settings, progress)
    except ImgclsError as exc:
        fail(exc.message, exc.exit_code)
    path, chart = write_results(doc, settings.out)
    print_report(doc, console)
    console.print(f"Results: {path}" + (f"; chart: {chart}" if chart else ""))
