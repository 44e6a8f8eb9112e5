"""Concurrent-session limits: per process and per key. The in-process counter is enough for one
process; a shared one (Redis) holds the per-key limit across processes."""

from __future__ import annotations

from collections import Counter
from typing import Protocol


class SessionLimiter(Protocol):
    async def acquire(self, key: str) -> str | None:
        """Take a slot for a new session of `key`; None if granted, else why not (said to
        the client with HTTP 429)."""
        ...

    async def release(self, key: str) -> None:
        """Give back a slot taken by `acquire` (exactly once per granted acquire)."""
        ...


class MemorySessionLimiter:
    def __init__(self, per_process: int, per_key: int) -> None:
        self.per_process = per_process
        self.per_key = per_key
        self.active = 0
        self._by_key: Counter[str] = Counter()

    async def acquire(self, key: str) -> str | None:
        if self.active >= self.per_process:
            return (
                f"this server holds its maximum of {self.per_process} concurrent sessions "
                "(--max-sessions); try again shortly or another instance"
            )
        if self._by_key[key] >= self.per_key:
            return (
                f"this API key already has its maximum of {self.per_key} concurrent sessions "
                "(--max-sessions-per-key)"
            )
        self.active += 1
        self._by_key[key] += 1
        return None

    async def release(self, key: str) -> None:
        self.active -= 1
        self._by_key[key] -= 1
        if self._by_key[key] <= 0:
            del self._by_key[key]
