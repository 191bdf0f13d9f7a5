"""The one place HTTP errors are shaped: ``{"error": {"code", "message"}}`` with the right status.

Installed handlers cover imgcls errors, upload errors, Starlette/FastAPI HTTP exceptions,
request validation (422) and a catch-all 500 that never shows a traceback, a path or an
internal name. Busy/not-ready answers carry ``Retry-After``; answers after which the rest of a
request body should not be read carry ``Connection: close``.
"""

from __future__ import annotations

import json
import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from imgcls.errors import ImgclsError
from imgcls.server.uploads import ClientGone, UploadError

__all__ = ["error_headers", "error_response", "send_error", "install_exception_handlers", "RETRY_CODES", "STATUS_CODES"]

log = logging.getLogger("imgcls.server")

# Codes a client should retry after a pause, with the pause in seconds.
RETRY_CODES = {"overloaded": 1, "not_ready": 2, "shutting_down": 5}
STATUS_CODES = {
    400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
    406: "not_acceptable", 408: "request_timeout", 413: "payload_too_large", 414: "uri_too_long",
    415: "unsupported_media_type", 421: "host_not_allowed", 422: "invalid_parameter", 429: "too_many_requests",
    500: "internal_error", 503: "unavailable",
}
STATUS_MESSAGES = {
    404: "Not found.", 405: "Method not allowed for this endpoint.", 500: "Something went wrong on the server.",
}


def error_headers(code: str, close: bool = False, extra: dict | None = None) -> dict[str, str]:
    headers = {"Cache-Control": "no-store"}
    if code in RETRY_CODES:
        headers["Retry-After"] = str(RETRY_CODES[code])
    if close:
        headers["Connection"] = "close"
    headers.update(extra or {})
    return headers


def error_response(status: int, code: str, message: str, *, close: bool = False, headers: dict | None = None,
                   request: Request | None = None) -> JSONResponse:
    """A JSON error response; counts the code in the app's metrics when ``request`` is given."""
    if request is not None:
        metrics = getattr(request.app.state, "metrics", None)
        if metrics is not None:
            metrics.errors.labels(code).inc()
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status,
                        headers=error_headers(code, close, headers))


async def send_error(send, status: int, code: str, message: str, *, close: bool = False,
                     headers: dict | None = None, metrics=None) -> None:
    """The same JSON error, sent straight on an ASGI channel (for pure-ASGI middleware)."""
    if metrics is not None:
        metrics.errors.labels(code).inc()
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode("latin-1")) for k, v in error_headers(code, close, headers).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for error in exc.errors()[:5]:
        location = ".".join(str(p) for p in error.get("loc", ()) if p not in ("query", "body", "path", "header"))
        message = str(error.get("msg", "invalid value"))[:200]
        parts.append(f"{location}: {message}" if location else message)
    return "Invalid request parameter. " + "; ".join(parts) if parts else "Invalid request parameter."


def install_exception_handlers(app: FastAPI) -> None:
    """Map every error the app can raise to the JSON error shape."""

    @app.exception_handler(UploadError)
    async def upload_error(request: Request, exc: UploadError):
        return error_response(exc.http_status, exc.code, exc.message, close=exc.close, request=request)

    @app.exception_handler(ImgclsError)
    async def imgcls_error(request: Request, exc: ImgclsError):
        return error_response(exc.http_status, exc.code, exc.message, request=request)

    @app.exception_handler(ClientGone)
    async def client_gone(request: Request, exc: ClientGone):
        # Nobody is listening; the status only shows in the access log and metrics.
        return JSONResponse({"error": {"code": "client_closed", "message": "Client disconnected."}}, status_code=499)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        code = STATUS_CODES.get(exc.status_code, "http_error")
        message = exc.detail if isinstance(exc.detail, str) and exc.status_code != 500 else None
        message = STATUS_MESSAGES.get(exc.status_code) if message in (None, "Not Found", "Method Not Allowed") else message
        return error_response(exc.status_code, code, message or "Request failed.", request=request,
                              headers=dict(exc.headers or {}))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        return error_response(422, "invalid_parameter", _validation_message(exc), request=request)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception):
        log.error("unhandled error", exc_info=exc)
        return error_response(500, "internal_error", "Something went wrong on the server; the error was logged.",
                              request=request)
