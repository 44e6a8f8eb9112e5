"""Dropping a WebSocket connection at once, for a client that does not read.

ASGI has no such message. `websocket.close`, like every send, waits (uvicorn's `writable`
flow control) until the peer has taken what is already buffered — never, for a peer that
stopped reading — and a connection the app merely leaves is closed by flushing first, so it
lingers as long as the peer keeps its window shut. Only the transport can `abort()`.

`ConnectionAbort` (an ASGI middleware) finds it where uvicorn keeps it — the protocol object
whose bound method is the connection's `send` — and puts it in the scope; `abort(websocket)`
calls it. `closing` (the peer answered our close frame) and `unsent` (bytes the peer has not
taken yet) tell a transport whether to. Under another server, or behind a middleware that
wraps `send`, there is no handle: `abort` returns False and the connection ends the ordinary
way, later.

The socket is closed with a zero linger first, so the kernel resets the connection and drops
its own send buffer (megabytes, autotuned) rather than keep it for a peer that is not reading.
"""

from __future__ import annotations

import contextlib
import socket
import struct
from dataclasses import dataclass
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket

SCOPE_KEY = "openrealtime.abort"


@dataclass(frozen=True, slots=True)
class _Handle:
    transport: Any

    def abort(self) -> None:
        _reset(self.transport)

    def closing(self) -> bool:
        return bool(self.transport.is_closing())

    def unsent(self) -> int:
        """Bytes written and not yet taken by the peer: in the transport's buffer and, on
        Linux, in the kernel's send queue (on loopback, all the receiver has not read)."""
        queued = int(self.transport.get_write_buffer_size())
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            # Not Linux, or not a TCP socket: what the transport holds is all there is to see.
            with contextlib.suppress(ImportError, OSError, ValueError, AttributeError):
                import fcntl
                import termios

                out = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, struct.pack("i", 0))
                queued += struct.unpack("i", out)[0]
        return queued


class ConnectionAbort:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            transport: Any = getattr(getattr(send, "__self__", None), "transport", None)
            if callable(getattr(transport, "abort", None)):
                scope = {**scope, SCOPE_KEY: _Handle(transport)}
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
    handle: _Handle | None = websocket.scope.get(SCOPE_KEY)
    if handle is None:
        return False
    handle.abort()
    return True


def closing(websocket: WebSocket) -> bool | None:
    """Whether the connection is closing or closed; None if there is no handle to tell."""
    handle: _Handle | None = websocket.scope.get(SCOPE_KEY)
    return None if handle is None else handle.closing()


def unsent(websocket: WebSocket) -> int | None:
    """Bytes the peer has not taken yet; None if there is no handle to tell."""
    handle: _Handle | None = websocket.scope.get(SCOPE_KEY)
    return None if handle is None else handle.unsent()
