"""The registry of live calls (WebRTC and SIP), which hang-ups and sideband WebSockets
(`/v1/realtime?call_id=`) find them in: in-process here, across instances in
server/redis_calls.py.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from starlette.websockets import WebSocket

from ..transports.ending import Close
from ..transports.source import EventSource
from .auth import Principal

if TYPE_CHECKING:  # the session machinery (numpy…) loads after start (issue 9)
    from ..runtime.driver import SessionDriver

log = logging.getLogger(__name__)


class RemoteCall(EventSource, Protocol):
    """A sideband's stand-in for the driver of a call another instance holds."""

    @property
    def session_id(self) -> str | None: ...

    def session_wire(self) -> dict[str, Any]: ...

    async def aclose(self) -> None: ...


class CallPeer(Protocol):
    """What holds a call's media: a WebRTC peer (transports/webrtc.py) or a SIP call
    (transports/sip.py)."""

    driver: SessionDriver

    @property
    def ended(self) -> bool: ...

    def hang_up(self) -> None: ...

    def close_with(self, close: Close) -> None: ...

    async def run(self) -> None: ...


@dataclass(eq=False)
class Call:
    id: str
    opener: str  # the key or client secret that opened it: it may hang up
    peer: CallPeer
    task: asyncio.Task[None] | None = None
    sidebands: set[WebSocket] = field(default_factory=set)

    @property
    def driver(self) -> SessionDriver:
        return self.peer.driver

    @property
    def ended(self) -> bool:
        return self.peer.ended

    async def end(self) -> None:
        """Hang up and wait until everything the call held is freed."""
        self.peer.hang_up()
        if self.task is not None:
            # Shielded: a hang-up request that goes away must not cut the clean-up short.
            await asyncio.shield(self.task)

    @contextmanager
    def sideband(self, websocket: WebSocket) -> Iterator[None]:
        """While attached, the socket is closed when the call ends."""
        self.sidebands.add(websocket)
        try:
            yield
        finally:
            self.sidebands.discard(websocket)

    async def close_sidebands(self) -> None:
        for websocket in list(self.sidebands):
            try:
                await websocket.close(code=1000, reason="call ended")
            except Exception:  # already closed by its client
                log.debug("sideband close failed", exc_info=True)


class CallRegistry(Protocol):
    """Live calls by id.

    A call's peer and driver live in the process that answered its offer. A shared registry
    (Redis, for several instances: server/redis_calls.py) maps each id to the instance
    holding it, so that a hang-up or a sideband reaching another instance is sent on; `get`
    and `all` return only calls held here.
    """

    async def add(self, call: Call) -> None: ...

    async def get(self, call_id: str) -> Call | None: ...

    async def remove(self, call_id: str) -> None: ...

    async def all(self) -> list[Call]: ...

    async def attach_elsewhere(self, call_id: str, websocket: WebSocket) -> RemoteCall | None:
        """For a sideband: a stand-in for the driver of a live call another instance holds,
        or None if there is no such call."""
        ...

    async def hang_up_elsewhere(self, call_id: str, principal: Principal) -> bool:
        """Hang up a live call another instance holds, if `principal` may; whether it did."""
        ...


class MemoryCallRegistry:
    def __init__(self) -> None:
        self._calls: dict[str, Call] = {}

    async def add(self, call: Call) -> None:
        self._calls[call.id] = call

    async def get(self, call_id: str) -> Call | None:
        call = self._calls.get(call_id)
        return None if call is None or call.ended else call

    async def remove(self, call_id: str) -> None:
        self._calls.pop(call_id, None)

    # One process holds every call: none is elsewhere.

    async def attach_elsewhere(self, call_id: str, websocket: WebSocket) -> RemoteCall | None:
        return None

    async def hang_up_elsewhere(self, call_id: str, principal: Principal) -> bool:
        return False

    async def all(self) -> list[Call]:
        return list(self._calls.values())
