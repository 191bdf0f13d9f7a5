"""Processes the benchmark starts: ``imgcls serve`` and the seed baseline (in its own venv).

Both run as real subprocesses on a free loopback port, with their output in log files under the
results folder. ``ServerProcess`` also gives the measurements taken from outside the process:
CPU time (psutil), resident memory sampled on a thread, the kernel's own peak (``VmHWM``), and
whether libtorch is mapped into it (the serving path must stay free of torch).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from imgcls.bench.loadgen import http_get
from imgcls.errors import ImgclsError, InputError

__all__ = ["free_port", "ServerProcess", "start_imgcls", "start_baseline", "ensure_baseline_venv",
           "find_baseline_app", "RssSampler", "cold_start_seconds"]

HOST = "127.0.0.1"


class BenchError(ImgclsError):
    """A benchmark process could not be started or did not become ready."""

    exit_code = 1


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


class RssSampler:
    """Samples a process's RSS every ``interval_s`` on a daemon thread; ``peak`` in bytes."""

    def __init__(self, pid: int, interval_s: float = 0.05):
        import psutil

        self._process = psutil.Process(pid)
        self._interval = interval_s
        self._stop = threading.Event()
        self.peak = 0
        self.samples = 0
        self._thread = threading.Thread(target=self._loop, name="bench-rss", daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, self._process.memory_info().rss)
                self.samples += 1
            except Exception:  # the process ended: keep what we have
                return
            self._stop.wait(self._interval)

    def __enter__(self) -> "RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=2)


class ServerProcess:
    """A started server subprocess on ``port``."""

    def __init__(self, name: str, popen: subprocess.Popen, port: int, log_path: Path, ready_path: str):
        import psutil

        self.name, self.popen, self.port, self.log_path, self.ready_path = name, popen, port, log_path, ready_path
        self.process = psutil.Process(popen.pid)
        self.start_to_ready_s: float | None = None

    @property
    def pid(self) -> int:
        return self.popen.pid

    def wait_ready(self, started: float, timeout_s: float = 180.0, poll_s: float = 0.02) -> float:
        """Poll the readiness path until 200; returns seconds since ``started`` (a perf_counter value)."""
        deadline = started + timeout_s
        while time.perf_counter() < deadline:
            if self.popen.poll() is not None:
                raise BenchError(f"{self.name} exited with code {self.popen.returncode} before it was ready; "
                                 f"see {self.log_path}:\n{self.log_tail()}")
            status, _ = http_get(HOST, self.port, self.ready_path, timeout=1.0)
            if status == 200:
                self.start_to_ready_s = time.perf_counter() - started
                return self.start_to_ready_s
            time.sleep(poll_s)
        self.stop()
        raise BenchError(f"{self.name} was not ready within {timeout_s:.0f} s; see {self.log_path}.")

    def cpu_seconds(self) -> float:
        times = self.process.cpu_times()
        return times.user + times.system

    def rss(self) -> int:
        return self.process.memory_info().rss

    def peak_rss_kernel(self) -> int | None:
        """The kernel's high-water mark of resident memory (VmHWM), in bytes; None off Linux."""
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
        except OSError:
            pass
        return None

    def has_torch_loaded(self) -> bool | None:
        try:
            maps = Path(f"/proc/{self.pid}/maps").read_text()
        except OSError:
            return None
        return "libtorch" in maps

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout_s: float = 15.0) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)

    def __enter__(self) -> "ServerProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _spawn(name: str, argv: list[str], port: int, log_dir: Path, ready_path: str, env: dict | None = None,
           wait: bool = True) -> ServerProcess:
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    handle = log_path.open("wb")
    started = time.perf_counter()
    popen = subprocess.Popen(argv, stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             env={**os.environ, **(env or {})}, start_new_session=True)
    handle.close()
    server = ServerProcess(name, popen, port, log_path, ready_path)
    if wait:
        try:
            server.wait_ready(started)
        except BaseException:
            server.stop()
            raise
    return server


