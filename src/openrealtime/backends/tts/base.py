"""Text-to-speech: one small interface, one file per implementation."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Protocol

from ...protocol.session import OPENAI_VOICES

__all__ = ["OPENAI_VOICES", "Synthesizer"]


class Synthesizer(Protocol):
    name: str
    sample_rate: int  # of the PCM16 mono audio `synthesize` yields

    def resolve_voice(self, voice: str) -> str | None:
        """The backend voice for an OpenAI or backend voice name; None if unknown."""
        ...

    def synthesize(self, text: str, voice: str, speed: float = 1.0) -> AsyncGenerator[bytes, None]:
        """Speak `text`, yielding PCM16 mono chunks at `sample_rate` as soon as they exist.

        `voice` is an already-resolved backend voice. Raises BackendError on failure.
        """
        ...
