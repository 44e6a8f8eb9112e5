"""Fake models for the model-worker tests, at the model boundary: module-level and picklable,
so a spawned worker process can import and build them (tests/ is on its sys.path)."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator

from openrealtime.backends.errors import BackendError
from openrealtime.backends.stt.base import TranscriptEvent, TranscriptionOptions, whole_transcript
from openrealtime.backends.stt.streaming import BatchTranscriber


class CountingTranscriber(BatchTranscriber):
    """Hears how long the audio is ("heard 800 ms"): a transcript that says which audio it
    came from. With `hold_until`, each job holds its worker (as a model holds a core) until
    that file exists, so a test decides when a job ends."""

    name = "counting"

    def __init__(self, hold_until: str | None = None) -> None:
        self.hold_until = hold_until

    async def transcribe(
        self, pcm16k: bytes, options: TranscriptionOptions
    ) -> AsyncIterator[TranscriptEvent]:
        deadline = time.monotonic() + 60
        while self.hold_until and not os.path.exists(self.hold_until):
            assert time.monotonic() < deadline, "the test never released its job"
            time.sleep(0.01)
        for event in whole_transcript(f"heard {len(pcm16k) // 32} ms", pcm16k):
            yield event


class PickyTranscriber(CountingTranscriber):
    """Refuses audio shorter than 500 ms with a BackendError of its own, as a model refuses
    input it cannot handle: the error has to cross back from the worker intact."""

    async def transcribe(
        self, pcm16k: bytes, options: TranscriptionOptions
    ) -> AsyncIterator[TranscriptEvent]:
        if len(pcm16k) < 16000:
            raise BackendError("stt", "too short to hear", code="audio_too_short", detail="picky")
        async for event in super().transcribe(pcm16k, options):
            yield event
