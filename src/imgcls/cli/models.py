"""`imgcls models list|pull|import|export|quantize|verify-openvino`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from rich.table import Table

from imgcls.choices import Precision
from imgcls.cli._common import console, console_err, fail, image_files, progress_bar

app = typer.Typer(help="List, install, export and quantise models.", no_args_is_help=True)


@app.command("list")
def list_command(as_json: bool = typer.Option(False, "--json", help="Print as JSON.")) -> None:
    """Show each model, whether it is available, why not, and which verified artifacts exist."""
    from imgcls.artifacts import find_artifact
    from imgcls.catalog import default_model_name, list_models, resolve_model
    from imgcls.errors import ImgclsError

    from imgcls.runtimes.openvino import openvino_available, require_verification

    rows = list_models()
    default = default_model_name()
    check_openvino = openvino_available()
    for row in rows:
        row["default"] = row["name"] == default
        row["artifacts"] = []
        row["openvino"] = []  # artifacts verified to serve on OpenVINO on this machine
        if row["available"]:
            for precision in ("fp32", "int8"):
                try:
                    spec = resolve_model(row["name"])
                    artifact = find_artifact(spec, precision)
                    row["artifacts"].append(precision)
                    if check_openvino:
                        require_verification(spec, precision, artifact)
                        row["openvino"].append(precision)
                except ImgclsError:
                    pass
    if as_json:
        typer.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    table = Table(title="imgcls models")
    for column in ("name", "available", "artifacts", "details"):
        table.add_column(column)
    for row in rows:
        name = f"{row['name']} [dim](default)[/]" if row["default"] else row["name"]
        artifacts = [p + (" (+openvino)" if p in row["openvino"] else "") for p in row["artifacts"]]
        table.add_row(name, "[green]yes[/]" if row["available"] else "[red]no[/]",
                      ", ".join(artifacts) or "-", escape(row["detail"]))
    console.print(table)


@app.command("pull")
def pull_command(
    name: str = typer.Argument(..., help="Catalogue model, e.g. resnet18."),
    url: Optional[str] = typer.Option(None, "--url", help="Download from this mirror instead of the official address (the checksum is still enforced)."),
) -> None:
    """Download a model's official weights, verify SHA-256, install them into the model store."""
    from imgcls.catalog.entries import get_entry
    from imgcls.catalog.store import pull_weights

    entry = get_entry(name)
    with progress_bar(transient=False) as bar:
        task = bar.add_task(f"Downloading {entry.weights.filename}", total=entry.weights.size_bytes)

        def on_progress(done: int, total: int | None) -> None:
            bar.update(task, completed=done, total=total or entry.weights.size_bytes)

        target = pull_weights(entry, url=url, progress=on_progress)
    console_err.print(f"[green]Verified and installed[/] {escape(str(target))}")


@app.command("import")
def import_command(
    path: Path = typer.Argument(..., exists=True, help="A weights file (e.g. resnet18-f37072fd.pth) or a bundle folder."),
    name: Optional[str] = typer.Option(None, "--name", help="Which catalogue model the weights file is for (default: recognised by checksum)."),
) -> None:
    """Verify and install weights or a fine-tuned bundle brought in by hand (air-gapped sites)."""
    from imgcls.catalog.bundles import import_bundle, is_bundle
    from imgcls.catalog.entries import CATALOG, get_entry
    from imgcls.catalog.store import import_weights, sha256_file

    if path.is_dir():
        if not is_bundle(path):
            fail(f"{path} is a folder but not a model bundle (no config.json).")
        target = import_bundle(path)
        console_err.print(f"[green]Imported bundle[/] into {escape(str(target))}")
        return
    if name:
        entry = get_entry(name)
    else:
        digest = sha256_file(path)
        matches = [e for e in CATALOG.values() if e.weights.sha256 == digest]
        if not matches:
            known = ", ".join(f"{e.weights.filename} ({e.name})" for e in CATALOG.values() if e.weights.url)
            fail(f"{path.name} does not match the checksum of any known weights ({known}). "
                 "The file is corrupt, incomplete or not the official weights.", 3)
        entry = matches[0]
    target = import_weights(entry, path)
    console_err.print(f"[green]Verified and installed[/] {entry.name} weights at {escape(str(target))}")


@app.command("export")
def export_command(
    model: str = typer.Argument(..., help="Catalogue name, imported bundle or bundle folder."),
    out: Optional[Path] = typer.Option(None, "--out", help="Write the artifact here instead of the model store."),
) -> None:
    """Export the fp32 ONNX artifact and verify it against PyTorch before caching it."""
    from imgcls.artifacts import export_fp32
    from imgcls.catalog import resolve_model

    spec = resolve_model(model)
    with console_err.status(f"Exporting {spec.name} to ONNX and verifying against PyTorch..."):
        manifest = export_fp32(spec, out_dir=out)
    _print_manifest(manifest, out or None)


