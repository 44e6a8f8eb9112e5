"""The benchmark's side of a WebSocket session (the `websockets` asyncio client, orjson), and
the health of its own event loop."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect

from .launch import BENCH_API_KEY

AUTH_HEADERS = {"Authorization": f"Bearer {BENCH_API_KEY}"}


class ServerError(RuntimeError):
    """The server answered what the benchmark did not expect."""


async def connect_session(url: str, open_timeout: float = 30) -> ClientConnection:
    """A WebSocket to `url` as the benchmarks open it: no compression, no size limit, no pings."""
    return await connect(
        url,
        additional_headers=AUTH_HEADERS,
        compression=None,
        max_size=None,
        ping_interval=None,
        open_timeout=open_timeout,
    )


async def start_session(ws: ClientConnection, update: str | None = None) -> None:
    """Expect `session.created`; then send `update` (a `session.update`) and wait until applied."""
    first = orjson.loads(await ws.recv())
    if first["type"] != "session.created":
        raise ServerError(f"first event {first['type']}")
    if update is not None:
        await ws.send(update)
        await recv_until(ws, "session.updated")


async def open_session(
    url: str, update: str | None = None, open_timeout: float = 30
) -> ClientConnection:
    ws = await connect_session(url, open_timeout)
    try:
        await start_session(ws, update)
    except BaseException:
        await ws.close()
        raise
    return ws


async def recv_until(
    ws: ClientConnection, event_type: str, count: int = 1, timeout: float = 10
) -> dict[str, Any]:
    """The `count`-th event of `event_type`; an `error` event first raises ServerError."""
    seen = 0
    while True:
        event: dict[str, Any] = orjson.loads(await asyncio.wait_for(ws.recv(), timeout))
        if event["type"] == "error":
            raise ServerError(event["error"])
        if event["type"] == event_type:
            seen += 1
            if seen == count:
                return event


class LoopLag:
    """How late this process's own event loop wakes up: the load generator's health."""

    def __init__(self, interval: float = 0.005) -> None:
        self.interval = interval
        self.samples: list[float] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            before = time.monotonic()
            await asyncio.sleep(self.interval)
            self.samples.append(time.monotonic() - before - self.interval)

    async def stop(self) -> list[float]:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        return self.samples


def run(coro: Any) -> Any:
    """Run the client on uvloop too, so its own overhead stays small."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)
