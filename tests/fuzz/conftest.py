"""Fuzzing tier: coverage-guided fuzzing of the decode path (atheris) and property tests of the
HTTP API against its OpenAPI schema (schemathesis), both bounded in time."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "reliability"))


import httpx  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(scope="session")
def schema_server(tmp_path_factory, lite0_fp32, lite0_int8, dev_dir):
    """A real server (its own TMPDIR) for the schema property tests, baseline taken after warm-up."""
    from rel_server import CATALOGUE_ARGS, RelServer

    server = RelServer(CATALOGUE_ARGS, tmp_path_factory.mktemp("schemaserver"))
    try:
        server.wait_ready()
        photo = sorted(dev_dir.glob("*.JPEG"))[0]
        with httpx.Client(base_url=server.url, timeout=60) as client:
            assert client.post("/api/v1/classify", files={"file": (photo.name, photo.read_bytes())}).status_code == 200
        server.take_baseline()
        yield server
    finally:
        server.terminate()
