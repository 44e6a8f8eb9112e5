"""A session the server ends, rather than its client: the last word and how the line drops.

Whoever decides (the session's age limit, a shutdown, a transport whose client stopped
reading) says it once with a `Close`; the transport that owns the connection carries it out:
the `error` event first, then the WebSocket close frame (a WebRTC call hangs up instead).
The first request wins: a session is ended once, for one reason.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from ..protocol.errors import ProtocolError


@dataclass(frozen=True, slots=True)
class Close:
    error: ProtocolError  # sent as an `error` event before the socket closes
    code: int  # the WebSocket close code (1000 normal, 1001 going away, 1008 policy)
    reason: str  # the close frame's reason: short, at most 123 bytes of UTF-8


class Ending:
    """Set once, awaited by the transport that owns the connection."""

    def __init__(self) -> None:
        self.close: Close | None = None
        self._requested = asyncio.Event()

    def request(self, close: Close) -> None:
        if self.close is None:
            self.close = close
            self._requested.set()

    async def wait(self) -> Close:
        await self._requested.wait()
        assert self.close is not None
        return self.close
