"""The HTTP/1.1 connection protocol: uvicorn's httptools protocol with the limits it lacks.

uvicorn bounds neither the time nor the size of a request's *headers*: a client that opens a
connection and sends nothing, or one header byte per second (slowloris), holds a connection
slot forever, and one endless header line grows the process by the size of the header (200 MB
of ``X-Big: aaaa...`` cost 280 MB of RSS and minutes of CPU in a probe). With a fixed number of connection
slots, a handful of such clients lock everyone else out. This subclass adds:

* a **header deadline**: the request line and headers must arrive within ``header_timeout_s``
  of the connection opening (or of the first byte of a later keep-alive request) -> 408 and close;
* a **header size cap** (``max_header_bytes`` for the request line plus all headers) -> 431 and close.
  It is checked twice: on the raw bytes while the headers are still arriving (one endless header
  line is never complete, so the parser would only buffer it), and on the target and headers
  the parser hands over (a whole oversized request often arrives in one read, whose bytes the
  raw count cannot split into headers and body);
* JSON for the protocol-level 400 uvicorn sends on an unparsable request, and for the 503 it
  sends when the connection limit (``--max-connections``, uvicorn's ``limit_concurrency``) is
  reached (a plain-text body would break the ``{"error": {"code", "message"}}`` contract clients
  rely on; the 503 also carries ``Retry-After`` like the server's other overload answers).

The body has its own deadline and cap in ``uploads.read_uploads``.
"""

from __future__ import annotations

import json

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["guarded_protocol", "GuardedHttpToolsProtocol", "HEADER_TIMEOUT_S", "MAX_HEADER_BYTES"]

HEADER_TIMEOUT_S = 10.0
MAX_HEADER_BYTES = 64 * 1024  # browsers send ~1-2 KB; nginx's default buffer is 8 KB, large 4x8 KB
# After refusing a request whose client is still sending, read and drop its bytes for a while
# before closing ("lingering close", as nginx does): closing a socket with unread input makes the
# kernel send a reset, which can destroy the refusal before the client has read it.
LINGER_S = 2.0
LINGER_MAX_BYTES = 4 * 1024 * 1024


def _error_bytes(status: int, reason: str, code: str, message: str) -> bytes:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    head = (f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
            "cache-control: no-store\r\nconnection: close\r\n\r\n").encode()
    return head + body


