"""Concurrent-session limits: per process and per key. The in-process counter is enough for one
process; a shared one (Redis) holds the per-key limit across processes."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Refusal:
    reason: str  # "max_sessions" | "max_sessions_per_key": a metrics label
    message: str  # for the client, with the HTTP 429

    @classmethod
    def process_full(cls, limit: int) -> Refusal:
        return cls(
            "max_sessions",
            f"this server holds its maximum of {limit} concurrent sessions (--max-sessions); "
            "try again shortly or another instance",
        )

    @classmethod
    def key_full(cls, limit: int, *, across_instances: bool = False) -> Refusal:
        return cls(
            "max_sessions_per_key",
            f"this API key already has its maximum of {limit} concurrent sessions "
            "(--max-sessions-per-key)"
            + (", counted across all instances" if across_instances else ""),
        )


class SessionLimiter(Protocol):
    async def acquire(self, key: str) -> Refusal | None:
        """Take a slot for a new session of `key`; None if granted, else why not."""
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

    async def acquire(self, key: str) -> Refusal | None:
        if self.active >= self.per_process:
            return Refusal.process_full(self.per_process)
        if self._by_key[key] >= self.per_key:
            return Refusal.key_full(self.per_key)
        self.active += 1
        self._by_key[key] += 1
        return None

    async def release(self, key: str) -> None:
        self.active -= 1
        self._by_key[key] -= 1
        if self._by_key[key] <= 0:
            del self._by_key[key]
