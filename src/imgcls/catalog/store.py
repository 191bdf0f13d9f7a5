"""The imgcls model store: where weights, bundles and ONNX artifacts live on disk.

Layout under ``$IMGCLS_HOME`` (default ``~/.cache/imgcls``)::

    weights/<filename>                      checksum-verified weight files (pull / import)
    bundles/<name>/                         imported fine-tuned bundles
    artifacts/<weights-sha16>-<exporter>/   verified ONNX artifacts + manifest.json

Weights for a catalogue model are found, in order: an explicit path, the store, torch hub's
checkpoint cache (so torchvision users need nothing), then a Python data package that ships them.
Nothing here downloads anything except ``pull_weights``, which only ``imgcls models pull`` calls.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from importlib import util as importlib_util
from pathlib import Path
from typing import Callable

from imgcls.catalog.entries import ModelEntry
from imgcls.errors import ChecksumError, ModelError, WeightsNotFoundError

__all__ = [
    "store_home",
    "sha256_file",
    "find_weights",
    "weights_status",
    "verify_file",
    "import_weights",
    "pull_weights",
    "torch_hub_checkpoints",
]


def store_home() -> Path:
    return Path(os.environ.get("IMGCLS_HOME") or Path.home() / ".cache" / "imgcls").expanduser()


def torch_hub_checkpoints() -> Path:
    torch_home = os.environ.get("TORCH_HOME") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "torch"
    return Path(torch_home).expanduser() / "hub" / "checkpoints"


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def verify_file(path: Path, expected_sha256: str) -> None:
    actual = sha256_file(path)
    if actual != expected_sha256:
        raise ChecksumError(
            f"Checksum mismatch for {path.name}: expected SHA-256 {expected_sha256[:16]}..., "
            f"got {actual[:16]}... The file is corrupt, incomplete or not the right weights."
        )


def _candidates(entry: ModelEntry) -> list[tuple[str, Path]]:
    found = [("model store", store_home() / "weights" / entry.weights.filename)]
    if entry.weights.torch_hub_name:
        found.append(("torch hub cache", torch_hub_checkpoints() / entry.weights.torch_hub_name))
    if entry.weights.python_package:
        spec = importlib_util.find_spec(entry.weights.python_package)
        if spec and spec.submodule_search_locations:
            base = Path(next(iter(spec.submodule_search_locations)))
            found.append((f"Python package {entry.weights.python_package}", base / entry.weights.package_path))
    return found


def find_weights(entry: ModelEntry, explicit: Path | None = None, *, verify: bool = True) -> Path:
    """Return a verified weights file for ``entry`` or raise WeightsNotFoundError naming the fixes."""
    if explicit is not None:
        explicit = Path(explicit)
        if not explicit.is_file():
            raise WeightsNotFoundError(f"Weights file not found: {explicit}")
        if verify:
            verify_file(explicit, entry.weights.sha256)
        return explicit
    for _, path in _candidates(entry):
        if path.is_file():
            if verify:
                verify_file(path, entry.weights.sha256)
            return path
    raise WeightsNotFoundError(_missing_message(entry))


def _missing_message(entry: ModelEntry) -> str:
    lines = [f"No weights for '{entry.name}' on this machine, and imgcls never downloads while classifying."]
    if entry.weights.url:
        lines.append(f"  With network access:  imgcls models pull {entry.name}")
    lines.append(
        f"  Offline / air-gapped: copy {entry.weights.filename} here by hand, then "
        f"imgcls models import /path/to/{entry.weights.filename}"
    )
    return "\n".join(lines)


def weights_status(entry: ModelEntry) -> tuple[bool, str]:
    """(available, where-or-why) without hashing: for `models list`."""
    for where, path in _candidates(entry):
        if path.is_file():
            return True, f"weights in {where}"
    why = "weights not installed: run `imgcls models pull " + entry.name + "` or `imgcls models import FILE`"
    if not entry.weights.url:
        why = f"weights package {entry.weights.python_package} is not installed"
    return False, why


def import_weights(entry: ModelEntry, source: Path) -> Path:
    """Verify ``source`` against the catalogue checksum and copy it into the store."""
    source = Path(source)
    if not source.is_file():
        raise WeightsNotFoundError(f"No such file: {source}")
    verify_file(source, entry.weights.sha256)
    target = store_home() / "weights" / entry.weights.filename
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".partial")
    shutil.copyfile(source, tmp)
    os.replace(tmp, target)
    return target


def pull_weights(
    entry: ModelEntry,
    url: str | None = None,
    progress: Callable[[int, int | None], None] | None = None,
    timeout: float = 30.0,
) -> Path:
    """Download ``entry``'s weights (or from a mirror ``url``), verify SHA-256, then install.

    The file is streamed into a temporary file in the store and only moved into place after the
    checksum matches, so an interrupted or tampered download never becomes "installed".
    """
    import httpx

    url = url or entry.weights.url
    if not url:
        raise ModelError(f"'{entry.name}' has no download address; it ships with a Python package.")
    target = store_home() / "weights" / entry.weights.filename
    target.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, suffix=".download")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                with httpx.stream("GET", url, timeout=timeout, follow_redirects=True) as response:
                    if response.status_code != 200:
                        raise ModelError(f"Download failed: HTTP {response.status_code} from {url}")
                    total = int(response.headers.get("content-length") or 0) or None
                    done = 0
                    for block in response.iter_bytes(1 << 20):
                        out.write(block)
                        digest.update(block)
                        done += len(block)
                        if progress:
                            progress(done, total)
            except httpx.HTTPError as exc:
                raise ModelError(
                    f"Could not download {entry.name} weights ({exc.__class__.__name__}). "
                    f"No network? Copy {entry.weights.filename} here by hand and run "
                    f"`imgcls models import /path/to/{entry.weights.filename}`."
                ) from None
        actual = digest.hexdigest()
        if actual != entry.weights.sha256:
            raise ChecksumError(
                f"Checksum mismatch for the downloaded {entry.weights.filename}: expected "
                f"{entry.weights.sha256[:16]}..., got {actual[:16]}... Nothing was installed."
            )
        os.replace(tmp, target)
        return target
    finally:
        tmp.unlink(missing_ok=True)
