"""Streaming transcription for any batch transcriber: re-transcribe the utterance so far every
`interval_s` of new audio. Costs more CPU than a native stream; gives partial transcripts from
backends that have none (HTTP endpoints, Whisper).

CPU stays bounded: a stream re-decodes at most once per `interval_s` of new audio and never
while its last decode runs (its feeder awaits each one and joins the audio queued meanwhile);
and a partial is skipped altogether while MAX_PARTIALS_IN_FLIGHT other streams' partial
decodes run in this process (the final decode at `finish` is never skipped)."""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable

from ..base import BackendBase
from .base import (
    SAMPLE_RATE,
    TranscriptDone,
    TranscriptEvent,
    TranscriptionOptions,
    TranscriptionStream,
)

BYTES_PER_SECOND = SAMPLE_RATE * 2
MAX_PARTIALS_IN_FLIGHT = max(1, (os.cpu_count() or 1) // 2)
_partials_in_flight = 0

Transcribe = Callable[[bytes, TranscriptionOptions], AsyncIterator[TranscriptEvent]]


class BatchStream:
    def __init__(
        self, transcribe: Transcribe, options: TranscriptionOptions, interval_s: float = 1.0
    ) -> None:
        self._transcribe = transcribe
        self._options = options
        self._interval = int(interval_s * BYTES_PER_SECOND)
        self._audio = bytearray()
        self._transcribed_at = 0
        self._last = ""

    async def feed(self, pcm16k: bytes) -> str | None:
        self._audio += pcm16k
        if len(self._audio) - self._transcribed_at < self._interval:
            return None
        global _partials_in_flight
        if _partials_in_flight >= MAX_PARTIALS_IN_FLIGHT:
            return None  # under load: this partial is skipped, the next one may run
        self._transcribed_at = len(self._audio)
        _partials_in_flight += 1
        try:
            done = await self._run()
        finally:
            _partials_in_flight -= 1
        if done.text == self._last:
            return None
        self._last = done.text
        return done.text

    async def finish(self) -> TranscriptDone:
        return await self._run()

    async def aclose(self) -> None:
        self._audio.clear()

    async def _run(self) -> TranscriptDone:
        done: TranscriptDone | None = None
        async for event in self._transcribe(bytes(self._audio), self._options):
            if isinstance(event, TranscriptDone):
                done = event
        return done if done is not None else TranscriptDone("", len(self._audio) / BYTES_PER_SECOND)


class BatchTranscriber(BackendBase, ABC):
    """Base of a `Transcriber` that decodes whole utterances only: it streams through
    `BatchStream`, and declares no native streaming."""

    @abstractmethod
    def transcribe(
        self, pcm16k: bytes, options: TranscriptionOptions
    ) -> AsyncIterator[TranscriptEvent]: ...

    def open_stream(self, options: TranscriptionOptions) -> TranscriptionStream:
        return BatchStream(self.transcribe, options)
