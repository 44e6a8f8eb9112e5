"""Partial transcripts from a batch recognizer (backends/stt/streaming.py): re-decodes of the
growing turn, bounded per stream and skipped under load; the final decode always runs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from openrealtime.backends.stt import streaming
from openrealtime.backends.stt.base import TranscriptDone, TranscriptEvent, TranscriptionOptions
from openrealtime.backends.stt.streaming import BYTES_PER_SECOND, BatchStream

SECOND = b"\1\0" * (BYTES_PER_SECOND // 2)


class Recognizer:
    """Decodes to "n words" for n seconds of audio; holds each decode until released."""

    def __init__(self) -> None:
        self.calls: list[int] = []
        self.release = asyncio.Event()

    async def transcribe(
        self, pcm16k: bytes, options: TranscriptionOptions
    ) -> AsyncIterator[TranscriptEvent]:
        seconds = len(pcm16k) // BYTES_PER_SECOND
        self.calls.append(seconds)
        await self.release.wait()
        yield TranscriptDone(" ".join(["word"] * seconds), float(seconds))


def test_partials_are_skipped_while_other_streams_decode_and_the_final_always_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(streaming, "MAX_PARTIALS_IN_FLIGHT", 1)

    async def scenario() -> None:
        recognizer = Recognizer()
        busy = BatchStream(recognizer.transcribe, TranscriptionOptions())
        other = BatchStream(recognizer.transcribe, TranscriptionOptions())
        running = asyncio.create_task(busy.feed(SECOND))
        await asyncio.sleep(0)
        assert recognizer.calls == [1]
        assert await other.feed(SECOND) is None  # skipped: one partial already in flight
        assert recognizer.calls == [1]
        recognizer.release.set()
        assert await running == "word"
        assert await other.feed(SECOND) == "word word"  # load gone: it decodes again
        assert (await other.finish()).text == "word word"
        assert recognizer.calls == [1, 2, 2]

    asyncio.run(scenario())


def test_a_stream_decodes_at_most_once_per_interval() -> None:
    async def scenario() -> None:
        recognizer = Recognizer()
        recognizer.release.set()
        stream = BatchStream(recognizer.transcribe, TranscriptionOptions(), interval_s=1.0)
        half = SECOND[: len(SECOND) // 2]
        assert await stream.feed(half) is None
        assert recognizer.calls == []
        assert await stream.feed(half) == "word"
        assert await stream.feed(half) is None
        assert recognizer.calls == [1]

    asyncio.run(scenario())
