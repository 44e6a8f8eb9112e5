"""The events waiting for one client's socket, bounded.

The driver's sink puts (it must never block: it runs inside the session's event loop work);
one writer task takes and sends. A client that reads slower than its session produces fills
the queue; past either bound (events, or bytes: one audio delta is up to ~100 KB) `put`
refuses, and the transport ends the session — holding without bound would let one client
that stops reading grow the server's memory until it falls over.

At the end, `finish` stops taking events and appends the last words (an error event, the
close), after what waits or instead of it when the client was not reading anyway.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class QueueLimits:
    events: int = 4096  # the defaults of Settings.send_queue_limit / send_queue_bytes
    bytes: int = 16 * 1024 * 1024


class SendQueue(Generic[T]):
    """Encoded events (`str`) in order, then the final items `finish` appends (type T)."""

    def __init__(self, limits: QueueLimits) -> None:
        self.limits = limits
        self._items: deque[str | T] = deque()
        self._bytes = 0
        self._ready = asyncio.Event()
        self.finished = False
        self.overflowed = False

    def __len__(self) -> int:
        return len(self._items)

    @property
    def queued_bytes(self) -> int:
        return self._bytes

    def put(self, text: str) -> bool:
        """Queue an event; False (and nothing queued) past a bound, or once finished."""
        if self.finished or self.overflowed:
            return False
        if len(self._items) >= self.limits.events or self._bytes + len(text) > self.limits.bytes:
            self.overflowed = True
            return False
        self._items.append(text)
        self._bytes += len(text)
        self._ready.set()
        return True

    def finish(self, *last: str | T, drop_pending: bool) -> None:
        """Take no more events; send `last` after what waits (or instead, `drop_pending`)."""
        self.finished = True
        if drop_pending:
            self._items.clear()
            self._bytes = 0
        self._items.extend(last)
        self._ready.set()

    async def get(self) -> str | T:
        while not self._items:
            self._ready.clear()
            await self._ready.wait()
        item = self._items.popleft()
        if isinstance(item, str):
            self._bytes -= len(item)
        return item
