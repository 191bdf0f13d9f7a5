"""`imgcls serve`: the HTTP API, web UI and offline API docs in one process.

Testing hook (hidden from --help): ``--warmup-delay S`` / ``IMGCLS_TEST_WARMUP_DELAY_S=S`` holds
readiness back S seconds after the models load, so tests can observe ``/readyz`` answering 503
before warm-up. It changes nothing else.
"""

from __future__ import annotations

import os
from enum import Enum
from typing import Optional

import typer

from imgcls.choices import DefaultPrecision, RuntimeName
from imgcls.cli._common import DRAFT_HELP, console_err, fail


class LogLevel(str, Enum):
    debug = "debug"
    info = "info"
    warning = "warning"
    error = "error"


def _split_env(name: str) -> list[str]:
    return [part.strip() for part in os.environ.get(name, "").split(",") if part.strip()]


def serve(
    host: str = typer.Option("127.0.0.1", "--host", envvar="IMGCLS_HOST",
                             help="Address to listen on. Loopback by default; use 0.0.0.0 to serve the network "
                                  "(then set --api-key)."),
    port: int = typer.Option(8000, "--port", envvar="IMGCLS_PORT", min=0, max=65535, help="TCP port (0 = any free)."),
    model: Optional[list[str]] = typer.Option(
        None, "--model", "-m",
        help="Model to serve: catalogue name, imported bundle or bundle folder. Repeat to serve several; the first "
             "is the default. Env: IMGCLS_MODEL (comma-separated). Default: resnet18 if installed, else "
             "efficientnet_lite0."),
    precision: DefaultPrecision = typer.Option(
        DefaultPrecision.auto, "--precision", "-p", envvar="IMGCLS_PRECISION",
        help="Default precision. auto: int8 where the model has a verified INT8 artifact or ships a calibration "
             "table (the embedded efficientnet_lite0 does: built on first start), else fp32. The other precision is "
             "served too when its artifact exists (loaded on its first request)."),
    runtime: RuntimeName = typer.Option(RuntimeName.onnxruntime, "--runtime", envvar="IMGCLS_RUNTIME",
                                        help="onnxruntime, or openvino (bf16 where the CPU has it) for artifacts "
                                             "verified with `imgcls models verify-openvino`."),
    max_batch: int = typer.Option(4, "--max-batch", envvar="IMGCLS_MAX_BATCH", min=1, max=256,
                                  help="Most images per model call (micro-batching across requests)."),
    max_wait_ms: float = typer.Option(3.0, "--max-wait-ms", envvar="IMGCLS_MAX_WAIT_MS", min=0, max=1000,
                                      help="Longest wait for images already received and still being decoded to "
                                           "share a model call (a lone request never waits)."),
    max_queue: int = typer.Option(32, "--max-queue", envvar="IMGCLS_MAX_QUEUE", min=1,
                                  help="Images in progress per model at once (decoding, waiting, in the model); more "
                                       "requests wait in line (see --queue-timeout)."),
    queue_timeout: float = typer.Option(10.0, "--queue-timeout", envvar="IMGCLS_QUEUE_TIMEOUT", min=0, max=3600,
                                        help="Seconds a request may wait in line for room (--max-queue, upload "
                                             "memory) before it gets 503 + Retry-After; 0 answers 503 at once."),
    max_upload_mb: float = typer.Option(20.0, "--max-upload-mb", envvar="IMGCLS_MAX_UPLOAD_MB", min=0.001, max=1024,
                                        help="Largest request body in MB, enforced while reading (413 beyond)."),
    max_files: int = typer.Option(32, "--max-files", envvar="IMGCLS_MAX_FILES", min=1, max=1000,
                                  help="Most files per request."),
    threads: int = typer.Option(1, "--threads", envvar="IMGCLS_THREADS", min=1, max=256,
                                help="ONNX Runtime threads per model call. 1 gives the most requests per second; "
                                     "more lowers single-request latency on an idle machine."),
    solo_threads: Optional[int] = typer.Option(None, "--solo-threads", envvar="IMGCLS_SOLO_THREADS", min=1, max=256,
                                               help="ONNX Runtime threads for a model call that is the only work in "
                                                    "the server (a lone request): lower latency at low load, for one "
                                                    "more session's memory. Default: all cores; equal to --threads "
                                                    "turns it off."),
    model_workers: Optional[int] = typer.Option(None, "--model-workers", envvar="IMGCLS_MODEL_WORKERS", min=1, max=64,
                                                help="Model calls that may run at once per model (default: one per "
                                                     "core)."),
    draft: bool = typer.Option(True, "--draft/--no-draft", envvar="IMGCLS_DRAFT", help=DRAFT_HELP),
    decode_threads: Optional[int] = typer.Option(None, "--decode-threads", envvar="IMGCLS_DECODE_THREADS", min=1,
                                                 help="Threads decoding and preprocessing uploads (default: all cores)."),
    api_key: Optional[str] = typer.Option(None, "--api-key", envvar="IMGCLS_API_KEY", show_default=False,
                                          help="Require this key on /api/* and /metrics (X-API-Key header or "
                                               "Authorization: Bearer). /healthz, /readyz, the UI and docs stay open."),
    allowed_host: Optional[list[str]] = typer.Option(
        None, "--allowed-host",
        help="Extra Host name the server answers to (repeatable), e.g. when reached by a DNS name or through a "
             "proxy. Other names are refused (DNS-rebinding protection). Env: IMGCLS_ALLOWED_HOSTS (comma-separated)."),
    body_timeout: float = typer.Option(30.0, "--body-timeout", envvar="IMGCLS_BODY_TIMEOUT", min=0.1,
                                       help="Seconds a client gets to send a whole upload (slow clients get 408)."),
    max_connections: int = typer.Option(1024, "--max-connections", envvar="IMGCLS_MAX_CONNECTIONS", min=1, max=100_000,
                                        help="Open connections (and requests in progress) the server holds; one more "
                                             "gets a JSON 503 with Retry-After and is closed."),
    drain_seconds: float = typer.Option(1.0, "--drain-seconds", envvar="IMGCLS_DRAIN_SECONDS", min=0,
                                        help="On SIGTERM, report not-ready and answer 503 this long before closing."),
    graceful_timeout: float = typer.Option(10.0, "--graceful-timeout", envvar="IMGCLS_GRACEFUL_TIMEOUT", min=0,
                                           help="On shutdown, wait at most this long for in-flight requests."),
    log_level: LogLevel = typer.Option(LogLevel.info, "--log-level", envvar="IMGCLS_LOG_LEVEL",
                                       help="Log level of the JSON-lines log on stderr (includes the access log)."),
    warmup_delay: float = typer.Option(0.0, "--warmup-delay", envvar="IMGCLS_TEST_WARMUP_DELAY_S", min=0, hidden=True,
                                       help="Testing only: hold readiness back this many seconds."),
) -> None:
    """Serve the HTTP API, the web UI and offline API docs.

    Open the printed URL in a browser; the API is documented at /docs. Every option can also be set with the environment variable shown. Exit codes: 0 after a clean shutdown, 2 bad settings, 3 model problem (unknown model, missing or corrupt artifact).
    """
    from imgcls.errors import ImgclsError
    from imgcls.server.config import ServerConfig, is_loopback_host

    config = ServerConfig(
        models=list(model or []) or _split_env("IMGCLS_MODEL"),
        precision=precision.value, runtime=runtime.value, host=host, port=port, max_batch=max_batch, max_wait_ms=max_wait_ms,
        max_queue=max_queue, queue_timeout_s=queue_timeout, max_upload_mb=max_upload_mb, max_files=max_files, threads=threads, solo_threads=solo_threads, model_workers=model_workers,
        decode_threads=decode_threads, draft=draft, api_key=api_key or None,
        allowed_hosts=list(allowed_host or []) or _split_env("IMGCLS_ALLOWED_HOSTS"),
        body_timeout_s=body_timeout, max_connections=max_connections, drain_seconds=drain_seconds, graceful_timeout_s=graceful_timeout,
        log_level=log_level.value, warmup_delay_s=warmup_delay,
    )
    if not is_loopback_host(host) and not config.api_key:
        console_err.print(f"[yellow]Warning:[/] serving on {host} without --api-key: anyone who can reach this "
                          "address can use the API.")
    try:
        from imgcls.server.runner import run_server

        code = run_server(config)
    except ImgclsError as exc:
        fail(exc.message, exc.exit_code)
    except OSError as exc:
        fail(str(exc), 2)
    raise typer.Exit(code)
