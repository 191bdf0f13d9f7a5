"""`imgcls train`: fine-tune on a folder of your own classes and write a model bundle."""

from __future__ import annotations

import importlib.util
from enum import Enum
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from imgcls.catalog.entries import CATALOG
from imgcls.cli._common import DRAFT_HELP, console, console_err, fail


class Mode(str, Enum):
    linear = "linear"
    full = "full"


# The pretrained models one can start from are exactly the catalogue's.
Base = Enum("Base", {name: name for name in CATALOG}, type=str)


class RichReporter:
    """Renders training events: one live progress bar per stage, one line per epoch."""

    def __init__(self) -> None:
        self.progress = Progress(
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console_err,
            transient=True,
        )
        self.task = None
        # Only draw live bars on a terminal: behind a pipe Rich holds the epoch lines back until
        # the bars stop, so a supervising process (or a log) would see nothing until the end.
        self.live = console_err.is_terminal
        if self.live:
            self.progress.start()

    def stage(self, name: str, total: int | None = None) -> None:
        if self.task is not None:
            self.progress.remove_task(self.task)
        self.task = self.progress.add_task(name, total=total)

    def advance(self, amount: int = 1) -> None:
        if self.task is not None:
            self.progress.advance(self.task, amount)

    def epoch(self, record, total_epochs: int) -> None:
        # Linear epochs are L-BFGS iterations (a few ms each): print the first few, every tenth
        # and new bests; full epochs take minutes, so every one is printed.
        linear_like = total_epochs > 30
        if not linear_like or record.epoch <= 3 or record.epoch % 10 == 0 or record.best:
            mark = " [green]best[/]" if record.best else ""
            self.progress.console.print(
                f"epoch {record.epoch:>3}/{total_epochs}  "
                f"train loss {record.train_loss:.4f} acc {record.train_acc:6.1%}"
                f"  val loss {record.val_loss:.4f} acc {record.val_acc:6.1%}  ({record.seconds:.1f} s){mark}"
            )

    def message(self, text: str, level: str = "info") -> None:
        prefix = "[yellow]Warning:[/] " if level == "warning" else ""
        self.progress.console.print(prefix + escape(text))

    def done(self) -> None:
        if self.live:
            self.progress.stop()


