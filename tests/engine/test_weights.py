"""ResNet-18 weights: pull over (loopback) HTTP with checksum, import by hand, clear messages.

The official file cannot be downloaded here, so the tests generate ResNet-18 weights, serve them
from a real HTTP server on 127.0.0.1 and register a catalogue entry carrying their checksum.
"""

from __future__ import annotations

import dataclasses
import functools
import http.server
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from typer.testing import CliRunner

from imgcls.catalog import CATALOG, default_model_name
from imgcls.catalog.store import find_weights, sha256_file, store_home
from imgcls.cli import app

IMGCLS = [sys.executable, "-m", "imgcls"]


@pytest.fixture(scope="module")
def generated_weights(tmp_path_factory) -> Path:
    import torch

    from imgcls.architectures.resnet import resnet18

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("served")
    path = folder / "resnet18-f37072fd.pth"
    torch.save(resnet18().state_dict(), path)
    return path


@pytest.fixture(scope="module")
def http_server(generated_weights):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(generated_weights.parent))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture()
def private_home(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("IMGCLS_HOME", str(home))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return home


@pytest.fixture()
def generated_entry(generated_weights, http_server, monkeypatch):
    """A catalogue entry for the generated weights (same architecture, own checksum and URL)."""
    base = CATALOG["resnet18"]
    entry = dataclasses.replace(
        base, name="resnet18_generated",
        weights=dataclasses.replace(base.weights, sha256=sha256_file(generated_weights),
                                    size_bytes=generated_weights.stat().st_size,
                                    url=f"{http_server}/{generated_weights.name}"),
    )
    monkeypatch.setitem(CATALOG, entry.name, entry)
    return entry


def test_pull_downloads_verifies_and_installs(private_home, generated_entry, generated_weights):
    result = CliRunner().invoke(app, ["models", "pull", generated_entry.name])
    assert result.exit_code == 0, result.output
    installed = private_home / "weights" / "resnet18-f37072fd.pth"
    assert sha256_file(installed) == sha256_file(generated_weights)
    assert find_weights(generated_entry) == installed
    assert not list((private_home / "weights").glob("*.download"))


def test_pull_refuses_a_file_with_the_wrong_checksum(private_home, http_server, generated_weights):
    # The real catalogue entry, pointed at a mirror serving the wrong bytes: refused, nothing installed.
    env = {**os.environ, "IMGCLS_HOME": str(private_home)}
    result = subprocess.run([*IMGCLS, "models", "pull", "resnet18", "--url", f"{http_server}/{generated_weights.name}"],
                            capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 3, result.stderr
    assert "Checksum mismatch" in result.stderr and "Nothing was installed" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (private_home / "weights" / "resnet18-f37072fd.pth").exists()
    assert not list((private_home / "weights").glob("*"))


def test_pull_without_network_names_the_offline_way(private_home):
    env = {**os.environ, "IMGCLS_HOME": str(private_home)}
    result = subprocess.run([*IMGCLS, "models", "pull", "resnet18", "--url", "http://127.0.0.1:9/none.pth"],
                            capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 3
    assert "imgcls models import" in result.stderr and "Traceback" not in result.stderr


def test_import_verifies_and_installs(private_home, generated_entry, generated_weights, tmp_path):
    runner = CliRunner()
    ok = runner.invoke(app, ["models", "import", str(generated_weights)])  # recognised by checksum
    assert ok.exit_code == 0, ok.output
    assert (private_home / "weights" / "resnet18-f37072fd.pth").is_file()

    corrupt = tmp_path / "resnet18-f37072fd.pth"
    data = bytearray(generated_weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    corrupt.write_bytes(bytes(data))
    refused = runner.invoke(app, ["models", "import", str(corrupt), "--name", "resnet18"])
    assert refused.exit_code != 0
    unknown = runner.invoke(app, ["models", "import", str(corrupt)])
    assert unknown.exit_code == 3


def test_torch_hub_cache_is_found(private_home, generated_entry, generated_weights, tmp_path):
    hub = tmp_path / "torch" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    (hub / "resnet18-f37072fd.pth").write_bytes(generated_weights.read_bytes())
    assert find_weights(generated_entry) == hub / "resnet18-f37072fd.pth"


def test_no_weights_gives_both_ways_and_nonzero_exit(private_home, dev_dir):
    env = {**os.environ, "IMGCLS_HOME": str(private_home), "TORCH_HOME": str(private_home / "torch")}
    result = subprocess.run([*IMGCLS, "predict", str(dev_dir / "n01440764_tench.JPEG"), "--model", "resnet18"],
                            capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 3
    assert "imgcls models pull resnet18" in result.stderr
    assert "imgcls models import" in result.stderr
    assert "Traceback" not in result.stderr


def test_default_model_follows_resnet18_availability(private_home):
    assert default_model_name() == "efficientnet_lite0"
    listing = CliRunner().invoke(app, ["models", "list", "--json"])
    assert '"available": false' in listing.output and "imgcls models pull resnet18" in listing.output
    (store_home() / "weights").mkdir(parents=True)
    (store_home() / "weights" / "resnet18-f37072fd.pth").write_bytes(b"placeholder")
    assert default_model_name() == "resnet18"


def test_corrupt_resnet18_weights_are_refused_not_served(private_home, dev_dir):
    (private_home / "weights").mkdir(parents=True)
    (private_home / "weights" / "resnet18-f37072fd.pth").write_bytes(b"not really weights")
    env = {**os.environ, "IMGCLS_HOME": str(private_home)}
    result = subprocess.run([*IMGCLS, "predict", str(dev_dir / "n01440764_tench.JPEG")],
                            capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 3 and "Checksum mismatch" in result.stderr
