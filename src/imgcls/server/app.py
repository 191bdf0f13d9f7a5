"""The application factory: ``create_app(config)`` -> a FastAPI app serving API, UI and docs.

Middleware order, outermost first: RequestContext (request id, security headers, access log,
metrics, catch-all 500) -> Guard (Host, Origin, API key, early 413, draining) -> FastAPI
(routes and JSON exception handlers). Models are resolved and their artifacts verified here,
synchronously, so a broken artifact stops start-up; loading and warm-up run in the background
once the server listens, with ``/readyz`` 503 until they finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import mimetypes
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, Response
from fastapi.staticfiles import StaticFiles

from imgcls import __version__
from imgcls.errors import ImgclsError
from imgcls.server import routes
from imgcls.server.config import ModelSlot, ServerConfig, available_cores, resolve_models
from imgcls.server.docs import DOCS_CSS, render_docs
from imgcls.server.http_errors import install_exception_handlers
from imgcls.server.observability import Metrics, RequestContext
from imgcls.server.registry import ModelRegistry
from imgcls.server.security import Guard, Lifecycle, split_host
from imgcls.server.testhooks import LeakHook, leak_hook_settings
from imgcls.server.uploads import ByteBudget

__all__ = ["create_app", "AppState", "STATIC_DIR"]

log = logging.getLogger("imgcls.server")
STATIC_DIR = Path(__file__).resolve().parent / "static"

# Module scripts must be served as JavaScript whatever /etc/mime.types says.
for _ext, _type in ((".js", "text/javascript"), (".mjs", "text/javascript"), (".css", "text/css"),
                    (".svg", "image/svg+xml"), (".json", "application/json"), (".webmanifest", "application/manifest+json")):
    mimetypes.add_type(_type, _ext)


class AppState:
    """Everything the routes need, hung on ``app.state.imgcls``."""

    def __init__(self, config: ServerConfig, slots: list[ModelSlot]):
        self.config = config
        self.metrics = Metrics()
        self.lifecycle = Lifecycle()
        self.registry = ModelRegistry(slots, config, self.metrics)
        self.upload_limits = routes.make_upload_limits(config)
        # Bodies held in memory at once, all requests together (each is capped on its own too).
        self.upload_budget = ByteBudget(max(4 * config.max_upload_bytes, 64 * 1024 * 1024))
        self._limits = routes.make_limits(config)
        workers = config.decode_threads or available_cores()
        self.decode_pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="imgcls-decode")
        # Set by the runner: called once models are warm, or with a message when loading failed.
        self.on_ready: Callable[[], None] | None = None
        self.on_fatal: Callable[[str], None] | None = None
        self.load_seconds: float | None = None

    def limits(self) -> dict:
        return dict(self._limits)

    def check_ready(self) -> None:
        from imgcls.errors import OverloadedError

        if self.lifecycle.draining:
            error = OverloadedError("The server is shutting down; try again shortly.")
            error.code = "shutting_down"
            raise error
        if not self.lifecycle.ready:
            error = OverloadedError("The models are still loading; try again in a moment.")
            error.code = "not_ready"
            raise error

    async def start(self) -> None:
        """Load and warm the models, then flip readiness (runs as a background task)."""
        try:
            self.load_seconds = await self.registry.load(self.config.warmup_delay_s)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            message = exc.message if isinstance(exc, ImgclsError) else f"could not load the models ({exc.__class__.__name__})"
            log.error("model loading failed: %s", message, exc_info=not isinstance(exc, ImgclsError))
            self.lifecycle.failed = message
            if self.on_fatal:
                self.on_fatal(message)
            return
        self.lifecycle.ready = True
        self.metrics.ready.set(1)
        log.info("models ready", extra={"fields": {"seconds": round(self.load_seconds, 2),
                                                   "models": [f"{m.name}:{m.precision}" for m in self.registry.served.values()]}})
        if self.on_ready:
            self.on_ready()

    async def stop(self) -> None:
        self.lifecycle.ready = False
        self.lifecycle.draining = True
        self.metrics.ready.set(0)
        await self.registry.close()
        self.decode_pool.shutdown(wait=True, cancel_futures=True)


def create_app(config: ServerConfig | None = None, slots: list[ModelSlot] | None = None) -> FastAPI:
    """Build the app. Models are resolved (and artifacts verified) now; loading happens at start.

    Args:
        config: server settings (defaults: the default model at fp32 on 127.0.0.1).
        slots: already-resolved models (the CLI resolves them first so it can build missing ones).

    Raises:
        ImgclsError: an unknown model, a missing or corrupt artifact, or a bad setting.
    """
    config = config or ServerConfig()
    config.validate()
    state = AppState(config, slots if slots is not None else resolve_models(config))

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        loader = asyncio.create_task(state.start(), name="imgcls-load-models")
        try:
            yield
        finally:
            loader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loader
            await state.stop()

    app = FastAPI(
        title="imgcls",
        version=__version__,
        description="Offline ImageNet image classification over HTTP.",
        docs_url=None, redoc_url=None, openapi_url="/openapi.json", lifespan=lifespan,
    )
    app.state.imgcls = state
    app.state.metrics = state.metrics
    install_exception_handlers(app)
    app.include_router(routes.router)
    _add_pages(app, state)
    app.mount("/static", StaticFiles(directory=STATIC_DIR, check_dir=True), name="static")
    hostnames = config.accepted_hostnames()
    origin_hosts = {h.strip().lower().strip("[]") for h in config.allowed_hosts if h.strip()}
    app.add_middleware(Guard, lifecycle=state.lifecycle, hostnames=hostnames, origin_hosts=origin_hosts,
                       api_key=config.api_key or None, max_upload_bytes=config.max_upload_bytes, metrics=state.metrics)
    leak = leak_hook_settings()
    if leak is not None:  # reliability tests only: proves the soak's leak detector fires
        app.add_middleware(LeakHook, kb=leak[0], files=leak[1])
    app.add_middleware(RequestContext, metrics=state.metrics)  # added last = outermost
    return app


def _add_pages(app: FastAPI, state: AppState) -> None:
    index = STATIC_DIR / "index.html"

    @app.get("/", include_in_schema=False)
    async def home():
        return FileResponse(index, media_type="text/html; charset=utf-8", headers={"Cache-Control": "no-cache"})

    @app.get("/docs", include_in_schema=False)
    async def docs(request: Request):
        host = split_host(request.headers.get("host"))
        netloc = request.headers.get("host", "") if host else f"{state.config.host}:{state.config.port}"
        html = render_docs(app.openapi(), f"{request.url.scheme}://{netloc}", bool(state.config.api_key))
        return HTMLResponse(html, headers={"Cache-Control": "no-cache"})

    @app.get("/docs.css", include_in_schema=False)
    async def docs_css():
        return Response(DOCS_CSS, media_type="text/css; charset=utf-8", headers={"Cache-Control": "no-cache"})

    # Browsers ask for /favicon.ico on pages that name no icon (e.g. /openapi.json): answer with
    # the app's SVG icon instead of a 404 in every console.
    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon():
        return FileResponse(STATIC_DIR / "favicon.svg", media_type="image/svg+xml",
                            headers={"Cache-Control": "max-age=86400"})
