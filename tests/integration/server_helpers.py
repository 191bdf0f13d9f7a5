"""Helpers for the server tests: a real `python -m imgcls serve` child process, free ports,
and a model bundle folder made from the embedded model's verified artifact."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 120  # generous: the shared CI box may be busy


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """One `imgcls serve` child process with its logs captured to files."""

    def __init__(self, args: list[str], log_dir: Path, env: dict | None = None, port: int | None = None):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_dir = log_dir
        log_dir.mkdir(parents=True, exist_ok=True)
        self.stdout_path = log_dir / "stdout.txt"
        self.stderr_path = log_dir / "stderr.txt"
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.command = [sys.executable, "-m", "imgcls", "serve", "--port", str(self.port), *args]
        self.proc = subprocess.Popen(self.command, stdout=self.stdout_path.open("wb"), stderr=self.stderr_path.open("wb"),
                                     env=full_env, cwd=ROOT)

    def client(self, **kwargs) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=kwargs.pop("timeout", 60.0), **kwargs)

    def wait_listening(self, timeout: float = START_TIMEOUT_S) -> None:
        self._wait(lambda r: r.status_code in (200, 503), "/healthz", timeout)

    def wait_ready(self, timeout: float = START_TIMEOUT_S) -> None:
        self._wait(lambda r: r.status_code == 200, "/readyz", timeout)

    def _wait(self, ok, path: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited with {self.proc.returncode}:\n{self.stderr()[-3000:]}")
            try:
                if ok(httpx.get(self.url + path, timeout=2.0)):
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"server not up after {timeout}s:\n{self.stderr()[-3000:]}")

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def access_log(self) -> list[dict]:
        lines = []
        for line in self.stderr().splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if record.get("event") == "access":
                lines.append(record)
        return lines

    def terminate(self, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


@contextlib.contextmanager
def server_factory(server_class, tmp_path_factory, prefix: str = "server"):
    """Yield start(args, env=None, wait="ready"|"listening"|None) -> a started ``server_class``;
    every process it started is terminated when the block ends."""
    started: list = []

    def start(args: list[str], env: dict | None = None, wait: str | None = "ready"):
        server = server_class(args, tmp_path_factory.mktemp(prefix), env=env)
        started.append(server)
        if wait == "ready":
            server.wait_ready()
        elif wait == "listening":
            server.wait_listening()
        return server

    try:
        yield start
    finally:
        for server in started:
            server.terminate()


def make_bundle(folder: Path, lite0_fp32, name: str = "lite0-bundle", corrupt: bool = False) -> Path:
    """A bundle folder that reuses the embedded model's verified fp32 ONNX under its own name and
    1000 made-up English class names (serving reads only config.json and onnx/)."""
    from imgcls.catalog import resolve_model

    onnx_path, manifest = lite0_fp32
    bundle = folder / name
    (bundle / "onnx").mkdir(parents=True, exist_ok=True)
    weights = bundle / "weights.bin"
    weights.write_bytes(b"placeholder weights for " + name.encode())
    sha = hashlib.sha256(weights.read_bytes()).hexdigest()
    config = {
        "format": "imgcls-bundle/1",
        "name": name,
        "architecture": "efficientnet_lite0",
        "class_names": [f"bundle class {i}" for i in range(1000)],
        "preprocessing": resolve_model("efficientnet_lite0").preprocessing.to_dict(),
        "weights": {"file": "weights.bin", "sha256": sha},
    }
    (bundle / "config.json").write_text(json.dumps(config), encoding="utf-8")
    target = bundle / "onnx" / "fp32.onnx"
    shutil.copyfile(onnx_path, target)
    (bundle / "onnx" / "fp32.json").write_text(json.dumps({**manifest, "model": name, "weights_sha256": sha}))
    if corrupt:
        with target.open("r+b") as handle:  # same size, different bytes: only the checksum can tell
            handle.seek(1000)
            handle.write(b"\x00garbage\x00" * 8)
    return bundle
