"""A `Transcriber` whose decoding runs in model worker processes (`backends/workers.py`).

`build` is a picklable callable that makes the real transcriber (a module-level function and
its settings); each worker calls it once, loads the model, and then transcribes one utterance at
a time. The server process holds only an unloaded instance, for its name and capabilities.

Audio crosses to the worker as PCM16 bytes and the transcript comes back whole: a batch
decode, so the pooled transcriber declares no native streaming, and partial transcripts come
from re-transcribing (`BatchStream`), each pass a job in the pool that runs only if a worker
is idle, so partials never delay a turn's final transcript nor fail it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
from collections.abc import AsyncIterator, Callable

from ..base import Capabilities
from ..workers import NoWorkerFree, WorkerPool
from .base import (
    Transcriber,
    TranscriptDone,
    TranscriptEvent,
    TranscriptionOptions,
    TranscriptionStream,
)
from .streaming import BatchStream, BatchTranscriber


class PooledTranscriber(BatchTranscriber):
    """`build()`'s transcriber, run in `workers` processes; share one across sessions."""

    def __init__(
        self,
        build: Callable[[], Transcriber],
        workers: int,
        *,
        max_wait_s: float = 5.0,
        max_waiting: int | None = None,
        job_timeout_s: float | None = 60.0,
    ) -> None:
        inner = build()  # not loaded: only read for what it is
        self.name = inner.name
        self.capabilities: Capabilities = dataclasses.replace(inner.capabilities, streaming=False)
        self.pool: WorkerPool[Transcriber] = WorkerPool(
            "stt",
            functools.partial(_load, build),
            workers,
            max_wait_s=max_wait_s,
            # Enough for every worker to have a few turns queued; more would only wait longer.
            max_waiting=max_waiting if max_waiting is not None else 16 * workers,
            job_timeout_s=job_timeout_s,
        )

    def load(self) -> None:
        self.pool.start()

    async def transcribe(
        self, pcm16k: bytes, options: TranscriptionOptions
    ) -> AsyncIterator[TranscriptEvent]:
        for event in await self.pool.run(_transcribe, pcm16k, options):
            yield event

    def open_stream(self, options: TranscriptionOptions) -> TranscriptionStream:
        return _PooledStream(self.pool, options)

    async def aclose(self) -> None:
        await self.pool.aclose()


class _PooledStream(BatchStream):
    """Re-transcription through the pool, where a partial transcript is worth a worker only
    if one is idle: it never queues ahead of a turn's final decode, and a busy pool skips it
    rather than failing the turn. The final decode waits its turn like any job."""

    def __init__(self, pool: WorkerPool[Transcriber], options: TranscriptionOptions) -> None:
        super().__init__(self._decode, options)
        self._pool = pool
        self._finishing = False

    async def feed(self, pcm16k: bytes) -> str | None:
        try:
            return await super().feed(pcm16k)
        except NoWorkerFree:
            return None

    async def finish(self) -> TranscriptDone:
        self._finishing = True
        return await super().finish()

    async def _decode(
        self, pcm16k: bytes, options: TranscriptionOptions
    ) -> AsyncIterator[TranscriptEvent]:
        for event in await self._pool.run(_transcribe, pcm16k, options, wait=self._finishing):
            yield event


# In the worker process ----------------------------------------------------------------------------


def _load(build: Callable[[], Transcriber]) -> Transcriber:
    transcriber = build()
    transcriber.load()
    return transcriber


def _transcribe(
    transcriber: Transcriber, pcm16k: bytes, options: TranscriptionOptions
) -> list[TranscriptEvent]:
    async def collect() -> list[TranscriptEvent]:
        return [event async for event in transcriber.transcribe(pcm16k, options)]

    # A loop per job (~0.1 ms): one kept across jobs would outlive its file descriptors when
    # the worker exits.
    return asyncio.run(collect())
