"""Per-key concurrent-session limits held across processes, in Redis; the per-process limit
stays local (it protects this process).

- Each key's sessions are a sorted set, `openrealtime:sessions:{digest}`, of members
  `{instance}:{n}`, one per session, scored by when its lease ends (Redis's clock, in ms).
- Taking a slot is one script: drop lapsed leases, count, add if under the limit. Atomic, so
  two instances cannot both take the last slot.
- While a session lives, its instance renews its lease every LEASE_S / 3. A process that dies
  stops renewing: its slots lapse within LEASE_S, and no slot leaks forever. The renewal adds
  back what a restarted (empty) Redis lost, so counts recover with it.
- Redis unreachable when a session opens: the limit cannot be checked, and the session is
  refused (SharedStateUnavailable: 503), not let through unchecked. A release that cannot
  reach Redis is dropped here; its slot lapses with its lease.
- This process's operations on its own leases are serialized (one lock), so a renewal in
  flight cannot add back a lease a release has just removed.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from contextlib import suppress

from .errors import SharedStateUnavailable
from .limits import Refusal
from .redis_state import ERRORS, PREFIX, OutageLog, RedisState, digest

log = logging.getLogger(__name__)

LEASE_S = 30.0

_NOW_MS = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""
# KEYS[1] the key's set; ARGV: member, limit, lease (ms). 1 if granted, else 0.
_ACQUIRE = (
    _NOW_MS
    + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  return 0
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]))
return 1
"""
)
# KEYS[1] the key's set; ARGV: lease (ms), then this instance's members in it.
_RENEW = (
    _NOW_MS
    + """
local lease = tonumber(ARGV[1])
for i = 2, #ARGV do
  redis.call('ZADD', KEYS[1], now + lease, ARGV[i])
end
redis.call('PEXPIRE', KEYS[1], lease)
return #ARGV - 1
"""
)


class RedisSessionLimiter:
    def __init__(
        self, redis: RedisState, per_process: int, per_key: int, lease_s: float = LEASE_S
    ) -> None:
        self.per_process = per_process
        self.per_key = per_key
        self.active = 0
        self._client = redis.client
        self._instance = redis.instance
        self._lease_ms = int(lease_s * 1000)
        self._lease_s = lease_s
        self._acquire = self._client.register_script(_ACQUIRE)
        self._renew = self._client.register_script(_RENEW)
        self._held: dict[str, list[str]] = {}  # Redis key -> this process's members in it
        self._numbers = itertools.count()
        self._lock = asyncio.Lock()
        self._renewer: asyncio.Task[None] | None = None
        self._outage = OutageLog("renewing session leases")

    def start(self) -> None:
        self._renewer = asyncio.get_running_loop().create_task(
            self._renew_forever(), name="session lease renewal"
        )

    async def aclose(self) -> None:
        """Stop renewing and give back every slot still held (best effort: what cannot be
        given back lapses with its lease)."""
        if self._renewer is not None:
            self._renewer.cancel()
            with suppress(asyncio.CancelledError):
                await self._renewer
        async with self._lock:
            held, self._held = self._held, {}
        if held:
            with suppress(*ERRORS):
                async with self._client.pipeline(transaction=False) as pipe:
                    for key, members in held.items():
                        pipe.zrem(key, *members)
                    await pipe.execute()

    async def acquire(self, key: str) -> Refusal | None:
        if self.active >= self.per_process:
            return Refusal.process_full(self.per_process)
        # Counted before the await, so concurrent opens cannot overshoot the local limit.
        self.active += 1
        try:
            granted = await self._take(_sessions_key(key))
        except BaseException:
            self.active -= 1
            raise
        if not granted:
            self.active -= 1
            return Refusal.key_full(self.per_key, across_instances=True)
        return None

    async def release(self, key: str) -> None:
        self.active -= 1
        redis_key = _sessions_key(key)
        async with self._lock:
            members = self._held.get(redis_key)
            if not members:
                return
            member = members.pop()
            if not members:
                del self._held[redis_key]
            try:
                await self._client.zrem(redis_key, member)
            except ERRORS as exc:
                log.warning(
                    "could not release a session slot (%s); it lapses within %ss",
                    exc,
                    self._lease_s,
                )

    async def _take(self, redis_key: str) -> bool:
        member = f"{self._instance}:{next(self._numbers)}"
        async with self._lock:
            try:
                granted = await self._acquire(
                    keys=[redis_key], args=[member, self.per_key, self._lease_ms]
                )
            except ERRORS as exc:
                raise SharedStateUnavailable(
                    "The per-key session limit could not be checked, so the session was not opened."
                ) from exc
            if granted:
                self._held.setdefault(redis_key, []).append(member)
            return bool(granted)

    async def _renew_forever(self) -> None:
        while True:
            await asyncio.sleep(self._lease_s / 3)
            async with self._lock:
                held = {key: list(members) for key, members in self._held.items()}
                if not held:
                    continue
                try:
                    async with self._client.pipeline(transaction=False) as pipe:
                        for key, members in held.items():
                            # Queues the EVALSHA on the pipeline (awaiting returns the pipeline).
                            await self._renew(
                                keys=[key], args=[self._lease_ms, *members], client=pipe
                            )
                        await pipe.execute()
                except ERRORS as exc:
                    self._outage.failed(exc)
                else:
                    self._outage.succeeded()


def _sessions_key(key: str) -> str:
    return f"{PREFIX}sessions:{digest(key)}"
