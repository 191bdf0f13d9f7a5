"""Metrics, structured logs and the per-request context (request id, timing, access log).

``RequestContext`` is the outermost ASGI middleware: it gives every request an id (echoed as
``X-Request-ID``), adds the security headers, times the request, writes one JSON access-log
line, counts it in Prometheus, and is the last-resort catch-all that turns an unexpected
exception into a JSON 500 without a traceback, path or internal name in the response.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
import uuid
from datetime import datetime, timezone

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["Metrics", "RequestContext", "configure_logging", "JsonFormatter", "route_label", "SECURITY_HEADERS"]

access_log = logging.getLogger("imgcls.access")
log = logging.getLogger("imgcls.server")

CSP = (
    "default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob:; connect-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
]
_KNOWN_ROUTES = {
    "/", "/healthz", "/readyz", "/metrics", "/docs", "/docs.css", "/openapi.json", "/favicon.ico",
    "/api/v1/classify", "/api/v1/models", "/api/v1/labels",
}
_METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}  # bounded label values
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def route_label(path: str) -> str:
    """A bounded label for metrics: known routes as-is, static files grouped, the rest 'other'."""
    if path in _KNOWN_ROUTES:
        return path
    if path.startswith("/static/"):
        return "/static"
    return "other"


STAGES = ("decode", "preprocess", "model", "top_k")


class Metrics:
    """The Prometheus series of one app (its own registry, so several apps can share a process)."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.requests = Counter("imgcls_http_requests", "HTTP requests by route, method and status.",
                                ["route", "method", "status"], registry=r)
        self.latency = Histogram("imgcls_http_request_duration_seconds", "HTTP request latency by route.", ["route"],
                                 buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60), registry=r)
        self.in_flight = Gauge("imgcls_http_requests_in_flight", "API requests being handled.", registry=r)
        self.errors = Counter("imgcls_errors", "Errors answered, by code (request-level and per-file).", ["code"],
                              registry=r)
        self.images = Counter("imgcls_images", "Images per model and outcome (ok or an error code).",
                              ["model", "precision", "outcome"], registry=r)
        self.batch_size = Histogram("imgcls_batch_size", "Images per model call.", ["model", "precision"],
                                    buckets=(1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64, 128, 256), registry=r)
        self.inference = Histogram("imgcls_inference_seconds", "Duration of one model call.", ["model", "precision"],
                                   buckets=(0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5), registry=r)
        self.queue_wait = Histogram("imgcls_queue_wait_seconds", "Time an image waited for its model call.",
                                    ["model", "precision"],
                                    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5), registry=r)
        self.solo_calls = Counter("imgcls_solo_model_calls", "Model calls whose images were all the work in the "
                                  "server (they run on --solo-threads).", ["model", "precision"], registry=r)
        self.queue_depth = Gauge("imgcls_queue_depth", "Images admitted and not finished (decoding, waiting, running).",
                                 ["model", "precision"], registry=r)
        self.waiting = Gauge("imgcls_requests_waiting", "Requests in line for room in the queue (--max-queue), "
                             "their bodies read.", ["model", "precision"], registry=r)
        self.ready = Gauge("imgcls_ready", "1 when every model is loaded and warm, else 0.", registry=r)
        # CPU per stage, read from the clock of the thread doing the work, so a benchmark (or an
        # operator) sees where each image's CPU goes under real load, not in a separate idle run.
        self.stage_cpu = Counter("imgcls_stage_cpu_seconds", "CPU time per stage of classifying an image, from the "
                                 "working thread's CPU clock: decode, preprocess, model (only calls that compute on "
                                 "the calling thread: ONNX Runtime at one thread per call), top_k.",
                                 ["model", "precision", "stage"], registry=r)
        self.stage_images = Counter("imgcls_stage_images", "Images whose CPU time imgcls_stage_cpu_seconds counts, "
                                    "by stage.", ["model", "precision", "stage"], registry=r)

    def stage_recorder(self, model: str, precision: str):
        """A callback ``record(stage, cpu_seconds, images)`` bound to one model's label set."""
        series = {stage: (self.stage_cpu.labels(model, precision, stage), self.stage_images.labels(model, precision, stage))
                  for stage in STAGES}

        def record(stage: str, cpu_seconds: float, images: int = 1) -> None:
            cpu, count = series[stage]
            cpu.inc(cpu_seconds)
            count.inc(images)

        return record

    def batcher_observer(self, model: str, precision: str):
        """A callback for MicroBatcher events, bound to one model's label set."""
        size = self.batch_size.labels(model, precision)
        inference = self.inference.labels(model, precision)
        wait = self.queue_wait.labels(model, precision)
        depth = self.queue_depth.labels(model, precision)
        solo = self.solo_calls.labels(model, precision)
        waiting = self.waiting.labels(model, precision)

        def observe(event: str, value: float) -> None:
            if event == "batch_size":
                size.observe(value)
            elif event == "model_s":
                inference.observe(value)
            elif event == "queue_s":
                wait.observe(value)
            elif event == "depth":
                depth.set(value)
            elif event == "solo":
                solo.inc(value)
            elif event == "waiting":
                waiting.set(value)

        return observe


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, plus any ``extra={"fields": {...}}``."""

    def format(self, record: logging.LogRecord) -> str:
        data = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            data.update(fields)
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False, default=str)


def configure_logging(level: str = "info") -> None:
    """JSON lines on stderr for our logs and uvicorn's (its own access log is replaced by ours)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
    logging.getLogger("uvicorn.access").disabled = True
    # Any library warning becomes a JSON record too (logger "py.warnings"), not a raw stderr line.
    logging.captureWarnings(True)


