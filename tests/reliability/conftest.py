"""Reliability tier: real `imgcls serve` processes fed bad input, overload, leaks and signals.

Every server here runs with its own TMPDIR (so temp files can be counted) and is watched
through /proc (open fds, RSS, peak RSS). The bad-input catalogue observed by the run is written
to test-artifacts/bad-input-catalogue.md at the end of the session.
"""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rel_catalogue import CURRENT, write_catalogue  # noqa: E402
from rel_server import CATALOGUE_ARGS, RelServer  # noqa: E402
from server_helpers import server_factory  # noqa: E402  (tests/integration, on sys.path via rel_server)

if not Path("/proc/self/fd").is_dir():  # pragma: no cover - the checks read /proc
    pytest.skip("the reliability tier needs Linux /proc", allow_module_level=True)



@pytest.fixture(scope="session")
def start_rel_server(tmp_path_factory, lite0_fp32, lite0_int8):
    """Factory: start_rel_server(args, env=None, wait="ready"|"listening"|None) -> RelServer.
    Every process started is terminated at the end of the session."""
    with server_factory(RelServer, tmp_path_factory, "relserver") as start:
        yield start


@pytest.fixture(scope="session")
def rel_server(start_rel_server, dev_dir) -> RelServer:
    """The shared catalogue server, warmed with one good and one bad request, baseline taken."""
    server = start_rel_server(CATALOGUE_ARGS)
    photo = sorted(dev_dir.glob("*.JPEG"))[0]
    with httpx.Client(base_url=server.url, timeout=60) as client:
        assert client.post("/api/v1/classify", files={"file": (photo.name, photo.read_bytes())}).status_code == 200
        assert client.post("/api/v1/classify", files={"file": ("x.jpg", b"not an image")}).status_code == 415
    server.take_baseline()
    return server


@pytest.fixture(scope="session")
def dev_photos(dev_dir) -> list[Path]:
    return sorted(dev_dir.glob("*.JPEG"))


@pytest.fixture(scope="session", autouse=True)
def _write_catalogue(artifacts_dir):
    yield
    write_catalogue(artifacts_dir / "bad-input-catalogue.md")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" or (report.when == "setup" and report.failed):
        for row in list(getattr(item, "_catalogue_rows", [])):
            row.passed = report.passed


@pytest.fixture(autouse=True)
def _catalogue_rows(request):
    """Collect the catalogue rows this test records, so its outcome can be written next to them."""
    CURRENT.clear()
    request.node._catalogue_rows = CURRENT
    yield
