"""Real server processes for the integration tests: `python -m imgcls serve` on a free port.

Every server is started with the test model store (IMGCLS_HOME from tests/conftest.py) after
the `lite0_fp32` / `lite0_int8` fixtures have built the artifacts, so start-up only loads.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from server_helpers import ServerProcess, server_factory  # tests/integration is on sys.path


@pytest.fixture(scope="session")
def start_server(tmp_path_factory, lite0_fp32, lite0_int8):
    """Factory: start_server(args, env=None, wait="ready"|"listening"|None) -> ServerProcess.
    Every process started is terminated at the end of the session."""
    with server_factory(ServerProcess, tmp_path_factory, "server") as start:
        yield start

@pytest.fixture(scope="session")
def server(start_server):
    """The shared server: efficientnet_lite0 (fp32 default, chosen explicitly: `auto` would pick the
    INT8 the store holds; int8 also served), a 5 MB upload cap so size tests stay cheap, and a short
    body deadline for the slow-client test."""
    return start_server(["--model", "efficientnet_lite0", "--precision", "fp32", "--max-upload-mb", "5", "--body-timeout", "3",
                         "--max-wait-ms", "5"])

@pytest.fixture(scope="session")
def photos(dev_dir) -> list[Path]:
    """A fixed spread of dev photos (different classes)."""
    return sorted(dev_dir.glob("*.JPEG"))[::37][:8]
