"""The WebSocket transport (`/v1/realtime`): frames in, events out. Thin by design — the
session core holds every rule, the driver runs the work.

The connection that opened the session owns it: when it goes, the session's backend work
stops. A sideband connection (`?call_id=`) attaches to a session another transport owns.

- The sink only enqueues (the driver must never wait on a socket); one writer task sends.
  The queue is bounded (`QueueLimits`): a client that stops reading is sent a
  `send_queue_full` error if it ever reads again, and dropped (close 1008) — its backend work
  stops, other sessions never notice.
- The server ends a session through its `Ending` (age limit, shutdown, the full queue): the
  `error` event, then the close frame; if the client takes neither within CLOSE_TIMEOUT_S,
  or then stops reading for CLOSE_TIMEOUT_S without answering the close, the connection is
  aborted.
  Handing the close to the socket is not enough: a client that stopped reading before its
  socket buffer filled takes the frame into that buffer and never answers (uvicorn would
  hold it for its own 10 s).
- An event longer than MAX_EVENT_CHARS is refused with `message_too_large` before parsing,
  and the session goes on. (uvicorn's `ws_max_size`, set well above it in `server/run.py`,
  closes the connection with 1009 only for frames no client should send.)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.websockets import WebSocket

from ..protocol import errors
from ..protocol.errors import ProtocolError
from ..protocol.server_events import ServerEvent
from ..protocol.server_events import error as error_event
from ..runtime.driver import SessionDriver
from .abort import abort, closing, unsent
from .dialect import Dialect
from .direct_text import SetReceiver, TextReceiver, direct_text
from .ending import Close, Ending
from .send_queue import QueueLimits, SendQueue
from .source import EventSource

log = logging.getLogger(__name__)

# One append may carry 15 MiB of decoded audio: 20 MiB of base64, plus the JSON around it.
MAX_EVENT_CHARS = 21 * 1024 * 1024
# How long a client is given to take the last error event and the close frame.
CLOSE_TIMEOUT_S = 2.0
CLOSE_POLL_S = 0.02
NOT_READING = "client is not reading its events"


@dataclass(frozen=True, slots=True)
class _Goodbye:
    code: int
    reason: str


async def run_websocket(
    websocket: WebSocket,
    driver: SessionDriver | EventSource,
    dialect: Dialect,
    *,
    owner: bool = True,
    event_filter: Callable[[ServerEvent], bool] | None = None,
    first: ServerEvent | None = None,
    ending: Ending | None = None,
    limits: QueueLimits | None = None,
) -> None:
    """Pump one accepted socket until the client goes away or `ending` is requested. `first`
    is sent before any of the session's events (a sideband's snapshot of the session it
    attaches to)."""
    ending = ending or Ending()
    queue: SendQueue[_Goodbye] = SendQueue(limits or QueueLimits())

    def put(event: ServerEvent) -> None:
        try:
            text = dialect.encode(event)
        except Exception:  # one unencodable event must not silence the session
            log.exception("could not encode a %s event", event.get("type"))
            return
        if text is not None and not queue.put(text) and queue.overflowed:
            ending.request(Close(_not_reading(queue), 1008, NOT_READING))

    def sink(event: ServerEvent) -> None:
        if event_filter is None or event_filter(event):
            put(event)

    if first is not None:
        put(first)
    reader = asyncio.create_task(_read(websocket, driver, dialect))
    writer = asyncio.create_task(_write(websocket, queue))
    ended = asyncio.create_task(ending.wait())
    # A bug in handling a message the server handed over directly ends the session, as one
    # in the reader task would.
    broken: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    set_receiver = direct_text(websocket.scope)
    driver.add_sink(sink)
    try:
        if owner:
            assert isinstance(driver, SessionDriver)
            driver.start()
        if set_receiver is not None:
            set_receiver(_direct_receiver(driver, dialect, broken, set_receiver))
        await asyncio.wait((reader, writer, ended, broken), return_when=asyncio.FIRST_COMPLETED)
    finally:
        if set_receiver is not None:
            set_receiver(None)
        driver.remove_sink(sink)
        if isinstance(driver, SessionDriver) and owner:
            await driver.close()  # backend work stops before the goodbye is flushed
        close = ending.close
        if close is not None and not reader.done() and not writer.done():
            await _say_goodbye(websocket, dialect, queue, writer, close)
        for task in (reader, writer, ended, broken):
            task.cancel()
        for result in await asyncio.gather(reader, writer, ended, broken, return_exceptions=True):
            if isinstance(result, Exception):
                log.error("websocket session task failed", exc_info=result)


def _not_reading(queue: SendQueue[Any]) -> ProtocolError:
    limits = queue.limits
    return ProtocolError(
        f"This client is not reading its events: {len(queue)} events "
        f"({queue.queued_bytes} bytes) waited to be sent, past the server's bound of "
        f"{limits.events} events or {limits.bytes} bytes. The session is closed; "
        "read events as they come.",
        errors.SEND_QUEUE_FULL,
    )


async def _say_goodbye(
    websocket: WebSocket,
    dialect: Dialect,
    queue: SendQueue[_Goodbye],
    writer: asyncio.Task[None],
    close: Close,
) -> None:
    """The error event and the close frame, after what waits (dropped if the client was not
    reading it). A client that takes neither within CLOSE_TIMEOUT_S, or then stops reading
    for CLOSE_TIMEOUT_S without answering the close, is cut off."""
    last = dialect.encode(error_event(close.error.as_error()))
    goodbye = _Goodbye(close.code, close.reason)
    queue.finish(*([last] if last else []), goodbye, drop_pending=queue.overflowed)
    done, _ = await asyncio.wait((writer,), timeout=CLOSE_TIMEOUT_S)
    if not done or not await _answered(websocket, CLOSE_TIMEOUT_S):
        log.info("a client took no close in %.0f s; dropping its connection", CLOSE_TIMEOUT_S)
        abort(websocket)


async def _answered(websocket: WebSocket, timeout: float) -> bool:
    """Whether the peer answers the close frame before it stops taking data for `timeout`: a
    client draining a backlog (the bytes it has not taken go down) is given the time it takes.
    Only uvicorn hears the answer (the app was told "disconnect" when it sent the close), and
    closes the transport: look for that, briefly and only here. Without a handle to look
    (another server), assume so."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    backlog = unsent(websocket)
    while (going := closing(websocket)) is False and loop.time() < deadline:
        await asyncio.sleep(CLOSE_POLL_S)
        left = unsent(websocket)
        if left is not None and backlog is not None and left < backlog:
            deadline = loop.time() + timeout
        backlog = left
    return going is not False


