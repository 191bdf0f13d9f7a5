"""Request guards that run before any route: Host, Origin, API key, early size cap, draining.

* **DNS rebinding**: a web page on evil.example whose name is re-pointed at 127.0.0.1 reaches a
  loopback server with ``Host: evil.example``. When bound to loopback (or given
  ``--allowed-host``), any other Host gets 421. Health probes are exempt.
* **Cross-site requests**: browsers may POST a multipart form to any origin without a CORS
  preflight. State-changing API calls whose ``Origin`` is not this server's own (or an allowed
  host) get 403; requests without Origin (curl, scripts) are not browser-driven and pass.
* **API key** (optional): ``X-API-Key: KEY`` or ``Authorization: Bearer KEY`` on ``/api/*`` and
  ``/metrics``, compared in constant time. Health probes, the UI and the docs stay open.
* **Early 413**: a classify request whose Content-Length is over the cap is refused before a
  byte of its body is read.
* **Draining** (after SIGTERM): new API calls get 503 ``shutting_down``; in-flight ones finish.
"""

from __future__ import annotations

import hmac
from urllib.parse import urlsplit

from imgcls.server.http_errors import send_error

__all__ = ["Guard", "Lifecycle", "split_host"]

SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
PROBES = {"/healthz", "/readyz"}
CLASSIFY_PATH = "/api/v1/classify"
# Past this multiple of the cap, don't let uvicorn drain the refused body: close instead.
DRAIN_FACTOR = 4


class Lifecycle:
    """Readiness and shutdown state shared by the app, the guard and the server runner."""

    def __init__(self) -> None:
        self.ready = False
        self.draining = False
        self.failed: str | None = None
        self.in_flight = 0

    @property
    def state(self) -> str:
        if self.failed:
            return "failed"
        if self.draining:
            return "shutting_down"
        return "ready" if self.ready else "loading"


def split_host(value: str | None) -> tuple[str, int | None] | None:
    """'Host' header -> (lowercase hostname, port or None); None when unparsable."""
    if not value or len(value) > 300:
        return None
    try:
        parts = urlsplit("//" + value.strip())
        hostname, port = parts.hostname, parts.port
    except ValueError:
        return None
    if not hostname or parts.path or parts.query or parts.username is not None:
        return None
    return hostname.lower(), port


class Guard:
    """Pure-ASGI middleware applying the checks in the module docstring, in that order."""

    def __init__(self, app, *, lifecycle: Lifecycle, hostnames: set[str] | None, origin_hosts: set[str],
                 api_key: str | None, max_upload_bytes: int, metrics=None):
        self.app = app
        self.lifecycle = lifecycle
        self.hostnames = hostnames
        self.origin_hosts = origin_hosts
        self.api_key = api_key.encode("utf-8") if api_key else None
        self.max_upload_bytes = max_upload_bytes
        self.metrics = metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path, method = scope["path"], scope["method"]
        headers = _headers(scope)
        reject = self._check(scope, path, method, headers)
        if reject is not None:
            status, code, message, extra = reject
            await send_error(send, status, code, message, metrics=self.metrics, **extra)
            return
        if not path.startswith("/api/"):
            await self.app(scope, receive, send)
            return
        self.lifecycle.in_flight += 1
        if self.metrics is not None:
            self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send)
        finally:
            self.lifecycle.in_flight -= 1
            if self.metrics is not None:
                self.metrics.in_flight.dec()

    def _check(self, scope, path: str, method: str, headers: dict[bytes, bytes]):
        if path not in PROBES and self.hostnames is not None:
            host = split_host(headers.get(b"host", b"").decode("latin-1"))
            if host is None or host[0] not in self.hostnames:
                return 421, "host_not_allowed", "This server does not answer for that host name.", {"close": True}
        protected = path.startswith("/api/") or path == "/metrics"
        if not protected:
            return None
        if method not in SAFE_METHODS and not self._same_origin(scope, headers):
            return 403, "cross_origin", "Cross-site requests are not accepted.", {}
        if self.api_key is not None and not self._key_ok(headers):
            return 401, "unauthorized", "A valid API key is required (X-API-Key header or Authorization: Bearer).", {
                "headers": {"WWW-Authenticate": 'Bearer realm="imgcls"'}}
        if path.startswith("/api/") and self.lifecycle.draining:
            return 503, "shutting_down", "The server is shutting down; try again shortly.", {"close": True}
        if path == CLASSIFY_PATH and method == "POST":
            length = headers.get(b"content-length")
            if length is not None:
                try:
                    declared = int(length)
                except ValueError:
                    return 400, "bad_request", "Invalid Content-Length header.", {"close": True}
                if declared > self.max_upload_bytes:
                    mb = self.max_upload_bytes / (1024 * 1024)
                    # Within a few times the cap, keep the connection: uvicorn discards the rest of
                    # the body, so browsers that finish sending still see this answer.
                    close = declared > DRAIN_FACTOR * self.max_upload_bytes
                    return 413, "payload_too_large", f"The upload is larger than the {mb:g} MB limit per request.", {
                        "close": close}
        return None

    def _same_origin(self, scope, headers: dict[bytes, bytes]) -> bool:
        if headers.get(b"sec-fetch-site", b"") == b"cross-site":
            return False
        origin = headers.get(b"origin")
        if origin is None:
            return True  # not sent by a browser on a cross-origin request
        try:
            parts = urlsplit(origin.decode("latin-1").strip())
            origin_host, origin_port = (parts.hostname or "").lower(), parts.port
        except ValueError:
            return False
        if parts.scheme not in ("http", "https") or not origin_host:
            return False  # "null" (sandboxed frames, file://) and anything odd
        default_port = 443 if parts.scheme == "https" else 80
        host = split_host(headers.get(b"host", b"").decode("latin-1"))
        if host is not None:
            host_port = host[1] or (443 if scope.get("scheme") == "https" else 80)
            if origin_host == host[0] and (origin_port or default_port) == host_port:
                return True
        return origin_host in self.origin_hosts

    def _key_ok(self, headers: dict[bytes, bytes]) -> bool:
        provided = headers.get(b"x-api-key")
        if provided is None:
            auth = headers.get(b"authorization", b"")
            if auth[:7].lower() == b"bearer ":
                provided = auth[7:].strip()
        if provided is None:
            return False
        return hmac.compare_digest(provided, self.api_key)


def _headers(scope) -> dict[bytes, bytes]:
    # First value wins for duplicates; header names are lowercase in ASGI.
    result: dict[bytes, bytes] = {}
    for key, value in scope.get("headers", []):
        result.setdefault(key, value)
    return result
