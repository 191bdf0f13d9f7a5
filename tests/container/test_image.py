"""The container image, built and run for real (`make image-test` without make).

Slow (a cold build takes minutes), so marked ``container`` and skipped where podman is not
installed; `make image-test` installs podman itself and runs the same checks.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CONTAINER = REPO / "container"

pytestmark = [
    pytest.mark.container,
    # In CI `make test` installs podman (scripts/install-system-deps.sh), so there it must run.
    pytest.mark.skipif(shutil.which("podman") is None and not os.environ.get("CI"),
                       reason="podman is not installed (make image-test installs it)"),
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the image is built on Linux"),
]


def _run(cmd: list[str], timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=False, cwd=REPO, capture_output=True, text=True, timeout=timeout)


def test_image_builds_offline_and_serves_like_the_host_cli() -> None:
    image = os.environ.get("IMGCLS_IMAGE", "localhost/imgcls:latest")
    build = _run([str(CONTAINER / "build-image.sh")], timeout=3600)
    assert build.returncode == 0, f"image build failed:\n{build.stdout[-5000:]}\n{build.stderr[-5000:]}"

    check = _run([sys.executable, str(CONTAINER / "image_test.py"), "--image", image], timeout=1800)
    print(check.stdout)
    assert check.returncode == 0, f"image test failed:\n{check.stdout[-8000:]}\n{check.stderr[-3000:]}"