class RequestContext:
    """Outermost pure-ASGI middleware (see module docstring)."""

    def __init__(self, app, metrics: Metrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        incoming = _header(scope, b"x-request-id")
        request_id = incoming if incoming and _REQUEST_ID.match(incoming) else uuid.uuid4().hex
        info = scope["imgcls"] = {"request_id": request_id, "model": None, "n_files": None}
        status = {"code": 0, "started": False}
        extra_headers = [(b"x-request-id", request_id.encode()), *SECURITY_HEADERS]
        static = scope.get("path", "").startswith("/static/")

        async def send_wrapper(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                status["started"] = True
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() not in _OVERRIDDEN]
                if static and not any(k.lower() == b"cache-control" for k, _ in headers):
                    headers.append((b"cache-control", b"no-cache"))  # revalidate (ETag): never a stale UI
                message = {**message, "headers": headers + extra_headers}
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except Exception:
            log.error("unhandled error", exc_info=True, extra={"fields": {"request_id": request_id}})
            self.metrics.errors.labels("internal_error").inc()
            if not status["started"]:
                body = json.dumps({"error": {"code": "internal_error", "message":
                                             "Something went wrong on the server; the error was logged."}}).encode()
                await send_wrapper({"type": "http.response.start", "status": 500, "headers": [
                    (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
                await send_wrapper({"type": "http.response.body", "body": body})
            status["code"] = status["code"] or 500
        finally:
            self._record(scope, info, status["code"] or 499, time.perf_counter() - started)

    def _record(self, scope, info: dict, status: int, seconds: float) -> None:
        route = route_label(scope.get("path", ""))
        method = scope.get("method", "")
        self.metrics.requests.labels(route, method if method in _METHODS else "other", str(status)).inc()
        self.metrics.latency.labels(route).observe(seconds)
        if not access_log.isEnabledFor(logging.INFO):
            return
        client = scope.get("client") or ("", 0)
        fields = {
            "event": "access",
            "request_id": info["request_id"],
            "method": scope.get("method", ""),
            "path": scope.get("path", "")[:200],
            "status": status,
            "ms": round(seconds * 1000, 2),
            "model": info.get("model"),
            "n_files": info.get("n_files"),
            "client": client[0],
        }
        access_log.info("%s %s %s", fields["method"], fields["path"], status, extra={"fields": fields})


_OVERRIDDEN = {name for name, _ in SECURITY_HEADERS} | {b"x-request-id"}


def _header(scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return value.decode("latin-1")
    return None