@app.command("quantize")
def quantize_command(
    model: str = typer.Argument(..., help="Catalogue name, imported bundle or bundle folder."),
    calibration: Optional[Path] = typer.Option(None, "--calibration", exists=True, file_okay=False, help="Folder of your own photos to calibrate activation ranges (100+ recommended)."),
    verify: Optional[Path] = typer.Option(None, "--verify", exists=True, file_okay=False, help="Separate folder for the INT8-vs-fp32 agreement check (default: the calibration photos)."),
    method: str = typer.Option("minmax", "--method", help="Calibration: minmax, percentile or entropy."),
    max_images: int = typer.Option(300, "--max-images", min=1, help="Use at most this many calibration photos."),
    keep_first_last_fp32: bool = typer.Option(True, "--keep-first-last-fp32/--quantize-all", help="Keep the stem conv and classifier in fp32."),
    draft: bool = typer.Option(True, "--draft/--no-draft", envvar="IMGCLS_DRAFT", help="Decode large calibration JPEGs at reduced scale, as `serve` does by default; --no-draft for a --no-draft server."),
    save_table: Optional[Path] = typer.Option(None, "--save-table", dir_okay=False, help="Also write the calibrated ranges to this file: `--table FILE` rebuilds the same artifact elsewhere without the photos."),
    table: Optional[Path] = typer.Option(None, "--table", exists=True, dir_okay=False, help="Build from a calibration table instead of photos (default without --calibration: the model's own table, if it ships one)."),
) -> None:
    """Build a static INT8 (QDQ, per-channel) artifact calibrated on your photos (or from a calibration
    table); verify vs fp32."""
    from imgcls.artifacts import quantize_int8, quantize_int8_from_table
    from imgcls.catalog import resolve_model

    if method not in ("minmax", "percentile", "entropy"):
        fail("--method must be minmax, percentile or entropy.")
    if calibration is not None and table is not None:
        fail("Give either --calibration DIR (photos) or --table FILE, not both.")
    if save_table is not None and calibration is None:
        fail("--save-table needs --calibration DIR: the table holds the ranges calibrated on those photos.")
    spec = resolve_model(model)
    table = table or (spec.calibration_table if calibration is None else None)
    if calibration is None and table is None:
        fail(f"{spec.name} ships no calibration table: give --calibration DIR (100+ of your own photos).")

    def images(folder: Path) -> list[Path]:
        found = image_files(folder)
        if not found:
            fail(f"No images found in {folder}.")
        return found

    if calibration is None:
        with console_err.status(f"Quantising {spec.name} from the calibration table {table.name}..."):
            manifest = quantize_int8_from_table(spec, table, images(verify) if verify else None, draft=draft)
    else:
        with console_err.status(f"Calibrating and quantising {spec.name}..."):
            manifest = quantize_int8(spec, images(calibration), images(verify) if verify else None, method=method,
                                     max_calibration=max_images, exclude_first_last=keep_first_last_fp32, draft=draft,
                                     save_table=save_table)
    _print_manifest(manifest, None)
    if save_table is not None:
        console_err.print(f"Calibration table written to {escape(str(save_table))}: "
                          f"`imgcls models quantize {escape(model)} --table {escape(str(save_table))}` rebuilds this artifact.")


@app.command("verify-openvino")
def verify_openvino_command(
    model: str = typer.Argument(..., help="Catalogue name, imported bundle or bundle folder."),
    precision: Precision = typer.Option(Precision.fp32, "--precision", "-p", help="Which verified artifact to run on OpenVINO."),
    images: Optional[Path] = typer.Option(None, "--images", exists=True, file_okay=False, help="Folder of your own photos to verify on (recommended; default: 32 synthetic images, a harder test)."),
    max_images: int = typer.Option(300, "--max-images", min=1, help="Use at most this many photos."),
) -> None:
    """Let an artifact serve on OpenVINO (bf16 where the CPU has it): top-1 agreement with ONNX Runtime >= 95%."""
    from imgcls.catalog import resolve_model
    from imgcls.runtimes.openvino import verify_openvino

    spec = resolve_model(model)
    photos = None
    if images is not None:
        photos = image_files(images)[:max_images]
        if not photos:
            fail(f"No images found in {images}.")
    with console_err.status(f"Verifying {spec.name} {precision.value} on OpenVINO..."):
        record = verify_openvino(spec, precision.value, photos)
    timing = record.get("precision_timing_ms") or {}
    why = f", batch 1: f32 {timing['f32_ms']} ms, bf16 {timing['bf16_ms']} ms" if timing else ""
    console_err.print(f"[green]Verified[/] {spec.name} {precision.value} on OpenVINO {record['openvino']} "
                      f"({record['inference_precision']}{why}): top-1 agreement {record['top1_agreement']:.1%} on "
                      f"{record['images']} {record['source']}, max |logit diff| {record['max_abs_logit_diff']}. "
                      f"Serve it with --runtime openvino.")


def _print_manifest(manifest: dict, out: Optional[Path]) -> None:
    verification = manifest["verification"]
    figures = ", ".join(f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v}" for k, v in verification.items()
                        if k not in ("method", "passed"))
    console_err.print(f"[green]Verified[/] {manifest['model']} {manifest['precision']} artifact "
                      f"({manifest['bytes'] / 1e6:.1f} MB): {escape(figures)}")
