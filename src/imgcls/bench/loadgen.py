"""A deliberately light closed-loop HTTP load generator: raw asyncio streams, prebuilt requests.

The client shares the machine's two cores with the server it measures, so every byte it can
prepare in advance is prepared in advance: each dev photo becomes one complete HTTP/1.1 request
(headers + multipart body) before the clock starts, and a worker only writes those bytes and
parses the status line, the headers it needs (Content-Length, Transfer-Encoding, Connection) and
reads the body. No HTTP library, no multipart encoding, no JSON decoding in the loop. The
client's own CPU time is measured (``time.process_time``) and reported next to the results, so
its share of the machine is visible rather than assumed.

Each of ``concurrency`` workers keeps one keep-alive connection and sends one request at a time
(closed loop), cycling through the photos; a server that closes the connection gets a new one.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from imgcls.bench.stats import percentile

__all__ = ["build_requests", "LoadResult", "run_load", "http_get"]

BOUNDARY = b"imgclsbench7d1f0c9a2b"


def build_requests(photos: list[tuple[str, bytes]], host: str, port: int, path: str, *,
                   content_type: bytes = b"image/jpeg") -> list[bytes]:
    """One complete POST (multipart field ``file``, one JPEG) per photo, ready to write."""
    out = []
    for name, data in photos:
        body = b"".join([
            b"--", BOUNDARY, b"\r\n",
            b'Content-Disposition: form-data; name="file"; filename="', name.encode(), b'"\r\n',
            b"Content-Type: ", content_type, b"\r\n\r\n", data, b"\r\n--", BOUNDARY, b"--\r\n",
        ])
        head = (f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: imgcls-bench\r\n"
                f"Accept: */*\r\nContent-Type: multipart/form-data; boundary={BOUNDARY.decode()}\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode()
        out.append(head + body)
    return out


@dataclass
class LoadResult:
    concurrency: int
    seconds: float  # measured window
    ok: int
    errors: int
    statuses: dict[int, int]
    latencies_ms: list[float] = field(repr=False)  # successful requests only
    client_cpu_s: float
    error_samples: list[str] = field(default_factory=list)

    @property
    def rps(self) -> float:
        return self.ok / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> dict:
        lat = self.latencies_ms
        done = self.ok + self.errors
        return {
            "concurrency": self.concurrency,
            "seconds": round(self.seconds, 2),
            "requests": done,
            "ok": self.ok,
            "errors": self.errors,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "rps": round(self.rps, 1),
            "p50_ms": round(percentile(lat, 50), 1),
            "p90_ms": round(percentile(lat, 90), 1),
            "p99_ms": round(percentile(lat, 99), 1),
            "max_ms": round(max(lat), 1) if lat else 0.0,
            "client_cpu_ms_per_request": round(self.client_cpu_s * 1000 / done, 3) if done else 0.0,
            "client_cpu_share": round(self.client_cpu_s / self.seconds, 3) if self.seconds else 0.0,
            "error_samples": self.error_samples[:3],
        }


class _Connection:
    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, raw: bytes, timeout: float) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        try:
            self.writer.write(raw)
            async with asyncio.timeout(timeout):
                head = await self.reader.readuntil(b"\r\n\r\n")
                status, length, chunked, close = _parse_head(head)
                if chunked:
                    body = await _read_chunked(self.reader)
                elif length is not None:
                    body = await self.reader.readexactly(length)
                else:
                    body, close = await self.reader.read(), True
        except BaseException:
            self.close()
            raise
        if close:
            self.close()
        return status, body

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


def _parse_head(head: bytes) -> tuple[int, int | None, bool, bool]:
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    status = int(parts[1])
    length, chunked = None, False
    close = parts[0] == b"HTTP/1.0"
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value.strip())
        elif name == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
        elif name == b"connection":
            value = value.strip().lower()
            close = value == b"close" or (close and value != b"keep-alive")
    return status, length, chunked, close


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts = []
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0].strip(), 16)
        if size == 0:
            await reader.readuntil(b"\r\n")
            return b"".join(parts)
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)


async def _run(host: str, port: int, requests: list[bytes], concurrency: int, seconds: float, warmup_s: float,
               expect: bytes, timeout: float, max_requests: int | None) -> LoadResult:
    statuses: dict[int, int] = {}
    latencies: list[float] = []
    errors_seen: list[str] = []
    state = {"next": 0, "recording": False, "sent": 0}
    stop_at = [0.0]

    async def worker() -> None:
        conn = _Connection(host, port)
        try:
            while time.perf_counter() < stop_at[0]:
                if max_requests is not None and state["recording"] and state["sent"] >= max_requests:
                    return
                raw = requests[state["next"] % len(requests)]
                state["next"] += 1
                recording = state["recording"]
                if recording:
                    state["sent"] += 1
                started = time.perf_counter()
                try:
                    status, body = await conn.request(raw, timeout)
                except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ValueError) as exc:
                    status, body = -1, repr(exc).encode()
                elapsed_ms = (time.perf_counter() - started) * 1000
                if not recording:
                    continue
                good = status == 200 and expect in body
                key = status if status != 200 or good else -2  # -2: a 200 without the expected payload
                statuses[key] = statuses.get(key, 0) + 1
                if good:
                    latencies.append(elapsed_ms)
                elif len(errors_seen) < 5:
                    errors_seen.append(f"{status}: {body[:200]!r}")
        finally:
            conn.close()

    stop_at[0] = time.perf_counter() + warmup_s
    if warmup_s > 0:
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    state["recording"] = True
    cpu0, started = time.process_time(), time.perf_counter()
    stop_at[0] = started + seconds
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu0
    ok = len(latencies)
    return LoadResult(concurrency, elapsed, ok, sum(statuses.values()) - ok, statuses, latencies, cpu, errors_seen)


def run_load(host: str, port: int, requests: list[bytes], *, concurrency: int, seconds: float,
             warmup_s: float = 1.0, expect: bytes = b"", timeout: float = 60.0,
             max_requests: int | None = None) -> LoadResult:
    """Closed-loop load for ``seconds`` (after ``warmup_s`` unrecorded), or until ``max_requests``.

    A response counts as successful when its status is 200 and its body contains ``expect``.
    """
    return asyncio.run(_run(host, port, requests, concurrency, seconds, warmup_s, expect, timeout, max_requests))


def http_get(host: str, port: int, path: str, timeout: float = 2.0) -> tuple[int, bytes]:
    """A one-off GET on a fresh connection (readiness polls, /metrics); status -1 when unreachable."""
    import http.client

    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    except (OSError, http.client.HTTPException):
        return -1, b""
    finally:
        conn.close()
