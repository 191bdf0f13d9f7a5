"""Writing a trained network as a bundle folder, atomically, with its ONNX artifact inside.

The bundle is assembled in a hidden sibling folder and renamed into place at the end, so an
interrupted or failed run never leaves a half-written bundle where a working one was.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from imgcls.catalog.bundles import is_bundle, write_bundle_config
from imgcls.catalog.store import sha256_file
from imgcls.errors import InputError

__all__ = ["WEIGHTS_FILE", "check_output", "bundle_name", "staging_dir", "save_weights", "finalize"]

WEIGHTS_FILE = "weights.pth"
_NAME_OK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def check_output(out: Path, overwrite: bool) -> None:
    """Refuse, before any work, an output we must not write to.

    An existing bundle is replaced only with ``overwrite``; a non-empty folder that is not a
    bundle is never deleted (it may be the user's photos).
    """
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file; give a folder for the bundle.")
    if out.is_dir() and any(out.iterdir()):
        if not is_bundle(out):
            raise InputError(f"--out {out} is a folder with other files in it; choose a new or empty folder.")
        if not overwrite:
            raise InputError(f"--out {out} already holds a model bundle; pass --overwrite to replace it.")


def bundle_name(explicit: str | None, out: Path) -> str:
    """The bundle's model name: ``--name``, else the output folder's name made safe."""
    if explicit is not None:
        if not _NAME_OK.match(explicit):
            raise InputError(
                f"--name {explicit!r} must start with a letter or digit and use only letters, digits, '.', '-' and '_'."
            )
        return explicit
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", out.resolve().name).strip("-._")
    return name or "bundle"


def staging_dir(out: Path) -> Path:
    staging = out.resolve().parent / f".{out.name}.partial-{os.getpid()}"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    return staging


def save_weights(folder: Path, state: dict) -> dict:
    """Save a full state_dict (plain tensors, loadable with ``weights_only=True``)."""
    import torch

    path = folder / WEIGHTS_FILE
    torch.save({k: v.detach().contiguous().clone() for k, v in state.items()}, path)
    return {"file": WEIGHTS_FILE, "sha256": sha256_file(path), "bytes": path.stat().st_size}


def finalize(staging: Path, out: Path, config: dict) -> Path:
    """Write config.json and move the staged bundle into place (replacing an old bundle)."""
    write_bundle_config(staging, config)
    out = out.resolve()
    if out.exists():
        if any(out.iterdir()) and not is_bundle(out):  # re-checked: it may have changed meanwhile
            raise InputError(f"--out {out} now holds other files; the bundle was left at {staging}.")
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        os.replace(out, old)
        os.replace(staging, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staging, out)
    return out
