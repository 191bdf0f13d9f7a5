"""Reading uploads from untrusted clients, with every limit enforced while streaming.

A body is multipart/form-data with one or more parts named ``file``, or one raw image
(``image/*``, ``application/octet-stream`` or no Content-Type; the content decides the format).

Why not ``request.form()``: Starlette spools file parts to temporary files on disk and only
checks part counts/sizes after the fact. Here the body is pulled from the ASGI ``receive``
channel chunk by chunk and fed to python-multipart's streaming parser, so that:

* the byte cap is enforced as bytes arrive (chunked bodies included) -> 413;
* the whole body must arrive before a deadline (a 1-byte/s client or a Content-Length that
  lies is cut off) -> 408;
* part count, header count/size and preamble size are bounded -> 400 (the python-multipart
  and Starlette DoS advisories: CVE-2024-24762, CVE-2024-53981, CVE-2026-42561);
* files stay in memory as bytes (capped by the byte limit) and never touch the disk;
* client filenames are data, never paths: decoded, control characters replaced, truncated.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import unicodedata
from dataclasses import dataclass

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, MultipartState, parse_options_header

from imgcls.errors import InputError, PayloadTooLargeError, UnsupportedMediaError
from imgcls.server.waitline import WaitLine

__all__ = ["Upload", "UploadLimits", "UploadError", "ClientGone", "ByteBudget", "read_uploads", "clean_filename",
           "FIELD_NAME"]

FIELD_NAME = b"file"
MAX_FILENAME_CHARS = 255
MAX_CONTENT_TYPE_CHARS = 512
MAX_BOUNDARY_CHARS = 200  # RFC 2046 says 70; browsers use ~40
LINGER_S = 2.0  # after refusing a chunked body, how long we keep reading (and dropping) it

# The parser logs attacker-controlled offsets at WARNING for every malformed body; we answer 400.
logging.getLogger("python_multipart.multipart").setLevel(logging.ERROR)


class UploadError(InputError):
    """A request-level upload problem. ``close`` asks the server to drop the connection after
    answering (the rest of the body is unbounded or the client is misbehaving)."""

    def __init__(self, message: str, status: int = 400, code: str = "bad_request", close: bool = False):
        super().__init__(message)
        self.http_status = status
        self.code = code
        self.close = close


class ClientGone(Exception):
    """The client disconnected before the body was complete; nobody is left to answer."""


@dataclass
class UploadLimits:
    max_bytes: int  # whole body
    max_files: int  # parts named "file"
    deadline_s: float  # the whole body must arrive within this
    max_parts: int = 0  # all parts (0 = max_files + 16)
    max_preamble: int = 64 * 1024  # bytes before the first part
    max_header_count: int = 8  # per part (browsers send 2)
    max_header_size: int = 32 * 1024  # per header line: room for a 10 KB UTF-8 filename


class ByteBudget:
    """Bytes of request bodies held in memory across all requests at once.

    Each request is capped, but many concurrent uploads could still add up to gigabytes. A body
    of declared length waits in line for its share before it is read (``_Lease.reserve``; 503
    + Retry-After only when the wait passes its deadline); a chunked body, whose size is unknown,
    is charged as it arrives and gets 503 at once if the budget is spent. A request holds its
    share until it is answered (its files are decoded from that memory).
    """

    def __init__(self, limit: int):
        self.limit = limit
        self.used = 0
        self._line = WaitLine(self._fits, self._add, self._give_back)

    def _fits(self, n: int) -> bool:
        return self.used == 0 or self.used + n <= self.limit

    def _add(self, n: int) -> None:
        self.used += n

    def _give_back(self, n: int) -> None:
        self.used -= n
        self._line.serve()

    @contextlib.contextmanager
    def lease(self):
        """A request's share: ``reserve`` before reading, ``take(n)`` as bytes arrive; everything
        is given back on exit."""
        lease = _Lease(self)
        try:
            yield lease
        finally:
            self._give_back(lease.held)


class _Lease:
    def __init__(self, budget: ByteBudget):
        self.budget = budget
        self.held = 0
        self.prepaid = 0  # reserved and not yet taken by arriving bytes
        self.waited_s = 0.0  # time spent in line for the reservation

    async def reserve(self, n: int, patience_s: float) -> None:
        """Hold ``n`` bytes for a body about to be read, waiting in line at most ``patience_s``.

        Raises:
            OverloadedError: the share did not come in time.
        """
        loop = asyncio.get_running_loop()
        started = loop.time()
        await self.budget._line.acquire(n, started + patience_s)
        self.waited_s = loop.time() - started
        self.held += n
        self.prepaid += n

    def take(self, n: int) -> None:
        covered = min(n, self.prepaid)
        self.prepaid -= covered
        n -= covered
        if not n:
            return
        if not self.budget._fits(n):
            raise UploadError("The server is receiving too many uploads at once; try again shortly.", status=503,
                              code="overloaded")
        self.budget._add(n)
        self.held += n


@dataclass
class Upload:
    filename: str
    data: bytes


def clean_filename(raw: bytes | None, index: int) -> str:
    """A client filename made safe to echo: UTF-8 (invalid bytes replaced), no control or
    format characters, at most 255 characters. Never used as a path."""
    if not raw:
        return f"file-{index + 1}"
    text = raw.decode("utf-8", errors="replace")
    text = "".join("\ufffd" if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp", "Cs") else ch for ch in text)
    if len(text) > MAX_FILENAME_CHARS:
        text = text[: MAX_FILENAME_CHARS - 1] + "\u2026"
    return text or f"file-{index + 1}"


def check_content_type(value: str | None) -> bytes | None:
    """The multipart boundary, or None for a body that is one raw image (``image/*``,
    ``application/octet-stream`` or no Content-Type: the content decides the format anyway).

    Raises:
        UnsupportedMediaError (415): another media type (a urlencoded form, JSON, text, ...).
        UploadError (400): a broken multipart Content-Type.
    """
    if not value:
        return None
    if len(value) > MAX_CONTENT_TYPE_CHARS:
        raise UploadError("The Content-Type header is too long.", code="bad_content_type")
    media_type, options = parse_options_header(value)
    if media_type.startswith(b"image/") or media_type == b"application/octet-stream":
        return None
    if media_type != b"multipart/form-data":
        raise UnsupportedMediaError(
            "Send images as multipart/form-data fields named 'file', or one image as the raw request body "
            "with Content-Type image/* or application/octet-stream (curl: -F file=@photo.jpg, or "
            "--data-binary @photo.jpg -H 'Content-Type: image/jpeg')."
        )
    boundary = options.get(b"boundary", b"")
    if not boundary:
        raise UploadError("The multipart Content-Type has no boundary.", code="malformed_multipart")
    if len(boundary) > MAX_BOUNDARY_CHARS:
        raise UploadError("The multipart boundary is too long.", code="malformed_multipart")
    return boundary


class _RawBody:
    """A body that is one image: its bytes, kept as they arrive."""

    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, chunk: bytes) -> None:
        self.data.extend(chunk)

    def uploads(self) -> list[Upload]:
        return [Upload(clean_filename(None, 0), bytes(self.data))]


class _PartCollector:
    """python-multipart callbacks that keep the 'file' parts in memory and enforce part limits."""

    def __init__(self, limits: UploadLimits):
        self.limits = limits
        self.max_parts = limits.max_parts or limits.max_files + 16
        self.files: list[Upload] = []
        self.parts = 0
        self._field = bytearray()
        self._value = bytearray()
        self._headers: dict[bytes, bytes] = {}
        self._current: bytearray | None = None

    def callbacks(self) -> dict:
        return {
            "on_part_begin": self.part_begin,
            "on_header_field": lambda data, start, end: self._field.extend(data[start:end]),
            "on_header_value": lambda data, start, end: self._value.extend(data[start:end]),
            "on_header_end": self.header_end,
            "on_headers_finished": self.headers_finished,
            "on_part_data": self.part_data,
            "on_part_end": self.part_end,
        }

    def part_begin(self) -> None:
        self.parts += 1
        if self.parts > self.max_parts:
            raise UploadError(f"Too many multipart parts (at most {self.max_parts}).", code="too_many_parts")
        self._headers = {}
        self._field.clear()
        self._value.clear()

    def header_end(self) -> None:
        self._headers[bytes(self._field).strip().lower()] = bytes(self._value).strip()
        self._field.clear()
        self._value.clear()

    def headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition"))
        if options.get(b"name") != FIELD_NAME:
            self._current = None  # other fields are skipped (their bytes still count against the cap)
            return
        if len(self.files) >= self.limits.max_files:
            raise UploadError(f"Too many files in one request (at most {self.limits.max_files}).", code="too_many_files")
        self._current = bytearray()
        self.files.append(Upload(clean_filename(options.get(b"filename"), len(self.files)), b""))

    def part_data(self, data: bytes, start: int, end: int) -> None:
        if self._current is not None:
            self._current.extend(data[start:end])

    def part_end(self) -> None:
        if self._current is not None:
            self.files[-1].data = bytes(self._current)
            self._current = None


async def read_uploads(receive, content_type: str | None, declared_length: int | None, limits: UploadLimits,
                       lease: _Lease | None = None, patience_s: float = 0.0) -> list[Upload]:
    """Read a multipart body from ASGI ``receive`` and return its 'file' parts in upload order
    (or, for a raw image body, that one image).

    Args:
        receive: the ASGI receive callable of this request.
        content_type: the request's Content-Type header.
        declared_length: its Content-Length, or None for a chunked body.
        limits: caps and the deadline.
        lease: this request's share of the server-wide ByteBudget: a body of declared length
            reserves it (waiting in line at most ``patience_s``) once the headers pass the checks
            above; a chunked body is charged as bytes arrive.

    Raises:
        UnsupportedMediaError (415), UploadError (400/408/413/422, 503 when the budget is spent),
        OverloadedError (503: no share of the budget in time), ClientGone.
    """
    boundary = check_content_type(content_type)
    chunked = declared_length is None
    if declared_length is not None and declared_length > limits.max_bytes:
        raise _too_large(limits, close=False)
    if lease is not None and declared_length is not None:
        await lease.reserve(declared_length, patience_s)  # only now: 413/415 are answered without waiting
    if boundary is None:
        collector = parser = _RawBody()
    else:
        collector = _PartCollector(limits)
        parser = MultipartParser(boundary, collector.callbacks(), max_header_count=limits.max_header_count,
                                 max_header_size=limits.max_header_size)
    received = 0
    finished = False
    try:
        async with asyncio.timeout(limits.deadline_s):
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise ClientGone()
                body = message.get("body", b"")
                received += len(body)
                finished = not message.get("more_body", False)
                if received > limits.max_bytes:
                    raise _too_large(limits)
                if lease is not None:
                    lease.take(len(body))
                if body:
                    parser.write(body)
                    if boundary is not None and collector.parts == 0 and received > limits.max_preamble:
                        raise UploadError("The multipart body has too much data before its first part.",
                                          code="malformed_multipart")
                if finished:
                    break
    except TimeoutError:
        raise UploadError(f"The upload did not arrive within {limits.deadline_s:g} seconds.", status=408,
                          code="request_timeout", close=True) from None
    except MultipartParseError:
        error = UploadError("The multipart body is malformed.", code="malformed_multipart")
        await _settle(error, receive, chunked, finished, limits)
        raise error from None
    except UploadError as error:
        await _settle(error, receive, chunked, finished, limits)
        raise
    if isinstance(parser, _RawBody):
        return parser.uploads()
    if parser.state != MultipartState.END:
        raise UploadError("The multipart body is incomplete (no closing boundary).", code="malformed_multipart")
    if not collector.files:
        raise UploadError("No image received: send one or more multipart fields named 'file'.", status=422,
                          code="missing_file")
    return collector.files


def _too_large(limits: UploadLimits, close: bool = False) -> UploadError:
    mb = limits.max_bytes / (1024 * 1024)
    return UploadError(f"The upload is larger than the {mb:g} MB limit per request.", status=413,
                       code=PayloadTooLargeError.code, close=close)


async def _settle(error: UploadError, receive, chunked: bool, finished: bool, limits: UploadLimits) -> None:
    """Decide how the connection ends after refusing a body part-way through.

    A body with a Content-Length within the cap is left to uvicorn, which discards the rest once
    we have answered, so the client reads our error on a healthy connection. A chunked body may
    be endless: read and drop a bounded amount more (a "lingering close", as nginx does) so a
    client that is nearly done can finish sending and read the error; otherwise close.
    """
    if finished or not chunked:
        return
    budget, deadline = max(limits.max_bytes, 1 << 20), asyncio.get_running_loop().time() + LINGER_S
    try:
        async with asyncio.timeout_at(deadline):
            while budget > 0:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                budget -= len(message.get("body", b""))
                if not message.get("more_body", False):
                    return
    except TimeoutError:
        pass
    error.close = True
