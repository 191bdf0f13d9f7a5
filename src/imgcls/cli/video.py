"""`imgcls video FILE`: a timeline of what a video shows, and its merged segments."""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from rich.table import Table

from imgcls.cli._common import PRECISION_HELP, console, console_err, fail, progress_bar
from imgcls.cli.predict import DefaultPrecision, Lang, OutputFormat
from imgcls.errors import ImgclsError


def video(
    file: Path = typer.Argument(..., help="Video file (any container/codec FFmpeg decodes: MP4, MKV, WebM, AVI, ...)."),
    fps: Optional[float] = typer.Option(None, "--fps", min=0.001, max=240, help="Samples per second of video (default 1)."),
    keyframes_every: Optional[int] = typer.Option(None, "--keyframes-every", min=1, help="Classify every N-th keyframe instead of sampling by time (fastest: other frames are not decoded)."),
    top_k: int = typer.Option(5, "--top-k", "-k", min=1, max=1000, help="How many classes per sample."),
    lang: Lang = typer.Option(Lang.en, "--lang", "-l", help="Label language: en or zh."),
    output_format: Optional[OutputFormat] = typer.Option(None, "--format", "-f", help="table (segments), json (timeline + segments) or csv (timeline). Default: from the --output suffix, else table."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write the timeline to this file instead of stdout."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Catalogue name, imported bundle or bundle folder.", envvar="IMGCLS_MODEL"),
    precision: DefaultPrecision = typer.Option(DefaultPrecision.auto, "--precision", "-p", envvar="IMGCLS_PRECISION", help=PRECISION_HELP),
    min_segment: float = typer.Option(0.0, "--min-segment", min=0, help="Absorb segments shorter than this many seconds into a neighbour (removes flicker)."),
    batch_size: int = typer.Option(8, "--batch-size", min=1, max=256, help="Frames per model call."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="ONNX Runtime threads (default: all cores)."),
) -> None:
    """Classify sampled frames of a video: a timeline plus merged segments ("00:12–00:31 golden retriever").

    Exit code 0 on success, 1 when the video is truncated part-way (the readable part is reported),
    2 when the file is missing, not a video, corrupt, empty or uses an unsupported codec.
    """
    if fps is not None and keyframes_every is not None:
        fail("Use either --fps or --keyframes-every, not both.", 2)
    if output_format is None:
        suffix = output.suffix.lower() if output else ""
        output_format = {".json": OutputFormat.json, ".csv": OutputFormat.csv}.get(suffix, OutputFormat.table)
    from imgcls.engine import Classifier
    from imgcls.video import analyse_video, probe

    try:
        info = probe(file)  # before loading the model: a bad file fails in milliseconds
        classifier = Classifier(model, precision.value, threads=threads, batch_size=batch_size)
        rate = None if keyframes_every else (fps or 1.0)
        with progress_bar() as bar:
            task = bar.add_task(f"Classifying {escape(file.name)}", total=info.duration or None)
            timeline = analyse_video(file, classifier, fps=rate, keyframes_every=keyframes_every, top_k=top_k,
                                     lang=lang.value, min_segment=min_segment,
                                     on_progress=lambda t: bar.update(task, completed=t))
    except ImgclsError as exc:
        fail(exc.message, exc.exit_code)

    for warning in timeline.warnings:
        console_err.print(f"[yellow]Warning:[/] {escape(warning)}")
    text = render(timeline, output_format)
    if output:
        output.write_text(text, encoding="utf-8")
        console_err.print(f"Wrote {len(timeline.samples)} samples to {escape(str(output))}")
        print_segments(timeline, console)
    elif output_format is OutputFormat.table:
        console.print(segments_table(timeline))
    else:
        sys.stdout.write(text)
        if output_format is OutputFormat.csv:
            print_segments(timeline, console_err)  # CSV holds the timeline; segments for the reader
    console_err.print(f"{len(timeline.samples)} frames classified in {timeline.seconds:.1f} s "
                      f"({timeline.samples_per_second:.1f} frames/s).")
    raise typer.Exit(1 if timeline.warnings else 0)


def render(timeline, output_format: OutputFormat) -> str:
    """The timeline as JSON (timeline + segments), CSV (time,rank,class_index,label,score) or a text table."""
    if output_format is OutputFormat.json:
        return json.dumps(timeline.to_dict(), ensure_ascii=False, indent=2) + "\n"
    if output_format is OutputFormat.csv:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(["time", "rank", "class_index", "label", "score"])
        for sample in timeline.samples:
            for rank, entry in enumerate(sample.top, 1):
                writer.writerow([f"{sample.time:.3f}", rank, entry["class_index"], entry["label"], f"{entry['score']:.6f}"])
        return buffer.getvalue()
    with console.capture() as capture:
        console.print(segments_table(timeline))
    return capture.get()


def segments_table(timeline) -> Table:
    table = Table(title=f"{Path(timeline.path).name}: {timeline.model} ({timeline.precision}), "
                        f"{len(timeline.samples)} samples")
    table.add_column("time")
    table.add_column("label")
    table.add_column("mean score", justify="right")
    table.add_column("samples", justify="right")
    for segment in timeline.segments:
        table.add_row(f"{segment.describe().split(' ', 1)[0]}", escape(segment.label),
                      f"{segment.mean_score:.1%}", str(segment.samples))
    return table


def print_segments(timeline, target) -> None:
    for segment in timeline.segments:
        target.print(f"{escape(segment.describe())} [dim]({segment.mean_score:.0%})[/]", highlight=False)
