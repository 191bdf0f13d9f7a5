"""A real `imgcls serve` process watched from outside: its temp files, file descriptors and memory,
plus a raw-socket HTTP client for requests no well-behaved library would send.

`RelServer` reuses the integration tier's `ServerProcess` (tests/integration/server_helpers.py)
and gives each server its own TMPDIR so "no temp file left behind" can be checked by counting.
"""

from __future__ import annotations

import json
import os
import re
import select
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
from server_helpers import ROOT, ServerProcess, free_port  # noqa: E402,F401  (shared with the integration tier)

CLASSIFY = "/api/v1/classify"
# The catalogue server: the embedded model at the default 20 MB cap, a short body/header deadline
# so the slow-client cases take seconds, not minutes; fp32, as the answers re-encoded photos must
# match are the fp32 engine's (`auto` would serve the INT8 the test store holds).
BODY_TIMEOUT_S = 4.0
CATALOGUE_ARGS = ["--model", "efficientnet_lite0", "--precision", "fp32", "--body-timeout", str(BODY_TIMEOUT_S),
                  "--max-wait-ms", "2"]


@dataclass
class Snapshot:
    """What the server process holds at one moment (from /proc)."""

    fds: int
    tmp_files: int
    rss_kb: int
    hwm_kb: int  # peak RSS so far (VmHWM)
    fd_targets: list[str] = field(default_factory=list, repr=False)


class RelServer(ServerProcess):
    """A server process with its own TMPDIR and /proc-based resource checks."""

    def __init__(self, args: list[str], log_dir: Path, env: dict | None = None, port: int | None = None):
        self.tmpdir = log_dir / "tmpdir"
        self.tmpdir.mkdir(parents=True, exist_ok=True)
        super().__init__(args, log_dir, env={"TMPDIR": str(self.tmpdir), **(env or {})}, port=port)
        self.baseline: Snapshot | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def snapshot(self) -> Snapshot:
        fd_dir = Path(f"/proc/{self.pid}/fd")
        targets = []
        for entry in fd_dir.iterdir():
            try:
                targets.append(os.readlink(entry))
            except OSError:
                pass  # closed while listing
        status = Path(f"/proc/{self.pid}/status").read_text()
        rss = int(re.search(r"^VmRSS:\s+(\d+)", status, re.M).group(1))
        hwm = int(re.search(r"^VmHWM:\s+(\d+)", status, re.M).group(1))
        tmp = sum(1 for p in self.tmpdir.rglob("*") if not p.is_dir())
        return Snapshot(len(targets), tmp, rss, hwm, sorted(targets))

    def take_baseline(self) -> Snapshot:
        """Record fds/temp files once all connections are closed (waits for them to settle)."""
        time.sleep(0.3)
        previous = self.snapshot()
        for _ in range(40):
            time.sleep(0.25)
            current = self.snapshot()
            if current.fds == previous.fds:
                break
            previous = current
        self.baseline = previous
        return previous

    def assert_clean(self, timeout: float = 10.0) -> Snapshot:
        """The server still answers /healthz, and its fds and temp files are back to baseline."""
        assert self.proc.poll() is None, f"server died ({self.proc.returncode}):\n{self.stderr()[-3000:]}"
        health = httpx.get(self.url + "/healthz", timeout=10)
        assert health.status_code == 200, health.text
        assert self.baseline is not None, "take_baseline() first"
        deadline = time.monotonic() + timeout
        while True:
            now = self.snapshot()
            if now.fds <= self.baseline.fds and now.tmp_files == self.baseline.tmp_files:
                return now
            if time.monotonic() > deadline:
                extra = sorted(set(now.fd_targets) - set(self.baseline.fd_targets))
                raise AssertionError(f"resources not back to baseline: fds {self.baseline.fds} -> {now.fds} "
                                     f"(new: {extra[:10]}), temp files {self.baseline.tmp_files} -> {now.tmp_files}")
            time.sleep(0.2)

    def metric(self, name: str, labels: str = "") -> float:
        text = httpx.get(self.url + "/metrics", timeout=10, headers=getattr(self, "auth", {})).text
        pattern = rf"^{re.escape(name)}{re.escape('{' + labels + '}') if labels else ''} (\S+)$"
        match = re.search(pattern, text, re.M)
        return float(match.group(1)) if match else 0.0

    def log_bytes(self) -> bytes:
        return self.stderr_path.read_bytes() + self.stdout_path.read_bytes()


# -- raw HTTP ------------------------------------------------------------------------------------
@dataclass
class RawResponse:
    status: int  # 0 when the server closed without answering
    headers: dict[str, str]
    body: bytes
    elapsed: float  # seconds from the first byte sent to the whole response read
    sent: int  # body bytes sent before the response arrived (or all of them)

    def json(self) -> dict:
        return json.loads(self.body)


