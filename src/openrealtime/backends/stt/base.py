"""Speech-to-text: one small interface, one file per implementation."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True, slots=True)
class TranscriptionOptions:
    """What `audio.input.transcription` asks for; `model` is the client's name, if any."""

    model: str | None = None
    language: str | None = None
    prompt: str | None = None


@dataclass(frozen=True, slots=True)
class TranscriptDelta:
    text: str


@dataclass(frozen=True, slots=True)
class TranscriptDone:
    text: str
    # Seconds of audio transcribed, for usage reporting.
    audio_seconds: float = 0.0
    extra: dict[str, object] = field(default_factory=dict)


TranscriptEvent = TranscriptDelta | TranscriptDone


class Transcriber(Protocol):
    name: str

    def transcribe(
        self, pcm16k: bytes, options: TranscriptionOptions
    ) -> AsyncIterator[TranscriptEvent]:
        """Transcribe 16 kHz mono PCM16 (little-endian).

        Yields zero or more deltas, then exactly one TranscriptDone whose text is the whole
        transcript. Raises BackendError on failure.
        """
        ...


class TranscriptionStream(Protocol):
    """One utterance, transcribed while it is spoken."""

    async def feed(self, pcm16k: bytes) -> str | None:
        """Add audio; returns the whole transcript so far when it has changed."""
        ...

    async def finish(self) -> TranscriptDone: ...

    async def aclose(self) -> None:
        """Drop the utterance (also safe after finish)."""
        ...


class StreamingTranscriber(Transcriber, Protocol):
    """A transcriber that can decode incrementally (partial results as audio arrives)."""

    def open_stream(self, options: TranscriptionOptions) -> TranscriptionStream: ...
