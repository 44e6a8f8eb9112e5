"""The WebSocket transport (`/v1/realtime`): frames in, events out. Thin by design — the
session core holds every rule, the driver runs the work."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from starlette.websockets import WebSocket

from ..backends.registry import Backends
from ..core.session import Session
from ..protocol import errors
from ..protocol.errors import ProtocolError
from ..runtime.driver import SessionDriver
from .dialect import Dialect

log = logging.getLogger(__name__)

_CLOSED = object()


async def run_websocket(
    websocket: WebSocket, session: Session, backends: Backends, dialect: Dialect
) -> None:
    """Pump one accepted socket until the client goes away, then stop its backend work."""
    outgoing: asyncio.Queue[Any] = asyncio.Queue()
    # The driver only enqueues, from any task; one writer sends, so events keep their order.
    driver = SessionDriver(session, backends, outgoing.put_nowait)
    writer = asyncio.create_task(_write(websocket, outgoing, dialect))
    try:
        driver.start()
        await _read(websocket, driver, dialect)
    finally:
        await driver.close()
        outgoing.put_nowait(_CLOSED)
        writer.cancel()
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
        driver.receive(event)


async def _write(websocket: WebSocket, outgoing: asyncio.Queue[Any], dialect: Dialect) -> None:
    send = websocket.send
    try:
        while True:
            event = await outgoing.get()
            if event is _CLOSED:
                return
            text = dialect.encode(event)
            if text is not None:
                await send({"type": "websocket.send", "text": text})
    except Exception:  # the peer vanished mid-send; the reader sees the disconnect
        log.debug("websocket writer stopped", exc_info=True)
