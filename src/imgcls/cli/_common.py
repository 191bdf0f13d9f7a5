"""Shared CLI helpers: consoles, error exit, path expansion, progress bars."""

from __future__ import annotations

import glob
from pathlib import Path
from typing import NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

console = Console()
console_err = Console(stderr=True, soft_wrap=True)

DRAFT_HELP = ("Decode large JPEGs (shorter side >= 1024 px for a 256 px resize) at 1/2-1/8 scale, never below "
              "twice the resize: 2-4x faster on phone photos, same accuracy in our tests. --no-draft decodes "
              "every pixel, exactly like torchvision.")
PRECISION_HELP = ("auto: int8 where the model has a verified INT8 artifact or ships a calibration table (the "
                  "embedded efficientnet_lite0 does: built on first use), else fp32, as `imgcls serve` does. "
                  "fp32, or int8 (other models need `imgcls models quantize` first).")


def fail(message: str, code: int = 2) -> NoReturn:
    console_err.print(f"[bold red]Error:[/] {escape(message)}")
    raise typer.Exit(code)


def image_files(folder: Path, *, regular_only: bool = True) -> list[Path]:
    """Image files under ``folder``, recursively, by suffix (the decoder then goes by content).
    ``regular_only=False`` also lists entries that only look like image files (a broken link, a
    pipe), so that `predict` reports each of them instead of leaving it silently out."""
    from imgcls.preprocess import IMAGE_SUFFIXES

    named = (p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    return sorted(p for p in named if (p.is_file() if regular_only else not p.is_dir()))


def expand_inputs(paths: list[str]) -> tuple[list[Path], list[str]]:
    """Files as given; directories walked recursively for image files; globs expanded.

    Returns (files, problems) where problems are inputs that matched nothing.
    """
    files: list[Path] = []
    problems: list[str] = []
    for text in paths:
        path = Path(text).expanduser()
        if path.is_dir():
            found = image_files(path, regular_only=False)
            if not found:
                problems.append(f"{text}: no image files in this folder")
            files.extend(found)
        elif path.exists():
            files.append(path)
        elif any(ch in text for ch in "*?["):
            matched = sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file())
            if not matched:
                problems.append(f"{text}: pattern matched no files")
            files.extend(matched)
        else:
            files.append(path)  # reported per file as "No such file."
    seen: set[Path] = set()
    unique = [f for f in files if not (f in seen or seen.add(f))]
    return unique, problems


def progress_bar(transient: bool = True) -> Progress:
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console_err,
        transient=transient,
    )
