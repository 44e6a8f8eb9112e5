"""Run the server with uvicorn: websockets-sansio (lean, server/ws_protocol.py), uvloop, no
per-message deflate by default."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable
from socket import socket
from typing import Any

import uvicorn

from ..config import Settings
from ..logs import configure_logging, secrets_of
from .app import create_app

log = logging.getLogger(__name__)

# uvicorn closes a connection with 1009 on a larger frame. Well above the largest event we
# answer (transports/websocket.py MAX_EVENT_CHARS, 21 MiB), so an event too large gets a
# `message_too_large` error and the session goes on.
WS_MAX_SIZE = 64 * 1024 * 1024
# After our own drain (`Server.shutdown`), what uvicorn gives connections still open.
UVICORN_SHUTDOWN_TIMEOUT_S = 5


def ws_options(settings: Settings | None = None) -> dict[str, Any]:
    """The WebSocket settings of uvicorn.Config, shared with the tests' servers."""
    return {
        # uvicorn's websockets-sansio, with the per-message costs of small text frames cut
        # (server/ws_protocol.py); the legacy `websockets` implementation costs more per message.
        "ws": "openrealtime.server.ws_protocol:LeanWebSocketProtocol",
        # Compression costs ~18x throughput on 20 KB audio events; opt in with the flag.
        "ws_per_message_deflate": settings.ws_per_message_deflate if settings else False,
        "ws_max_size": WS_MAX_SIZE,
    }


def uvicorn_config(settings: Settings, app: object) -> uvicorn.Config:
    try:
        import uvloop  # noqa: F401

        loop = "uvloop"
    except ImportError:
        loop = "asyncio"
    return uvicorn.Config(
        app,  # type: ignore[arg-type]
        host=settings.host,
        port=settings.port,
        loop=loop,
        http="httptools",
        **ws_options(settings),
        timeout_graceful_shutdown=UVICORN_SHUTDOWN_TIMEOUT_S,
        log_level=settings.log_level,
        log_config=None,  # uvicorn's lines go through the root handler (logs.configure_logging)
        lifespan="on",
    )


def run(settings: Settings) -> None:
    configure_logging(settings.log_level, settings.log_format, secrets=secrets_of(settings))
    serve(settings)


def serve(
    settings: Settings,
    *,
    sockets: list[socket] | None = None,
    wrap: Callable[[Any], Any] = lambda app: app,
    on_started: Callable[[], None] = lambda: None,
) -> None:
    """Serve until told to stop. A worker of `--workers N` (server/supervisor.py) gives the
    `sockets` it listens on, `wrap`s the app, and hears when the server is `on_started`."""
    app = create_app(settings)
    server = Server(
        uvicorn_config(settings, wrap(app)),
        drain=app.state.lifecycle.shutdown,
        on_started=on_started,
    )
    # uvicorn catches SIGTERM, shuts down gracefully, then restores the handler it found and
    # raises the signal again — with the default handler, the process dies of it (-15), and a
    # supervisor sees a crash. With this handler in its place the re-raise is a no-op and a
    # graceful shutdown exits 0; before uvicorn takes over, it asks for that same shutdown.
    signal.signal(signal.SIGTERM, lambda signum, frame: setattr(server, "should_exit", True))
    server.run(sockets=sockets)


class Server(uvicorn.Server):
    """uvicorn's server, with the app's sessions drained first.

    uvicorn's own shutdown stops listening, closes every WebSocket at once (1012) and waits
    for the connections to go; the app hears of it (lifespan) only then. `drain` runs before
    that, while the server still listens — a new client gets a 503 rather than a refused
    connection — and lets active responses finish (server/lifecycle.py)."""

    def __init__(
        self,
        config: uvicorn.Config,
        drain: Callable[[], Awaitable[None]],
        on_started: Callable[[], None] = lambda: None,
    ) -> None:
        super().__init__(config)
        self._drain = drain
        self._on_started = on_started

    async def startup(self, sockets: list[socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:  # the app's start-up (models, shared state) succeeded, and it listens
            self._on_started()

    async def shutdown(self, sockets: list[socket] | None = None) -> None:
        drain = asyncio.ensure_future(self._drain())
        while not drain.done() and not self.force_exit:  # a second Ctrl-C: stop waiting
            await asyncio.wait((drain,), timeout=0.1)
        if drain.done() and not drain.cancelled() and drain.exception() is not None:
            log.error("draining the sessions failed", exc_info=drain.exception())
        await super().shutdown(sockets=sockets)
