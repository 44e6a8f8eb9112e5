"""Effects: what the session core asks its driver to do. Plain data; the driver runs them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..backends.llm.base import LlmRequest
from ..backends.mcp.base import McpServer
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
class StopGenerating:
    """Stop the LLM stream of `response_id`, which reached `max_output_tokens` (a backend
    that ignores the limit); the speech of the text so far goes on."""

    response_id: str


@dataclass(frozen=True, slots=True)
class Transcribe:
    """Transcribe a committed user audio item (16 kHz mono PCM16)."""

    item_id: str
    content_index: int
    pcm16k: bytes
    options: TranscriptionOptions


@dataclass(frozen=True, slots=True)
class SpeculateTranscript:
    """Transcribe the turn being spoken, up to a pause, before it ends: the core adopts the
    result (`Session.on_speculation_done`) if the turn ends in that pause, else cancels it."""

    speculation_id: str
    pcm16k: bytes
    options: TranscriptionOptions


@dataclass(frozen=True, slots=True)
class CancelSpeculation:
    speculation_id: str


@dataclass(frozen=True, slots=True)
class JudgeTurnEnd:
    """Ask the end-of-turn model whether the turn in `pcm16k` (its last seconds, 16 kHz int16)
    is finished; the driver answers with `Session.on_turn_judged(item_id, speech_end_ms, p)`,
    p None when there is no model."""

    item_id: str
    speech_end_ms: float
    pcm16k: np.ndarray


@dataclass(frozen=True, slots=True)
class DetectSpeech:
    """Input audio waits for voice activity detection: the driver takes it with
    `Session.take_vad_audio` when the VAD is ready for it (everything appended by then, in
    one piece), and answers with `Session.on_speech_probabilities`. Sent when the first audio
    since the last take arrives, not for every chunk."""


@dataclass(frozen=True, slots=True)
class StartTranscript:
    """Open a streaming transcription for the speech that just started; `pcm16k` is the audio
    held so far (the prefix padding onwards). Partial transcripts come back while it is fed."""

    item_id: str
    content_index: int
    pcm16k: bytes
    options: TranscriptionOptions


@dataclass(frozen=True, slots=True)
class FeedTranscript:
    item_id: str
    pcm16k: bytes


@dataclass(frozen=True, slots=True)
class FinishTranscript:
    """The turn was committed (or, with `discard`, cleared): finish or drop its transcription."""

    item_id: str
    discard: bool = False


@dataclass(frozen=True, slots=True)
class ClearOutputAudio:
    """Stop playing assistant audio now (transports with server-side playback: WebRTC)."""


@dataclass(frozen=True, slots=True)
class WakeAfter:
    """Call `Session.on_timer(timer_id)` after `delay_ms` of wall-clock time. The core keeps
    its clock in input audio; this is for rules that must fire when no audio arrives (the
    idle timeout). A timer the core no longer wants is ignored when it fires."""

    timer_id: int
    delay_ms: float


@dataclass(frozen=True, slots=True)
class ListMcpTools:
    """List an MCP server's tools; the driver answers with `Session.on_mcp_tools_listed` or
    `Session.on_mcp_list_failed`."""

    item_id: str
    server: McpServer


@dataclass(frozen=True, slots=True)
class RunMcpCall:
    """Call an MCP tool for a response; the driver answers with `Session.on_mcp_call_done`.
    `CancelResponse` for the response stops it."""

    response_id: str
    item_id: str
    server: McpServer
    tool: str
    arguments: str


Effect = (
    GenerateResponse
    | CancelResponse
    | StopGenerating
    | Transcribe
    | SpeculateTranscript
    | CancelSpeculation
    | JudgeTurnEnd
    | DetectSpeech
    | StartTranscript
    | FeedTranscript
    | FinishTranscript
    | ClearOutputAudio
    | WakeAfter
    | ListMcpTools
    | RunMcpCall
)
