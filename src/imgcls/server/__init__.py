"""The imgcls HTTP service: FastAPI app (API, web UI, offline docs) run by uvicorn.

``create_app(ServerConfig(...))`` builds the app; ``run_server(config)`` runs it with graceful
shutdown (what ``imgcls serve`` calls). Modules: config (settings, model resolution), app
(factory), routes (endpoints), uploads (hardened multipart reading), batcher (micro-batching),
registry (served models), security (Host/Origin/API-key guards), observability (metrics, logs),
http_errors (the JSON error shape), docs (offline API docs page), runner (uvicorn + SIGTERM).
"""

from __future__ import annotations

__all__ = ["ServerConfig", "create_app", "run_server"]


def __getattr__(name: str):
    # Lazy: `imgcls serve --help` should not pay for FastAPI and onnxruntime imports.
    if name == "ServerConfig":
        from imgcls.server.config import ServerConfig

        return ServerConfig
    if name == "create_app":
        from imgcls.server.app import create_app

        return create_app
    if name == "run_server":
        from imgcls.server.runner import run_server

        return run_server
    raise AttributeError(name)
