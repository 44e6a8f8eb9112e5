"""Dropping a WebSocket connection at once, for a client that does not read.

ASGI has no such message. `websocket.close`, like every send, waits (uvicorn's `writable`
flow control) until the peer has taken what is already buffered — never, for a peer that
stopped reading — and a connection the app merely leaves is closed by flushing first, so it
lingers as long as the peer keeps its window shut. Only the transport can `abort()`.

`ConnectionAbort` (an ASGI middleware) finds it where uvicorn keeps it — the protocol object
whose bound method is the connection's `send` — and puts it in the scope; `abort(websocket)`
calls it, and `closing(websocket)` says whether the connection is already going (the peer
answered our close frame). Under another server, or behind a middleware that wraps `send`, there is no handle:
`abort` returns False and the connection ends the ordinary way, later.

The socket is closed with a zero linger first, so the kernel resets the connection and drops
its own send buffer (megabytes, autotuned) rather than keep it for a peer that is not reading.
"""

from __future__ import annotations

import contextlib
import socket
import struct
from collections.abc import Callable
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket

SCOPE_KEY = "openrealtime.abort"
CLOSING_KEY = "openrealtime.closing"


class ConnectionAbort:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            transport: Any = getattr(getattr(send, "__self__", None), "transport", None)
            if callable(getattr(transport, "abort", None)):
                scope = {
                    **scope,
                    SCOPE_KEY: lambda: _reset(transport),
                    CLOSING_KEY: transport.is_closing,
                }
        await self.app(scope, receive, send)


def _reset(transport: Any) -> None:
    sock = transport.get_extra_info("socket")
    if sock is not None:
        # Not a TCP socket, or already closed: abort all the same.
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


def abort(websocket: WebSocket) -> bool:
    """Drop the connection now (no close frame, buffered data discarded); False if unable."""
    handle: Callable[[], None] | None = websocket.scope.get(SCOPE_KEY)
    if handle is None:
        return False
    handle()
    return True


def closing(websocket: WebSocket) -> bool | None:
    """Whether the connection is closing or closed; None if there is no handle to tell."""
    is_closing: Callable[[], bool] | None = websocket.scope.get(CLOSING_KEY)
    return None if is_closing is None else is_closing()