async def _read(websocket: WebSocket, driver: EventSource, dialect: Dialect) -> None:
    """What the server does not hand over directly: everything, on another server."""
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
        _take_text(text, driver, dialect)


def _direct_receiver(
    driver: EventSource,
    dialect: Dialect,
    broken: asyncio.Future[None],
    set_receiver: SetReceiver,
) -> TextReceiver:
    """Takes each whole text message the server hands over; a bug in taking one stops the
    hand-over and ends the session through `broken`."""

    def take(text: str) -> None:
        try:
            _take_text(text, driver, dialect)
        except Exception as exc:
            set_receiver(None)
            if not broken.done():
                broken.set_exception(exc)

    return take


def _take_text(text: str, driver: EventSource, dialect: Dialect) -> None:
    """One text message: parsed, and given to the driver, or refused with an error event."""
    if len(text) > MAX_EVENT_CHARS:
        driver.reject(
            ProtocolError(
                f"The event is {len(text)} characters long; one event may be at most "
                f"{MAX_EVENT_CHARS} ({MAX_EVENT_CHARS // (1024 * 1024)} MiB). Send audio in "
                "smaller input_audio_buffer.append events (each may carry up to 15 MiB "
                "of decoded audio).",
                errors.MESSAGE_TOO_LARGE,
            )
        )
        return
    try:
        event = dialect.parse(text)
    except ProtocolError as error:
        driver.reject(error)
        return
    except Exception as exc:  # input no rule foresaw must not end the session
        log.exception("could not parse a client event")
        driver.reject(ProtocolError(f"The event could not be parsed: {exc}.", errors.INVALID_EVENT))
        return
    driver.receive(event)


async def _write(websocket: WebSocket, queue: SendQueue[_Goodbye]) -> None:
    """Send what the queue holds, in order, until the goodbye (or the peer vanishes)."""
    send = websocket.send
    try:
        while True:
            item = await queue.get()
            if isinstance(item, _Goodbye):
                await websocket.close(code=item.code, reason=item.reason)
                return
            await send({"type": "websocket.send", "text": item})
    except Exception:  # the peer vanished mid-send; the reader sees the disconnect
        log.debug("websocket writer stopped", exc_info=True)