def imgcls_argv(port: int, model: str, precision: str, extra: list[str] | None = None) -> list[str]:
    return [sys.executable, "-m", "imgcls", "serve", "--host", HOST, "--port", str(port), "--model", model,
            "--precision", precision, "--drain-seconds", "0", *(extra or [])]


def start_imgcls(name: str, model: str, precision: str, log_dir: Path, extra: list[str] | None = None,
                 env: dict | None = None) -> ServerProcess:
    """Start ``imgcls serve`` (this interpreter, the benchmark's store) and wait for /readyz."""
    port = free_port()
    return _spawn(name, imgcls_argv(port, model, precision, extra), port, log_dir, "/readyz", env)


def cold_start_seconds(model: str, precision: str, log_dir: Path, runs: int, extra: list[str] | None = None) -> list[float]:
    """Process start -> /readyz 200, ``runs`` times (artifacts already cached)."""
    times = []
    for i in range(runs):
        port = free_port()
        server = _spawn(f"coldstart-{i + 1}", imgcls_argv(port, model, precision, extra), port, log_dir, "/readyz")
        times.append(server.start_to_ready_s or 0.0)
        server.stop()
    return times


# -- the seed baseline ------------------------------------------------------------------------
BASELINE_PACKAGES = ["flask", "pillow", "numpy"]


def _repo_root() -> Path:
    return Path(__file__).resolve().parents[3]


def find_baseline_app(explicit: Path | None = None) -> Path:
    """The seed baseline's app.py: ``explicit`` or ``../shared/peers/seed_baseline/app.py``."""
    rel = Path("peers") / "seed_baseline" / "app.py"
    options = [explicit] if explicit else []
    if os.environ.get("IMGCLS_SHARED"):
        options.append(Path(os.environ["IMGCLS_SHARED"]) / rel)
    options += [_repo_root().parent / "shared" / rel, Path.cwd().parent / "shared" / rel]
    for path in options:
        if path and path.is_file():
            return path
    raise InputError(f"The seed baseline was not found at {options[0] if explicit else options[-2]}; "
                     "pass --baseline PATH or --skip-baseline.")


def torch_version() -> str | None:
    from importlib import metadata

    try:
        return metadata.version("torch")
    except metadata.PackageNotFoundError:
        return None


def ensure_baseline_venv(venv: Path, progress=lambda s: None) -> str:
    """Create the baseline's own venv (once) with the same torch wheel as ours; returns its torch version.

    Raises:
        BenchError: the venv could not be created or its torch differs from ours.
    """
    ours = torch_version()
    python = venv / "bin" / "python"
    marker = venv / ".imgcls-bench-ready"
    if not marker.is_file():
        if ours is None:
            raise BenchError("PyTorch is not installed here, so the baseline's venv cannot get the same wheel; "
                             "install the export extra or use --skip-baseline.")
        progress(f"creating the baseline venv at {venv} (one-off: torch {ours}, flask, pillow, numpy)")
        if not python.is_file():
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        constraints = _repo_root() / "constraints.txt"
        pins = ["-c", str(constraints)] if constraints.is_file() else []
        done = subprocess.run([str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q", *pins,
                               f"torch=={ours}", *BASELINE_PACKAGES], capture_output=True, text=True)
        if done.returncode != 0:
            raise BenchError(f"Installing the baseline's packages failed:\n{done.stderr[-2000:]}")
    theirs = subprocess.run([str(python), "-c", "import torch; print(torch.__version__)"], capture_output=True,
                            text=True).stdout.strip()
    if not theirs or (ours and theirs.split("+")[0] != ours.split("+")[0]):
        raise BenchError(f"The baseline venv has torch {theirs or 'missing'}, ours is {ours}; delete {venv} and rerun.")
    marker.write_text(theirs + "\n")
    return theirs


def start_baseline(venv: Path, app: Path, weights: Path | None, log_dir: Path) -> ServerProcess:
    """Start the seed baseline (Flask + PyTorch eager) in its venv and wait for /health."""
    port = free_port()
    argv = [str(venv / "bin" / "python"), str(app), "--host", HOST, "--port", str(port)]
    if weights is not None:
        argv += ["--weights", str(weights)]
    return _spawn("baseline", argv, port, log_dir, "/health")
