"""Running the app under uvicorn, with a shutdown that load balancers and clients can live with.

On the first SIGTERM (or Ctrl-C): readiness turns false at once and new API calls get 503
``shutting_down``, while requests already in flight finish. After ``drain_seconds`` (SIGTERM
only; Ctrl-C does not wait) and once nothing is in flight — or ``graceful_timeout_s`` later at
the latest — the listener closes and uvicorn gets a few more seconds for stragglers before it
cancels them. A second signal stops at once. The process therefore always exits within
``drain_seconds + graceful_timeout_s + 5`` seconds.
"""

from __future__ import annotations

import importlib.util
import logging
import signal
import socket
import sys
import time

import uvicorn

from imgcls.artifacts import build_in_subprocess
from imgcls.server.app import create_app
from imgcls.server.config import ServerConfig, resolve_models
from imgcls.server.observability import configure_logging
from imgcls.server.security import Lifecycle

__all__ = ["run_server", "ImgclsServer", "EXIT_MODEL_FAILED"]

log = logging.getLogger("imgcls.server")
EXIT_MODEL_FAILED = 3
UVICORN_GRACE_S = 5.0


class ImgclsServer(uvicorn.Server):
    """uvicorn.Server with a draining phase before the listener closes (see module docstring)."""

    def __init__(self, config: uvicorn.Config, lifecycle: Lifecycle, *, drain_seconds: float,
                 graceful_timeout_s: float, url: str):
        super().__init__(config)
        self.lifecycle = lifecycle
        self.drain_seconds = drain_seconds
        self.graceful_timeout_s = graceful_timeout_s
        self.url = url
        self.exit_code = 0
        self._drain_started: float | None = None
        self._drain_delay = 0.0
        self._announced = False

    def handle_exit(self, sig: int, frame) -> None:  # called from the signal handler: only set flags
        if self._drain_started is None:
            self._drain_started = time.monotonic()
            self._drain_delay = self.drain_seconds if sig == signal.SIGTERM else 0.0
            self.lifecycle.draining = True
            self.lifecycle.ready = False
        else:
            self.should_exit = True
            self.force_exit = True

    def fail(self, message: str) -> None:
        """Model loading failed after the listener opened: exit with the model-problem code."""
        self.exit_code = EXIT_MODEL_FAILED
        print(f"Error: {message}", file=sys.stderr, flush=True)
        self.should_exit = True

    async def on_tick(self, counter: int) -> bool:
        if self._drain_started is not None and not self.should_exit:
            elapsed = time.monotonic() - self._drain_started
            drained = elapsed >= self._drain_delay and self.lifecycle.in_flight == 0
            if drained or elapsed >= self._drain_delay + self.graceful_timeout_s:
                self.should_exit = True
        self.announce()
        return await super().on_tick(counter)

    def announce(self) -> None:
        """Print the URL once, as soon as the server both listens and is ready."""
        if self.started and self.lifecycle.ready and not self._announced:
            self._announced = True
            print(f"imgcls is ready: {self.url}", flush=True)


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        reason = "the port is already in use" if exc.errno == 98 else (exc.strerror or str(exc))
        raise OSError(f"Cannot listen on {host}:{port}: {reason}.") from None
    sock.set_inheritable(True)
    return sock


def _url(host: str, port: int) -> str:
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else ("localhost" if host == "::" else host)
    shown = f"[{shown}]" if ":" in shown else shown
    return f"http://{shown}:{port}/"


def _http_protocol(config: ServerConfig):
    if importlib.util.find_spec("httptools") is None:
        return "h11"
    from imgcls.server.protocol import HEADER_TIMEOUT_S, guarded_protocol

    return guarded_protocol(header_timeout_s=min(HEADER_TIMEOUT_S, config.body_timeout_s))


# Model files, log and metrics handles, the listening socket, pipes: generous, as running out
# makes accept() fail and every new client wait on a server that cannot take it.
FILES_BESIDES_CONNECTIONS = 256


def ensure_open_file_limit(needed: int) -> int:
    """Raise this process's soft open-file limit (``ulimit -n``, often 1024) towards ``needed``,
    up to the hard limit, which needs no privilege; warn when the hard limit is lower.

    Returns the soft limit in force afterwards."""
    try:
        import resource
    except ImportError:  # not POSIX: nothing to raise
        return needed
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return soft
    target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    if soft < needed:
        log.warning("The open-file limit is %d (ulimit -n); --max-connections needs about %d. Raise the limit "
                    "or lower --max-connections, or new clients will wait on accept errors.", soft, needed)
    return soft


def run_server(config: ServerConfig) -> int:
    """Resolve models (building a missing artifact out of process), bind, serve until
    signalled. Returns the process exit code. Raises ImgclsError / OSError with one-line
    messages for problems found before serving."""
    config.validate()
    configure_logging(config.log_level)
    ensure_open_file_limit(config.max_connections + FILES_BESIDES_CONNECTIONS)
    slots = resolve_models(config, build_missing=build_in_subprocess)
    app = create_app(config, slots=slots)
    state = app.state.imgcls
    sock = _bind(config.host, config.port)
    port = sock.getsockname()[1]
    uv_config = uvicorn.Config(
        app,
        loop="uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
        # httptools with a header deadline and size cap (uvicorn has neither; see protocol.py);
        # h11 (no httptools) caps header size itself (16 KB) but has no header deadline.
        http=_http_protocol(config),
        ws="none",
        lifespan="on",
        log_config=None,
        access_log=False,
        proxy_headers=False,
        server_header=False,
        timeout_keep_alive=5,
        timeout_graceful_shutdown=int(UVICORN_GRACE_S),
        limit_concurrency=config.max_connections,  # enforced by our protocol, with a JSON 503
    )
    server = ImgclsServer(uv_config, state.lifecycle, drain_seconds=config.drain_seconds,
                          graceful_timeout_s=config.graceful_timeout_s, url=_url(config.host, port))
    state.on_fatal = server.fail
    state.on_ready = server.announce
    names = ", ".join(f"{s.name} ({'/'.join(s.artifacts)})" for s in slots)
    print(f"imgcls: loading {names}; listening on {server.url} (ready when /readyz says so)", file=sys.stderr,
          flush=True)
    server.run(sockets=[sock])
    return server.exit_code
