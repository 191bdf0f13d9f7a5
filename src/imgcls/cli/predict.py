"""`imgcls predict` and `imgcls eval`."""

from __future__ import annotations

import csv
import io
import json
import sys
from enum import Enum
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from rich.table import Table

from imgcls.choices import DefaultPrecision, Lang, RuntimeName
from imgcls.cli._common import DRAFT_HELP, PRECISION_HELP, console, console_err, expand_inputs, fail, progress_bar

PROGRESS_THRESHOLD = 8  # show a progress bar beyond a handful of files


class OutputFormat(str, Enum):
    table = "table"
    json = "json"
    csv = "csv"


class Engine(str, Enum):
    local = "local"
    ray = "ray"


def predict(
    paths: list[str] = typer.Argument(..., help="Image files, folders (searched recursively) or glob patterns."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Catalogue name, imported bundle or bundle folder. Default: resnet18 if installed, else efficientnet_lite0.", envvar="IMGCLS_MODEL"),
    precision: DefaultPrecision = typer.Option(DefaultPrecision.auto, "--precision", "-p", envvar="IMGCLS_PRECISION", help=PRECISION_HELP),
    top_k: int = typer.Option(5, "--top-k", "-k", min=1, max=1000, help="How many classes to report per image."),
    lang: Lang = typer.Option(Lang.en, "--lang", "-l", help="Label language: en or zh."),
    output_format: OutputFormat = typer.Option(OutputFormat.table, "--format", "-f", help="table, json or csv."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write results to this file instead of stdout (.parquet/.csv/.jsonl with --engine ray)."),
    batch_size: int = typer.Option(8, "--batch-size", min=1, max=256, help="Images per model call."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="ONNX Runtime threads (default: all cores; with --engine ray: per actor, default 1)."),
    draft: bool = typer.Option(True, "--draft/--no-draft", envvar="IMGCLS_DRAFT", help=DRAFT_HELP),
    runtime: RuntimeName = typer.Option(RuntimeName.onnxruntime, "--runtime", envvar="IMGCLS_RUNTIME", help="onnxruntime, or openvino after `imgcls models verify-openvino`."),
    engine: Engine = typer.Option(Engine.local, "--engine", help="local (this process) or ray (Ray Data; pip install 'imgcls[ray]')."),
    actors: int = typer.Option(1, "--actors", min=1, help="[ray] inference actors."),
    address: Optional[str] = typer.Option(None, "--address", help="[ray] join an existing Ray cluster (default: start a local one)."),
    part_rows: int = typer.Option(512, "--part-rows", min=1, help="[ray] results per part file: how much a crashed run can lose before resuming."),
) -> None:
    """Classify images. Unreadable files are reported and skipped; they never abort the run.

    Exit code 0 when every file was classified, 1 when some failed, 2 when none could be.
    """
    if engine is Engine.ray:
        from imgcls.distributed import predict_with_ray

        code = predict_with_ray(paths, model=model, precision=precision.value, top_k=top_k, lang=lang.value,
                                output=output, batch_size=batch_size, actors=actors, address=address,
                                threads=threads, part_rows=part_rows, draft=draft, runtime=runtime.value)
        raise typer.Exit(code)

    from imgcls.engine import Classifier

    files, problems = expand_inputs(paths)
    for problem in problems:
        console_err.print(f"[yellow]Warning:[/] {escape(problem)}")
    if not files:
        fail("No input files found.", 2)
    classifier = Classifier(model, precision.value, threads=threads, batch_size=batch_size, draft=draft,
                            runtime=runtime.value)
    results = []
    if len(files) > PROGRESS_THRESHOLD:
        with progress_bar() as bar:
            task = bar.add_task(f"Classifying with {classifier.name}", total=len(files))
            for prediction in classifier.predict_iter(files, top_k=top_k, lang=lang.value):
                results.append(prediction)
                bar.advance(task)
    else:
        results = list(classifier.predict_iter(files, top_k=top_k, lang=lang.value))

    for failed in (r for r in results if not r.ok):
        console_err.print(f"[yellow]Skipped[/] {escape(failed.source)}: {escape(failed.error.message)}")
    text = render(results, output_format, classifier.precision)
    if output:
        output.write_text(text, encoding="utf-8")
        console_err.print(f"Wrote {len(results)} results to {escape(str(output))}")
    elif output_format is OutputFormat.table:
        console.print(text_table(results, classifier.precision))
    else:
        sys.stdout.write(text)
    ok = sum(r.ok for r in results)
    raise typer.Exit(0 if ok == len(results) else (1 if ok else 2))


def render(results, output_format: OutputFormat, precision: str) -> str:
    """Results as text. Every row names the precision that answered, as `auto` may pick either."""
    if output_format is OutputFormat.json:
        rows = []
        for r in results:
            row = r.to_dict()
            rows.append({"file": row.pop("file"), "model": row.pop("model"), "precision": precision, **row})
        return json.dumps(rows, ensure_ascii=False, indent=2) + "\n"
    if output_format is OutputFormat.csv:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(["file", "model", "precision", "rank", "class_index", "label", "score", "error"])
        for r in results:
            if not r.ok:
                writer.writerow([r.source, r.model, precision, "", "", "", "", r.error.message])
            for rank, entry in enumerate(r.top, 1):
                writer.writerow([r.source, r.model, precision, rank, entry["class_index"], entry["label"],
                                 f"{entry['score']:.6f}", ""])
        return buffer.getvalue()
    table = text_table(results, precision)
    with console.capture() as capture:
        console.print(table)
    return capture.get()


def text_table(results, precision: str) -> Table:
    model = results[0].model if results else ""
    table = Table(title=f"{model} ({precision})", show_lines=False)
    table.add_column("file", overflow="fold")
    table.add_column("top classes (score)")
    for r in results:
        if r.ok:
            tops = ", ".join(f"{escape(t['label'])} [dim]({t['score']:.1%})[/]" for t in r.top)
            table.add_row(escape(r.source), tops)
        else:
            table.add_row(escape(r.source), f"[red]{escape(r.error.message)}[/]")
    return table


def evaluate(
    directory: Path = typer.Argument(..., exists=True, file_okay=False, help="Folder with the images."),
    labels: Path = typer.Option(..., "--labels", exists=True, dir_okay=False, help="CSV with columns file,class_index."),
    model: Optional[str] = typer.Option(None, "--model", "-m", envvar="IMGCLS_MODEL"),
    precision: DefaultPrecision = typer.Option(DefaultPrecision.auto, "--precision", "-p", envvar="IMGCLS_PRECISION", help=PRECISION_HELP),
    batch_size: int = typer.Option(16, "--batch-size", min=1, max=256),
    threads: Optional[int] = typer.Option(None, "--threads", min=1),
    draft: bool = typer.Option(True, "--draft/--no-draft", envvar="IMGCLS_DRAFT", help=DRAFT_HELP),
    runtime: RuntimeName = typer.Option(RuntimeName.onnxruntime, "--runtime", envvar="IMGCLS_RUNTIME", help="onnxruntime, or openvino after `imgcls models verify-openvino`."),
    as_json: bool = typer.Option(False, "--json", help="Print the figures as JSON."),
) -> None:
    """Top-1 / top-5 accuracy of a model on a labelled folder."""
    from imgcls.engine import Classifier

    try:
        with labels.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        truth = {row["file"]: int(row["class_index"]) for row in rows}
    except (KeyError, ValueError, UnicodeDecodeError):
        fail("The labels CSV needs columns file,class_index with integer class indices.", 2)
    if not truth:
        fail("The labels CSV has no rows.", 2)
    classifier = Classifier(model, precision.value, threads=threads, batch_size=batch_size, draft=draft,
                            runtime=runtime.value)
    expected_by_source = {str(directory / name): index for name, index in truth.items()}
    files = [Path(source) for source in expected_by_source]
    top1 = top5 = failed = 0
    with progress_bar() as bar:
        task = bar.add_task(f"Evaluating {classifier.name}", total=len(files))
        for prediction in classifier.predict_iter(files, top_k=5):
            bar.advance(task)
            if not prediction.ok:
                failed += 1
                continue
            expected = expected_by_source[prediction.source]
            indices = [t["class_index"] for t in prediction.top]
            top1 += indices[0] == expected
            top5 += expected in indices
    scored = len(files) - failed
    figures = {
        "model": classifier.name, "precision": classifier.precision, "images": len(files), "failed": failed,
        "top1": top1 / scored if scored else 0.0, "top5": top5 / scored if scored else 0.0,
    }
    if as_json:
        sys.stdout.write(json.dumps(figures, indent=2) + "\n")
    else:
        console.print(f"[bold]{classifier.name}[/] ({classifier.precision}) on {scored} images"
                      f"{f' ({failed} unreadable)' if failed else ''}: "
                      f"top-1 [bold]{figures['top1']:.2%}[/], top-5 [bold]{figures['top5']:.2%}[/]")
    raise typer.Exit(0 if scored else 2)
