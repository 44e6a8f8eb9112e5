"""The WebSocket transport (`/v1/realtime`): frames in, events out. Thin by design — the
session core holds every rule, the driver runs the work.

The connection that opened the session owns it: when it goes, the session's backend work
stops. A sideband connection (`?call_id=`) attaches to a session another transport owns.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from starlette.websockets import WebSocket

from ..protocol import errors
from ..protocol.errors import ProtocolError
from ..protocol.server_events import ServerEvent
from ..runtime.driver import SessionDriver
from .dialect import Dialect

log = logging.getLogger(__name__)

_CLOSED = object()


async def run_websocket(
    websocket: WebSocket,
    driver: SessionDriver,
    dialect: Dialect,
    *,
    owner: bool = True,
    event_filter: Callable[[ServerEvent], bool] | None = None,
    first: ServerEvent | None = None,
) -> None:
    """Pump one accepted socket until the client goes away. `first` is sent before any of
    the session's events (a sideband's snapshot of the session it attaches to)."""
    outgoing: asyncio.Queue[Any] = asyncio.Queue()
    if first is not None:
        outgoing.put_nowait(first)

    def sink(event: ServerEvent) -> None:
        if event_filter is None or event_filter(event):
            outgoing.put_nowait(event)

    writer = asyncio.create_task(_write(websocket, outgoing, dialect))
    driver.add_sink(sink)
    try:
        if owner:
            driver.start()
        await _read(websocket, driver, dialect)
    finally:
        driver.remove_sink(sink)
        if owner:
            await driver.close()
        outgoing.put_nowait(_CLOSED)
        await asyncio.gather(writer, return_exceptions=True)


async def _read(websocket: WebSocket, driver: SessionDriver, dialect: Dialect) -> None:
    receive = websocket.receive
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        text = message.get("text")
        if text is None:
            driver.reject(
                ProtocolError(
                    "Binary frames are not supported; send each event as a JSON text frame.",
                    errors.BINARY_FRAME,
                )
            )
            continue
        try:
            event = dialect.parse(text)
        except ProtocolError as error:
            driver.reject(error)
            continue
        except Exception as exc:  # input no rule foresaw must not end the session
            log.exception("could not parse a client event")
            driver.reject(
                ProtocolError(f"The event could not be parsed: {exc}.", errors.INVALID_EVENT)
            )
            continue
        driver.receive(event)


async def _write(websocket: WebSocket, outgoing: asyncio.Queue[Any], dialect: Dialect) -> None:
    send = websocket.send
    try:
        while True:
            event = await outgoing.get()
            if event is _CLOSED:
                return
            try:
                text = dialect.encode(event)
            except Exception:  # one unencodable event must not silence the session
                log.exception("could not encode a %s event", event.get("type"))
                continue
            if text is not None:
                await send({"type": "websocket.send", "text": text})
    except Exception:  # the peer vanished mid-send; the reader sees the disconnect
        log.debug("websocket writer stopped", exc_info=True)