def train(
    data_dir: Path = typer.Argument(
        ..., help="Folder with one sub-folder per class (the folder names become the labels)."
    ),
    out: Path = typer.Option(
        ..., "--out", "-o", help="Bundle folder to write (config.json, weights.pth, report/, onnx/)."
    ),
    base: Base = typer.Option(Base.efficientnet_lite0, "--base", help="Pretrained model to start from."),
    mode: Mode = typer.Option(
        Mode.linear,
        "--mode",
        help="linear: frozen backbone, features computed once (fast on a CPU). "
        "full: fine-tune all layers with augmentation.",
    ),
    val: Optional[Path] = typer.Option(
        None, "--val", help="Separate validation folder (same layout); default: split the training folder."
    ),
    val_split: float = typer.Option(
        0.2, "--val-split", help="Share of each class held out for validation (stratified, seeded)."
    ),
    epochs: Optional[int] = typer.Option(
        None,
        "--epochs",
        help="linear: L-BFGS iterations (default 100, stops when converged); "
        "full: passes over the data (default 10).",
    ),
    lr: Optional[float] = typer.Option(
        None,
        "--lr",
        help="linear: L-BFGS step scale (default 1.0); "
        "full: head learning rate, the backbone gets a tenth (default 1e-3).",
    ),
    weight_decay: Optional[float] = typer.Option(
        None, "--weight-decay", help="L2 strength (default: linear 1e-2 on standardised features, full 1e-4)."
    ),
    batch_size: int = typer.Option(32, "--batch-size", help="Images per step (full) or per feature batch (linear)."),
    image_size: Optional[int] = typer.Option(
        None,
        "--image-size",
        help="Centre-crop size (default: the base model's, 224); resize = round(size * 256 / 224).",
    ),
    seed: int = typer.Option(0, "--seed", help="Seed for the split, data order, augmentation and head init."),
    name: Optional[str] = typer.Option(
        None, "--name", help="Model name of the bundle (default: the --out folder name)."
    ),
    zh_names: Optional[Path] = typer.Option(
        None, "--zh-names", help="Chinese class names: JSON object {class: name} or TSV 'class<TAB>name'."
    ),
    threads: Optional[int] = typer.Option(
        None,
        "--threads",
        min=1,
        help="CPU threads for training (fixed for reproducibility; default: all cores, up to 8).",
    ),
    cache: bool = typer.Option(
        True,
        "--cache/--no-cache",
        help="linear: reuse features of unchanged images across runs (under $IMGCLS_HOME/cache).",
    ),
    draft: bool = typer.Option(
        True, "--draft/--no-draft", envvar="IMGCLS_DRAFT",
        help=DRAFT_HELP + " Train with the setting you will serve with (the server drafts by default).",
    ),
    export: bool = typer.Option(
        True, "--export/--no-export", help="Export and verify the fp32 ONNX artifact into the bundle."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing bundle at --out."),
) -> None:
    """Fine-tune a model on your own classes and write a self-describing bundle.

    The bundle is a model everywhere: imgcls predict --model BUNDLE, serve --model BUNDLE,
    models export/quantize BUNDLE, eval --model BUNDLE, models import BUNDLE.
    Ctrl-C during training keeps the best epoch so far and writes the bundle from it.
    """
    missing = [m for m in ("torch", "matplotlib") if importlib.util.find_spec(m) is None]
    if missing:
        fail(f"Training needs {', '.join(missing)}: pip install 'imgcls[train]'.", 2)
    from imgcls.training import TrainSettings
    from imgcls.training import train as run_training

    settings = TrainSettings(
        data_dir=data_dir,
        out=out,
        base=base.value,
        mode=mode.value,
        val_dir=val,
        val_split=val_split,
        epochs=epochs,
        lr=lr,
        weight_decay=weight_decay,
        batch_size=batch_size,
        image_size=image_size,
        seed=seed,
        threads=threads,
        name=name,
        zh_names=zh_names,
        feature_cache=cache,
        draft=draft,
        export_onnx=export,
        overwrite=overwrite,
    )
    reporter = RichReporter()
    try:
        result = run_training(settings, reporter)
    except KeyboardInterrupt:
        reporter.done()
        console_err.print("[yellow]Interrupted before the first epoch finished; no bundle was written.[/]")
        raise typer.Exit(130) from None
    finally:
        reporter.done()
    _summary(result)
    raise typer.Exit(130 if result.interrupted else 0)


def _summary(result) -> None:
    config, metrics = result.config, result.metrics
    training = config["training"]
    table = Table(title=f"{config['name']}: validation on {metrics['images']} images")
    for column in ("class", "train", "val", "precision", "recall"):
        table.add_column(column, justify="left" if column == "class" else "right")
    for class_name, train_count in zip(config["class_names"], training["train_images_per_class"]):
        row = metrics["per_class"][class_name]
        table.add_row(
            escape(class_name), str(train_count), str(row["support"]), f"{row['precision']:.1%}", f"{row['recall']:.1%}"
        )
    console.print(table)
    seconds = training["seconds"]
    console.print(
        f"Validation accuracy [bold]{metrics['accuracy']:.1%}[/] (loss {metrics['loss']:.4f}), epoch "
        f"{training['best_epoch']} of {training['epochs_run']} kept; training took {seconds['training']:.1f} s"
        + (f", ONNX export {seconds['onnx_export']:.1f} s" if "onnx_export" in seconds else "")
        + "."
    )
    if result.interrupted:
        console.print(
            f"[yellow]Training was interrupted; the bundle holds the best epoch so far ({training['best_epoch']}).[/]"
        )
    console.print(
        f"Bundle: [bold]{escape(str(result.bundle))}[/] (report: {escape(str(result.bundle / 'report' / 'report.md'))})"
    )
    console.print(f"Use it: imgcls predict --model {escape(str(result.bundle))} PHOTO.jpg")
