"""Effects: what the session core asks its driver to do. Plain data; the driver runs them."""

from __future__ import annotations

from dataclasses import dataclass

from ..backends.llm.base import LlmRequest
from ..backends.stt.base import TranscriptionOptions


@dataclass(frozen=True, slots=True)
class GenerateResponse:
    """Run the LLM for `response_id`; with `voice` set, speak its text as it streams."""

    response_id: str
    request: LlmRequest
    voice: str | None = None
    speed: float = 1.0


@dataclass(frozen=True, slots=True)
class CancelResponse:
    """Stop all backend work for `response_id` at once (LLM stream and synthesis)."""

    response_id: str


@dataclass(frozen=True, slots=True)
class Transcribe:
    """Transcribe a committed user audio item (16 kHz mono PCM16)."""

    item_id: str
    content_index: int
    pcm16k: bytes
    options: TranscriptionOptions


@dataclass(frozen=True, slots=True)
class SetTimer:
    """Call `Session.on_timer(name)` once the input audio clock reaches `at_ms`... or wall time.

    `at_ms` is in session time (milliseconds since the session started, as the driver counts).
    A later SetTimer with the same name replaces it; CancelTimer drops it.
    """

    name: str
    at_ms: float


@dataclass(frozen=True, slots=True)
class CancelTimer:
    name: str


Effect = GenerateResponse | CancelResponse | Transcribe | SetTimer | CancelTimer
