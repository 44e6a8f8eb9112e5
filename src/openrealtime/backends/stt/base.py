"""Speech-to-text: one small interface, one file per implementation."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Protocol

from ..base import Capabilities

# Transcribers take 16 kHz mono PCM16 (little-endian).
SAMPLE_RATE = 16_000


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


def audio_seconds(pcm16k: bytes) -> float:
    """How long `pcm16k` plays (a trailing odd byte is not a sample)."""
    return len(pcm16k) // 2 / SAMPLE_RATE


def whole_transcript(text: str, pcm16k: bytes) -> list[TranscriptEvent]:
    """The events of a transcript decoded in one piece: its text as one delta, then done."""
    done = TranscriptDone(text, audio_seconds(pcm16k))
    return [TranscriptDelta(text), done] if text else [done]


class TranscriptionStream(Protocol):
    """One utterance, transcribed while it is spoken."""

    async def feed(self, pcm16k: bytes) -> str | None:
        """Add audio; returns the whole transcript so far when it has changed."""
        ...

    async def finish(self) -> TranscriptDone: ...

    async def aclose(self) -> None:
        """Drop the utterance (also safe after finish)."""
        ...


class Transcriber(Protocol):
    """Speech to text; one instance is shared by every session. Transcribers that decode only
    whole utterances inherit `streaming.BatchTranscriber`, which streams by re-transcribing."""

    name: str

    @property
    def capabilities(self) -> Capabilities: ...

    def transcribe(
        self, pcm16k: bytes, options: TranscriptionOptions
    ) -> AsyncIterator[TranscriptEvent]:
        """Transcribe 16 kHz mono PCM16 (little-endian).

        Yields zero or more deltas, then exactly one TranscriptDone whose text is the whole
        transcript. Raises BackendError on failure.
        """
        ...

    def open_stream(self, options: TranscriptionOptions) -> TranscriptionStream:
        """One utterance, transcribed while it is spoken; natively if `capabilities.streaming`."""
        ...

    def load(self) -> None:
        """Load the model now (blocking; called once at start-up, off the event loop)."""
        ...

    async def aclose(self) -> None: ...
