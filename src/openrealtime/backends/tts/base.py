"""Text-to-speech: one small interface, one file per implementation."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Protocol

from ...protocol.session import OPENAI_VOICES
from ..base import Capabilities

__all__ = ["OPENAI_VOICES", "Synthesizer"]


class Synthesizer(Protocol):
    """Text to speech; one instance is shared by every session."""

    name: str
    sample_rate: int  # of the PCM16 mono audio `synthesize` yields

    @property
    def capabilities(self) -> Capabilities: ...

    def resolve_voice(self, voice: str) -> str | None:
        """The backend voice for an OpenAI or backend voice name; None if unknown."""
        ...

    def synthesize(self, text: str, voice: str, speed: float = 1.0) -> AsyncGenerator[bytes, None]:
        """Speak `text`, yielding PCM16 mono chunks at `sample_rate` as soon as they exist.

        `voice` is an already-resolved backend voice. Raises BackendError on failure.
        """
        ...

    def load(self) -> None:
        """Load the voice model now (blocking; called once at start-up, off the event loop)."""
        ...

    async def aclose(self) -> None: ...