def head(method: str, port: int, path: str = CLASSIFY, headers: dict | None = None,
         host: str | bool | None = None) -> bytes:
    """A request line plus headers. Host comes first: ``host`` if given, this server's address if
    None, and no Host header at all if False."""
    lines = [f"{method} {path} HTTP/1.1"]
    if host is not False:
        lines.append(f"Host: {host or f'127.0.0.1:{port}'}")
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def raw_exchange(port: int, request_head: bytes, body: bytes | Iterable[bytes] = b"", *, pause: float = 0.0,
                 timeout: float = 30.0, stop_on_response: bool = True) -> RawResponse:
    """Send a request over a fresh socket, body piece by piece, and read one response.

    While sending, a response that arrives early is noticed (``stop_on_response``): sending stops
    and ``sent`` says how much of the body had gone out, which is how "refused before the body
    was read" is checked. A connection the server closes without answering gives status 0.
    """
    pieces = [body] if isinstance(body, (bytes, bytearray)) else body
    started = time.monotonic()
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request_head)
        try:
            for piece in pieces:
                if stop_on_response and select.select([sock], [], [], 0)[0]:
                    break
                if piece:
                    sock.sendall(piece)
                    sent += len(piece)
                if pause:
                    time.sleep(pause)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed first: read what it said
        status, headers, payload = read_response(sock, deadline=started + timeout)
    return RawResponse(status, headers, payload, time.monotonic() - started, sent)


def read_response(sock: socket.socket, deadline: float) -> tuple[int, dict[str, str], bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = _recv(sock, deadline)
        if not chunk:
            return 0, {}, data
        data += chunk
    head_bytes, rest = data.split(b"\r\n\r\n", 1)
    lines = head_bytes.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        key, _, value = line.partition(":")
        headers[key.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0") or 0)
    while len(rest) < length:
        chunk = _recv(sock, deadline)
        if not chunk:
            break
        rest += chunk
    return status, headers, rest[:length]


def _recv(sock: socket.socket, deadline: float) -> bytes:
    sock.settimeout(max(0.01, deadline - time.monotonic()))
    try:
        return sock.recv(1 << 20)
    except (ConnectionResetError, socket.timeout):
        return b""


def multipart(parts: list[tuple], boundary: str = "relboundary7MA4YWxk") -> tuple[bytes, str]:
    """Build a multipart body by hand (filenames as raw bytes, exactly as given).

    Each part is (field_name, filename_bytes_or_None, data, extra_header_lines).
    Returns (body, content_type).
    """
    out = bytearray()
    for part in parts:
        name, filename, data = part[:3]
        extra = part[3] if len(part) > 3 else []
        out += f"--{boundary}\r\n".encode()
        disposition = f'Content-Disposition: form-data; name="{name}"'.encode()
        if filename is not None:
            disposition += b'; filename="' + filename + b'"'
        out += disposition + b"\r\n"
        for line in extra:
            out += line + b"\r\n"
        out += b"\r\n" + data + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return bytes(out), f"multipart/form-data; boundary={boundary}"


# -- what an error answer must (not) contain -----------------------------------------------------
_LEAKS = [
    (re.compile(r"Traceback|File \"|line \d+, in "), "a traceback"),
    (re.compile(r"(?:/[\w.-]+){2,}\.py|/(?:work|tmp|usr|home|root|proc|etc|opt|var)/|site-packages"), "a filesystem path"),
    (re.compile(r"\b(?:imgcls|PIL|starlette|fastapi|uvicorn|python_multipart|multipart|onnxruntime|numpy|pydantic)\.\w"),
     "a Python module name"),
    (re.compile(r"\b[A-Z][A-Za-z]*(?:Error|Exception|Warning)\b|<class |object at 0x"), "a Python class name"),
]


def plain_message_problems(text: str) -> list[str]:
    """What an error body leaks (empty list = plain)."""
    return [what for pattern, what in _LEAKS if pattern.search(text)]


def check_error_body(status: int, headers: dict, body: bytes, expected: set[int], code: str | None = None) -> dict:
    """Assert a JSON ``{"error": {"code", "message"}}`` answer with an expected status and a plain message."""
    assert status in expected, f"status {status}, expected {sorted(expected)}: {body[:300]!r}"
    content_type = headers.get("content-type", "")
    assert content_type.startswith("application/json"), f"not JSON ({content_type}): {body[:300]!r}"
    payload = json.loads(body)
    error = payload.get("error")
    assert isinstance(error, dict) and isinstance(error.get("code"), str) and isinstance(error.get("message"), str), payload
    assert error["message"].strip(), payload
    if code is not None:
        assert error["code"] == code, payload
    problems = plain_message_problems(body.decode("utf-8", "replace"))
    assert not problems, f"error body leaks {problems}: {body[:500]!r}"
    return payload


def expect_error(server: RelServer, section: str, case: str, response: RawResponse | httpx.Response,
                 expected: set[int], code: str | None = None, *, max_seconds: float | None = None,
                 note: str = "", clean: bool = True) -> dict:
    """Record a catalogue row for an error case, then check: JSON error shape, plain message,
    bounded time, and (``clean``) the server healthy with fds/temp files back to baseline."""
    from rel_catalogue import record

    if isinstance(response, httpx.Response):
        status, headers, body = response.status_code, dict(response.headers), response.content
        elapsed = response.elapsed.total_seconds()
    else:
        status, headers, body, elapsed = response.status, response.headers, response.body, response.elapsed
    try:
        observed_code = json.loads(body)["error"]["code"]
    except (ValueError, KeyError, TypeError):
        observed_code = "no JSON error"
    wanted = "/".join(map(str, sorted(expected))) + (f" {code}" if code else "")
    record(section, case, wanted, f"{status} {observed_code}", note or f"{elapsed * 1000:.0f} ms")
    payload = check_error_body(status, headers, body, expected, code)
    if max_seconds is not None:
        assert elapsed < max_seconds, f"{case}: answered in {elapsed:.2f}s, limit {max_seconds}s"
    if clean:
        server.assert_clean()
    return payload
