"""The state that several openrealtime processes serving one deployment must share: client
secrets, where each WebRTC call lives, and per-key session counts. An explicit factory chooses
in-process (the default: one process) or Redis (`--redis-url`).

What needs the shared state and finds it unreachable fails clearly, with HTTP 503 in OpenAI's
error shape (a WebSocket handshake is refused with the same answer); sessions already running
never wait on it and go on.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.websockets import WebSocket, WebSocketState

from ..config import Settings
from .errors import SharedStateUnavailable, openai_error
from .limits import MemorySessionLimiter, SessionLimiter
from .registry import CallRegistry, MemoryCallRegistry
from .routing import Routes
from .secrets import MemorySecretStore, SecretStore

log = logging.getLogger(__name__)

UNAVAILABLE_CODE = "shared_state_unavailable"


@dataclass
class SharedState:
    secrets: SecretStore
    calls: CallRegistry
    limiter: SessionLimiter
    description: str  # for the start-up log
    # Started with the app and stopped after the calls have ended (see `install`).
    start: Callable[[], Awaitable[None]] | None = None
    stop: Callable[[], Awaitable[None]] | None = None

    def install(self, app: Starlette) -> Routes:
        """Answer 503 for what cannot reach the shared state; include what it returns (its
        lifespan) before the calls' routes: lifespans end in reverse order, so the calls hang
        up (and say so through the shared state) before it stops."""
        # One handler for both: Starlette calls it with a Request or a WebSocket, and sends
        # what it returns (before a handshake completes, as the denial). Its types say one.
        app.add_exception_handler(SharedStateUnavailable, _unavailable)  # type: ignore[arg-type]
        return Routes(lifespan=self._lifespan)

    @asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        log.info("  shared state: %s", self.description)
        if self.start is not None:
            await self.start()
        try:
            yield
        finally:
            if self.stop is not None:
                await self.stop()


def create_shared_state(settings: Settings) -> SharedState:
    if settings.redis_url is None:
        return SharedState(
            MemorySecretStore(),
            MemoryCallRegistry(),
            MemorySessionLimiter(settings.max_sessions, settings.max_sessions_per_key),
            "in-process (one process; give --redis-url to share it between several)",
        )
    # The Redis client loads only when it is used.
    from .redis_calls import RedisCallRegistry
    from .redis_limits import RedisSessionLimiter
    from .redis_state import RedisSecretStore, RedisState

    redis = RedisState(settings.redis_url)
    calls = RedisCallRegistry(redis)
    limiter = RedisSessionLimiter(redis, settings.max_sessions, settings.max_sessions_per_key)

    async def start() -> None:
        await redis.check()
        calls.start()
        limiter.start()

    async def stop() -> None:
        await calls.aclose()
        await limiter.aclose()
        await redis.aclose()

    return SharedState(
        RedisSecretStore(redis),
        calls,
        limiter,
        f"Redis at {redis.display_url} (instance {redis.instance})",
        start,
        stop,
    )


async def _unavailable(connection: Request | WebSocket, exc: Exception) -> Response | None:
    message = f"{exc} The shared state (Redis) is unreachable; try again shortly."
    log.info("refused (shared state unreachable): %s", exc)  # the outage itself is logged once
    if isinstance(connection, WebSocket) and connection.client_state == WebSocketState.CONNECTED:
        # Accepted already: an HTTP answer is too late; close saying why (1011: server error).
        await connection.close(code=1011, reason=_close_reason(message))
        return None
    # Before a WebSocket handshake completes, Starlette sends this as the denial response.
    return unavailable_response(message)


def unavailable_response(message: str) -> JSONResponse:
    return openai_error(503, message, UNAVAILABLE_CODE, type_="server_error")


def _close_reason(message: str) -> str:
    """A close frame's reason is at most 123 bytes of UTF-8."""
    encoded = message.encode()
    return message if len(encoded) <= 123 else encoded[:120].decode(errors="ignore") + "..."
