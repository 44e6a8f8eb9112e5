"""What every backend has beside its kind's interface: the abilities it declares, and the
start-up and shut-down hooks, which do nothing unless a backend needs them.

Callers decide from `capabilities`, never by probing a backend for methods (DESIGN, principle 7).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a backend can do beyond the interface every backend of its kind has."""

    # STT: decodes while the audio arrives (its `open_stream` is native, not re-transcription),
    # so the transcript is ready when the turn ends. LLM, TTS: yields output as it is made.
    streaming: bool = False
    # VAD: how many sessions' frames one model call takes (1: no batching).
    max_batch: int = 1
    # STT, TTS: the languages it handles (ISO 639-1 codes); None: any.
    languages: frozenset[str] | None = None
    # LLM: reads `image_url` content parts (the served model is a vision model).
    vision: bool = False
    # STT, TTS: runs a model in this server (or its worker processes), not over HTTP. Such a
    # server is warmed whole at start; one on HTTP speech backends stays lean (server/lifecycle.py).
    local_model: bool = False

    def handles_language(self, language: str | None) -> bool:
        """Whether a requested language (e.g. "en", "en-US"; None: unspecified) is handled."""
        if language is None or self.languages is None:
            return True
        return language.split("-", 1)[0].lower() in self.languages


class BackendBase:
    """Default hooks: a backend overrides the ones it needs."""

    capabilities = Capabilities()

    def load(self) -> None:
        """Load models now (blocking, at start-up, off the event loop) rather than mid-session."""

    async def aclose(self) -> None:
        """Release connections, threads and models at shutdown."""