async def _connection_limit_reached(scope, receive, send) -> None:
    """The ASGI app a request gets when the connection limit is reached (uvicorn's own is plain text)."""
    body = json.dumps({"error": {"code": "too_many_connections",
                                 "message": "The server has too many open connections; try again shortly."}}).encode()
    await send({"type": "http.response.start", "status": 503,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"retry-after", b"1"), (b"cache-control", b"no-store"), (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


class _HeadersTooLarge(Exception):
    """Raised from a parser callback to stop parsing a request whose headers are over the cap."""


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """HttpToolsProtocol with a header deadline, a header size cap and JSON protocol errors."""

    header_timeout_s = HEADER_TIMEOUT_S
    max_header_bytes = MAX_HEADER_BYTES

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._awaiting_headers = True
        self._header_bytes = 0  # raw bytes received while the headers were incomplete
        self._parsed_header_bytes = 0  # the request target and headers the parser handed over
        self._header_timer = None
        self._lingering = None  # the close timer once a refusal is sent; input is dropped from then on
        self._dropped_bytes = 0

    # -- the header phase ----------------------------------------------------------------------
    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._start_header_phase()

    def _start_header_phase(self) -> None:
        self._awaiting_headers = True
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout_s, self._header_timeout)

    def _end_header_phase(self) -> None:
        self._awaiting_headers = False
        self._header_bytes = 0
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._parsed_header_bytes = 0
        self._start_header_phase()  # keeps the connection's timer if it is still running

    def on_url(self, url: bytes) -> None:
        self._count_parsed_header(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_parsed_header(len(name) + len(value) + 4)  # "name: value\r\n"
        super().on_header(name, value)

    def _count_parsed_header(self, size: int) -> None:
        self._parsed_header_bytes += size
        if self._parsed_header_bytes > self.max_header_bytes:
            # Raising stops the parser (before the request reaches the app); httptools reports it
            # as a parser error, which uvicorn answers through send_400_response below.
            raise _HeadersTooLarge

    def on_headers_complete(self) -> None:
        self._end_header_phase()
        limit = self.limit_concurrency
        if limit is None or (len(self.connections) < limit and len(self.tasks) < limit):
            super().on_headers_complete()
            return
        # The same test uvicorn makes, answered with our JSON app instead of its plain-text one:
        # uvicorn's full request cycle still runs (the body is drained, the connection closed).
        self.logger.warning("refused a request: the connection limit (%d) is reached", limit)
        app = self.app
        self.app, self.limit_concurrency = _connection_limit_reached, None
        try:
            super().on_headers_complete()
        finally:
            self.app, self.limit_concurrency = app, limit

    def data_received(self, data: bytes) -> None:
        if self._lingering is not None:  # refused: the parser must not see these bytes
            self._dropped_bytes += len(data)
            if self._dropped_bytes > LINGER_MAX_BYTES:
                self.transport.close()
            return
        if self._awaiting_headers:
            self._header_bytes += len(data)
        super().data_received(data)
        # Still waiting for the end of the headers after this read: everything so far was header.
        if self._awaiting_headers and self._header_bytes > self.max_header_bytes and not self.transport.is_closing():
            self._reject_too_large()

    def _reject_too_large(self) -> None:
        self._reject(431, "Request Header Fields Too Large", "headers_too_large",
                     f"The request headers are larger than {self.max_header_bytes // 1024} KB.")

    def _header_timeout(self) -> None:
        self._header_timer = None
        if not self._awaiting_headers or self.transport.is_closing():
            return
        if self._header_bytes == 0 and self.cycle is None:
            self.transport.close()  # an idle connection that never said anything: just hang up
            return
        self._reject(408, "Request Timeout", "request_timeout",
                     f"The request headers did not arrive within {self.header_timeout_s:g} seconds.")

    def _reject(self, status: int, reason: str, code: str, message: str) -> None:
        """Answer ``status`` and end the connection: the answer, then our end of the stream, then
        the client's bytes dropped until it closes, for at most LINGER_S / LINGER_MAX_BYTES."""
        self._end_header_phase()
        self.logger.warning("refused a connection: %s", code)
        self.transport.write(_error_bytes(status, reason, code, message))
        if not self.transport.can_write_eof():
            self.transport.close()
            return
        self.transport.write_eof()
        self._lingering = self.loop.call_later(LINGER_S, self.transport.close)

    def connection_lost(self, exc) -> None:
        self._end_header_phase()
        if self._lingering is not None:
            self._lingering.cancel()
        super().connection_lost(exc)

    # -- protocol errors as JSON ---------------------------------------------------------------
    def send_400_response(self, msg: str) -> None:
        if self._parsed_header_bytes > self.max_header_bytes:  # not malformed: our cap stopped the parser
            self._reject_too_large()
            return
        self._end_header_phase()
        self.transport.write(_error_bytes(400, "Bad Request", "bad_request", "The request is not valid HTTP/1.1."))
        self.transport.close()


def guarded_protocol(header_timeout_s: float = HEADER_TIMEOUT_S, max_header_bytes: int = MAX_HEADER_BYTES) -> type:
    """A GuardedHttpToolsProtocol subclass with these limits, for ``uvicorn.Config(http=...)``."""
    return type("ImgclsHttpProtocol", (GuardedHttpToolsProtocol,),
                {"header_timeout_s": float(header_timeout_s), "max_header_bytes": int(max_header_bytes)})
