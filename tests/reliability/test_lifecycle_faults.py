"""Shutdown under load and broken model artifacts on disk, against real server processes.

* SIGTERM while clients are busy: readiness turns false first (503 while the listener is still
  open), requests already in flight finish with 200, new ones get 503 or find the listener closed,
  and the process exits 0 within drain + graceful timeout + a few seconds.
* An artifact that is truncated or corrupt: the server refuses to start with one clear line and
  exit code 3, and never opens its port; a manifest of the wrong shape is rebuilt, and what is
  then served is right.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from rel_catalogue import record
from rel_server import CLASSIFY, ROOT, free_port

pytestmark = pytest.mark.timeout(900)
DRAIN_S, GRACEFUL_S = 2.0, 15.0


@pytest.fixture(scope="module")
def photo_bytes(dev_photos) -> list[bytes]:
    return [p.read_bytes() for p in dev_photos[:16]]


# -- SIGTERM under load ---------------------------------------------------------------------------
def test_sigterm_under_load(start_rel_server, photo_bytes, artifacts_dir):
    server = start_rel_server(["--model", "efficientnet_lite0", "--max-queue", "256", "--drain-seconds", str(DRAIN_S),
                               "--graceful-timeout", str(GRACEFUL_S)])
    big = [("file", (f"{i}.jpg", photo_bytes[i % len(photo_bytes)], "image/jpeg")) for i in range(16)]
    stop = threading.Event()
    readiness: list[tuple[float, object]] = []
    stream: list[tuple[float, float, object]] = []  # (started, finished, status or error name)
    long_results: list[tuple[float, object, int]] = []

    def poll_readiness():
        while not stop.is_set():
            started = time.monotonic()
            try:
                readiness.append((started, httpx.get(server.url + "/readyz", timeout=5).status_code))
            except httpx.TransportError as exc:
                readiness.append((started, type(exc).__name__))
            time.sleep(0.02)

    def stream_client(k: int):
        with httpx.Client(base_url=server.url, timeout=60) as client:
            i = k
            while not stop.is_set():
                started = time.monotonic()
                try:
                    status = client.post(CLASSIFY, files={"file": ("s.jpg", photo_bytes[i % len(photo_bytes)])}).status_code
                except httpx.TransportError as exc:
                    status = type(exc).__name__
                stream.append((started, time.monotonic(), status))
                i += 1
                if not isinstance(status, int):
                    time.sleep(0.05)

    # A long request holds back the tail of its body until SIGTERM has been sent, so it is in flight
    # at the signal by construction rather than by timing (16 photos finish in ~0.3 s on a fast day).
    sigterm_sent = threading.Event()
    encoded = httpx.Request("POST", server.url + CLASSIFY, files=big)
    body = encoded.read()
    upload_headers = {"content-type": encoded.headers["content-type"], "content-length": str(len(body))}

    def held_back_body():
        yield body[:-256]
        sigterm_sent.wait(60)
        time.sleep(0.2)
        yield body[-256:]

    def long_request():
        with httpx.Client(base_url=server.url, timeout=120) as client:
            try:
                response = client.post(CLASSIFY, content=held_back_body(), headers=upload_headers)
                long_results.append((time.monotonic(), response.status_code, len(response.json().get("results", []))))
            except httpx.TransportError as exc:
                long_results.append((time.monotonic(), type(exc).__name__, 0))

    threads = [threading.Thread(target=poll_readiness)] + [threading.Thread(target=stream_client, args=(k,)) for k in range(3)]
    for thread in threads:
        thread.start()
    time.sleep(1.0)
    longs = [threading.Thread(target=long_request) for _ in range(3)]
    for thread in longs:
        thread.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and server.metric("imgcls_http_requests_in_flight") < 3 + len(longs):
        time.sleep(0.05)
    time.sleep(0.3)
    signalled = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    sigterm_sent.set()
    for thread in longs:
        thread.join(120)
    exit_code = server.proc.wait(DRAIN_S + GRACEFUL_S + 10)
    exited = time.monotonic()
    time.sleep(0.3)
    stop.set()
    for thread in threads:
        thread.join(60)

    after = [(t, s) for t, s in readiness if t > signalled + 0.05]
    first_refused = next((t for t, s in after if not isinstance(s, int)), None)
    not_ready_window = [t for t, s in after if s == 503 and (first_refused is None or t < first_refused)]
    late_stream = [s for started, _, s in stream if started > signalled + 0.05]
    early_stream = [s for started, _, s in stream if started < signalled - 0.05]
    figures = {
        "exit_code": exit_code, "exit_seconds_after_sigterm": round(exited - signalled, 2),
        "long_requests": [(round(t - signalled, 2), s, n) for t, s, n in long_results],
        "readiness_after_sigterm": sorted({str(s) for _, s in after}),
        "not_ready_seconds_before_close": round(not_ready_window[-1] - not_ready_window[0], 2) if not_ready_window else 0,
        "first_refused_after_sigterm_s": round(first_refused - signalled, 2) if first_refused else None,
        "readiness_transitions": _transitions(readiness, signalled),
        "stream_before": {str(s): early_stream.count(s) for s in set(early_stream)},
        "stream_after": {str(s): late_stream.count(s) for s in set(late_stream)},
    }
    (artifacts_dir / "sigterm.json").write_text(json.dumps(figures, indent=2))
    record("Connection", "SIGTERM under load", "ready->503 first; in-flight 200; new 503/refused; exit 0",
           f"exit {exit_code} after {figures['exit_seconds_after_sigterm']} s; in-flight "
           f"{[s for _, s, _ in long_results]}; new {figures['stream_after']}")

    assert exit_code == 0, server.stderr()[-2000:]
    assert exited - signalled < DRAIN_S + GRACEFUL_S + 5
    assert [(s, n) for _, s, n in long_results] == [(200, 16)] * 3, long_results
    assert all(t > signalled for t, _, _ in long_results), "a long request finished before SIGTERM: not in flight"
    assert after and after[0][1] == 503, after[:3]  # readiness is false at once ...
    assert not_ready_window and not_ready_window[-1] - not_ready_window[0] >= DRAIN_S * 0.5  # ... before the close
    # The listener closes only after the drain period and once the in-flight requests are done.
    assert first_refused is not None and first_refused - signalled >= DRAIN_S * 0.9, figures
    assert first_refused >= max(t for t, _, _ in long_results) - 0.25, figures
    assert all(s == 503 or not isinstance(s, int) for s in late_stream), figures["stream_after"]
    assert set(s for s in early_stream if isinstance(s, int)) <= {200}, figures["stream_before"]
    assert any(s == 503 for s in late_stream), figures["stream_after"]


def _transitions(observations: list[tuple[float, object]], origin: float) -> list[tuple[float, str]]:
    """[(seconds after SIGTERM, status)] each time the observed status changes."""
    changes, last = [], object()
    for t, status in observations:
        if status != last:
            changes.append((round(t - origin, 2), str(status)))
            last = status
    return changes


# -- broken artifacts on disk ---------------------------------------------------------------------
@pytest.fixture
def store_copy(tmp_path, imgcls_home, lite0_fp32, lite0_int8) -> Path:
    """A private copy of the test model store that a test may damage."""
    home = tmp_path / "home"
    shutil.copytree(imgcls_home / "artifacts", home / "artifacts")
    return home


def _artifact(home: Path, name: str) -> Path:
    (folder,) = [p for p in (home / "artifacts").iterdir() if p.name.startswith("efficientnet_lite0-")]
    return folder / name


def _serve_until_exit(home: Path, timeout: float = 180) -> tuple[subprocess.CompletedProcess, bool]:
    """Run `imgcls serve` on the damaged store; returns (result, whether its port ever accepted)."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "imgcls", "serve", "--port", str(port), "--model",
                             "efficientnet_lite0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "IMGCLS_HOME": str(home)}, cwd=ROOT)
    listened = False
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                listened = True
        except OSError:
            pass
        time.sleep(0.05)
    if proc.poll() is None:
        proc.kill()
    stdout, stderr = proc.communicate(timeout=30)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr), listened


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _scribble(path: Path) -> None:
    with path.open("r+b") as handle:  # same size, different bytes: only the checksum can tell
        handle.seek(path.stat().st_size // 2)
        handle.write(os.urandom(4096))


@pytest.mark.parametrize("case, damage", [
    ("fp32 ONNX truncated", lambda home: _truncate(_artifact(home, "fp32.onnx"))),
    ("fp32 ONNX corrupted (same size)", lambda home: _scribble(_artifact(home, "fp32.onnx"))),
    ("int8 ONNX truncated (fp32 served)", lambda home: _truncate(_artifact(home, "int8.onnx"))),
])
def test_damaged_artifact_refuses_to_start(store_copy, case, damage):
    damage(store_copy)
    result, listened = _serve_until_exit(store_copy)
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    record("Connection", f"start-up with {case}", "exit 3, one clear line, port never opened",
           f"exit {result.returncode}, port {'opened' if listened else 'never opened'}: {errors[0][:90] if errors else '-'}")
    assert result.returncode == 3, result.stderr[-2000:]
    assert not listened
    assert len(errors) == 1 and "corrupt or truncated" in errors[0], result.stderr[-2000:]
    assert "Traceback" not in result.stderr + result.stdout


@pytest.mark.slow
@pytest.mark.parametrize("case, content", [("manifest of the wrong shape", "[]")])
def test_unreadable_manifest_is_rebuilt_not_trusted(store_copy, start_rel_server, photo_bytes, case, content):
    fp32_manifest = _artifact(store_copy, "fp32.json")
    fp32_manifest.write_text(content)
    _truncate(_artifact(store_copy, "fp32.onnx"))  # what the broken manifest pointed at is broken too
    server = start_rel_server(["--model", "efficientnet_lite0", "--precision", "fp32"], env={"IMGCLS_HOME": str(store_copy)},
                              wait=None)
    server.wait_ready(timeout=600)  # the one-off fp32 export (torch, in a subprocess) runs first
    with httpx.Client(base_url=server.url, timeout=60) as client:
        answer = client.post(CLASSIFY, files={"file": ("a.jpg", photo_bytes[0])})
    with httpx.Client(base_url=server.url, timeout=60) as client:
        models = client.get("/api/v1/models").json()
    rebuilt = json.loads(fp32_manifest.read_text())
    record("Connection", f"start-up with an fp32 {case}", "rebuilt (or refused), never served as is",
           f"rebuilt (verification passed: {rebuilt['verification']['passed']}); classify {answer.status_code}")
    assert rebuilt["verification"]["passed"] and _artifact(store_copy, "fp32.onnx").stat().st_size == rebuilt["bytes"]
    assert answer.status_code == 200 and models["models"][0]["precisions"][0] == "fp32"
    # The rebuilt model answers like the intact one (the test session's own store).
    from imgcls.engine import Classifier

    classifier = Classifier("efficientnet_lite0", "fp32")
    try:
        predictions = classifier.predict(photo_bytes[0], top_k=1)
    finally:
        classifier.close()
    prediction = predictions[0] if isinstance(predictions, list) else predictions
    assert answer.json()["results"][0]["top"][0]["class_index"] == prediction.top[0]["class_index"]
