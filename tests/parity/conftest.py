"""Fixtures for the parity tier: run scripts under the reference venv and record the figures.

Real torchvision cannot be imported in the project venv (CPU torch 2.13.0), so each check runs a
script from ``ref_scripts/`` with ``.venv-ref/bin/python`` (built by ``make venv-ref`` /
``scripts/make-ref-venv.sh``) and reads back a JSON result. Without the reference venv the tier
skips locally with instructions; in CI (env ``CI`` set) that is a failure, because the tier must
run there.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src"
SCRIPTS = Path(__file__).resolve().parent / "ref_scripts"
REF_VENV = Path(os.environ.get("IMGCLS_REF_VENV", ROOT / ".venv-ref"))
REF_TIMEOUT = 900  # seconds; importing the CUDA torch build alone takes ~20 s on a busy 2-core box


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


@pytest.fixture(scope="session")
def ref_python() -> Path:
    """The reference venv's interpreter; skip (locally) or fail (CI) when it is not built."""
    python = REF_VENV / "bin" / "python"
    if python.is_file() and (REF_VENV / ".ref-ready").is_file():
        return python
    message = (
        f"reference venv with real torchvision not found at {REF_VENV} "
        "(build it with `make venv-ref` or scripts/make-ref-venv.sh: ~5.6 GB, ~4 min from PyPI)"
    )
    if in_ci():
        pytest.fail(f"CI is set but the parity tier cannot run: {message}")
    pytest.skip(message)


@pytest.fixture(scope="session")
def run_ref(ref_python, tmp_path_factory):
    """``run_ref(script, *args) -> dict``: run ``ref_scripts/<script>`` in .venv-ref, return its JSON.

    Every script takes the checkout's ``src/`` first and the JSON path it writes last; this helper
    adds both.
    """
    out_dir = tmp_path_factory.mktemp("parity-ref")

    def run(script: str, *args: str | Path) -> dict:
        out = out_dir / f"{Path(script).stem}-{time.monotonic_ns()}.json"
        env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONNOUSERSITE": "1"}
        env.pop("PYTHONPATH", None)  # the project venv's paths must not leak into the reference run
        proc = subprocess.run(
            [str(ref_python), str(SCRIPTS / script), str(SRC), *map(str, args), str(out)],
            cwd=SCRIPTS, env=env, capture_output=True, text=True, timeout=REF_TIMEOUT,
        )
        if proc.returncode != 0 or not out.is_file():
            tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-25:])
            pytest.fail(f"{script} failed in {REF_VENV} (exit {proc.returncode}):\n{tail}")
        return json.loads(out.read_text(encoding="utf-8"))

    return run


@pytest.fixture(scope="session")
def record_parity(artifacts_dir):
    """``record_parity(section, figures)``: merge measured figures into test-artifacts/parity.json."""
    target = artifacts_dir / "parity.json"

    def record(section: str, figures: dict) -> None:
        try:
            data = json.loads(target.read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError):
            data = {}
        data[section] = {"measured": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **figures}
        target.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")

    return record
