"""Redis writes a session must never wait for: queued (bounded) and sent in order, pipelined,
by one task. Queue full, or Redis down: dropped, logged once."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from contextlib import suppress

from redis.asyncio import Redis

from .redis_state import ERRORS, OutageLog

log = logging.getLogger(__name__)

QUEUE_LIMIT = 4096  # writes waiting for Redis; as many events as a client's send queue holds
BATCH = 256  # writes per pipeline


class RedisPublisher:
    """PUBLISH and DEL, in the order they were asked for. `on_result` gets PUBLISH's count of
    receivers."""

    def __init__(self, client: Redis, what: str) -> None:
        self._client = client
        self._queue: asyncio.Queue[tuple[str, str, bytes, Callable[[int], None] | None]] = (
            asyncio.Queue(QUEUE_LIMIT)
        )
        self._outage = OutageLog(what)
        self._overflowing = False
        self._task: asyncio.Task[None] | None = None

    def publish(
        self, channel: str, payload: bytes, on_result: Callable[[int], None] | None = None
    ) -> None:
        self._put(("publish", channel, payload, on_result))

    def delete(self, key: str) -> None:
        self._put(("delete", key, b"", None))

    def _put(self, item: tuple[str, str, bytes, Callable[[int], None] | None]) -> None:
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            if not self._overflowing:
                self._overflowing = True
                log.warning(
                    "%s: %d writes wait for Redis; dropping more until it catches up",
                    self._outage.what,
                    QUEUE_LIMIT,
                )

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="redis publisher")

    async def aclose(self, flush_s: float = 1.0) -> None:
        """Send what is queued (for at most `flush_s`: Redis may be gone), then stop."""
        with suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), flush_s)
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        queue = self._queue
        while True:
            batch = [await queue.get()]
            while len(batch) < BATCH and not queue.empty():
                batch.append(queue.get_nowait())
            try:
                async with self._client.pipeline(transaction=False) as pipe:
                    for op, target, payload, _ in batch:
                        if op == "publish":
                            pipe.publish(target, payload)
                        else:
                            pipe.delete(target)
                    results = await pipe.execute()
            except ERRORS as exc:
                self._outage.failed(exc)  # dropped: the session must not wait for Redis
            else:
                self._outage.succeeded()
                self._overflowing = False
                for (_, _, _, on_result), result in zip(batch, results, strict=True):
                    if on_result is not None:
                        on_result(int(result))
            finally:
                for _ in batch:
                    queue.task_done()
