"""Fake models for the model-worker tests, at the model boundary: module-level and picklable,
so a spawned worker process can import and build them (tests/ is on its sys.path)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

from openrealtime.backends.stt.base import TranscriptEvent, TranscriptionOptions, whole_transcript
from openrealtime.backends.stt.streaming import BatchTranscriber


class CountingTranscriber(BatchTranscriber):
    """Hears how long the audio is ("heard 800 ms"), taking `seconds` of the worker's time:
    a transcript that says which audio it came from, at a pace a test controls."""

    name = "counting"

    def __init__(self, seconds: float = 0.0) -> None:
        self.seconds = seconds

    async def transcribe(
        self, pcm16k: bytes, options: TranscriptionOptions
    ) -> AsyncIterator[TranscriptEvent]:
        time.sleep(self.seconds)  # holds the worker like a model holding a core
        for event in whole_transcript(f"heard {len(pcm16k) // 32} ms", pcm16k):
            yield event


def echo(model: object, value: int) -> int:
    return value


def pid(model: object) -> int:
    import os

    return os.getpid()
