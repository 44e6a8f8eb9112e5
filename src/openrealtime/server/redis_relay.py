"""A sideband WebSocket attached to a call another instance holds: `RemoteDriver` stands in for
the call's `SessionDriver` and relays through Redis (the protocol is in server/redis_calls.py).
Its client events go out in order through one task. Redis lost under it, or the holder not
listening: closed with 1011. The call ending: closed with 1000, as a local sideband is.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from starlette.websockets import WebSocket

from ..protocol.errors import ProtocolError
from ..protocol.server_events import ServerEvent
from .redis_publisher import BATCH, QUEUE_LIMIT
from .redis_state import (
    ERRORS,
    HEARTBEAT_S,
    POLL_S,
    call_key,
    close_quietly,
    dumps,
    instance_channel,
)

log = logging.getLogger(__name__)


def relay_form(event: Any) -> dict[str, Any]:
    """A parsed client event as the holder parses it again (`parse_client_dict`): the GA
    wire shape, with only the fields that were set, since `session.update` applies just those."""
    result: dict[str, Any] = event.model_dump(mode="json", exclude_unset=True)
    return result


@dataclass(eq=False)
class RemoteDriver:
    """Looks like the call's `SessionDriver` to a sideband (`RemoteCall`: `add_sink`,
    `remove_sink`, `receive`, `reject`, `session_wire`), and relays through Redis to the
    instance holding it. Started by its first sink; `aclose` when the sideband goes."""

    client: Redis
    call_id: str
    instance: str  # the one holding the call
    pubsub: PubSub  # subscribed to the call's events
    wire: dict[str, Any]  # the session's configuration when attached
    websocket: WebSocket  # closed when the call ends or cannot be reached
    _sinks: list[Callable[[ServerEvent], None]] = field(default_factory=list)
    _outgoing: asyncio.Queue[bytes] = field(default_factory=lambda: asyncio.Queue(QUEUE_LIMIT))
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _closing: bool = False

    @property
    def session_id(self) -> str | None:
        session_id = self.wire.get("id")
        return session_id if isinstance(session_id, str) else None

    def session_wire(self) -> dict[str, Any]:
        return self.wire

    def add_sink(self, sink: Callable[[ServerEvent], None]) -> None:
        self._sinks.append(sink)
        if not self._tasks:
            loop = asyncio.get_running_loop()
            name = f"{self.call_id} remote sideband"
            self._tasks = [
                loop.create_task(self._read(), name=f"{name} events"),
                loop.create_task(self._write(), name=f"{name} commands"),
                loop.create_task(self._watch(), name=f"{name} watch"),
            ]

    def remove_sink(self, sink: Callable[[ServerEvent], None]) -> None:
        if sink in self._sinks:
            self._sinks.remove(sink)

    def receive(self, event: Any) -> None:
        self._send({"op": "event", "event": relay_form(event)})

    def reject(self, error: ProtocolError) -> None:
        self._send({"op": "reject", "error": error.as_error()})

    def _send(self, command: dict[str, Any]) -> None:
        try:
            self._outgoing.put_nowait(dumps({**command, "call": self.call_id}))
        except asyncio.QueueFull:
            self._close_soon(1011, "too many events wait for the instance holding the call")

    async def aclose(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await close_quietly(self.pubsub)

    async def _read(self) -> None:
        try:
            while True:
                message = await self.pubsub.get_message(
                    ignore_subscribe_messages=True, timeout=POLL_S
                )
                if message is None:
                    continue
                data = orjson.loads(message["data"])
                if data.get("ended"):
                    await self._close(1000, "call ended")
                    return
                for sink in list(self._sinks):
                    sink(data["event"])
        except ERRORS as exc:
            log.warning("sideband of call %s: lost Redis (%s)", self.call_id, exc)
            await self._close(1011, "the shared state (Redis) is unreachable")

    async def _write(self) -> None:
        channel = instance_channel(self.instance)
        outgoing = self._outgoing
        while True:
            batch = [await outgoing.get()]
            while len(batch) < BATCH and not outgoing.empty():
                batch.append(outgoing.get_nowait())
            try:
                async with self.client.pipeline(transaction=False) as pipe:
                    for payload in batch:
                        pipe.publish(channel, payload)
                    receivers = await pipe.execute()
            except ERRORS as exc:
                log.warning("sideband of call %s: lost Redis (%s)", self.call_id, exc)
                await self._close(1011, "the shared state (Redis) is unreachable")
                return
            if not all(receivers):
                # Its instance is not listening (restarting, or cut off from Redis): what this
                # sideband sends would be lost. Say so instead.
                await self._close(1011, "the instance holding the call is not reachable")
                return

    async def _watch(self) -> None:
        """The holder dying sends no `ended`; its registration lapsing tells."""
        key = call_key(self.call_id)
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            try:
                registered = await self.client.exists(key)
            except ERRORS:
                continue  # the reader and the writer report a lost Redis
            if not registered:
                await self._close(1000, "call ended")
                return

    def _close_soon(self, code: int, reason: str) -> None:
        if not self._closing:
            self._tasks.append(asyncio.get_running_loop().create_task(self._close(code, reason)))

    async def _close(self, code: int, reason: str) -> None:
        if self._closing:
            return
        self._closing = True
        try:
            await self.websocket.close(code=code, reason=reason)
        except Exception:  # already closed by its client
            log.debug("remote sideband close failed", exc_info=True)
