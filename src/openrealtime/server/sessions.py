"""The session factory: which configuration a new session starts from, and a core `Session`
wired to what the backends can do. Shared by the WebSocket route and WebRTC calls."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..backends.registry import Backends
from ..protocol.session import RealtimeSession, TranscriptionSession
from .auth import Principal

if TYPE_CHECKING:
    from ..core.session import Session


def session_config(
    principal: Principal, transcription: bool, model: str | None
) -> RealtimeSession | TranscriptionSession:
    """A client secret's minted configuration, or the defaults for what was asked."""
    if principal.session is not None:
        minted = principal.session
        kind = TranscriptionSession if minted.get("type") == "transcription" else RealtimeSession
        return kind.model_validate(minted)
    if transcription:
        return TranscriptionSession()
    return RealtimeSession(model=model or "gpt-realtime")


def new_session(
    config: RealtimeSession | TranscriptionSession, backends: Backends, *, playback: bool = False
) -> Session:
    """A session wired to what the backends can do."""
    from ..core.session import Session  # the session machinery (numpy…) loads after start

    tts, vad = backends.tts, backends.vad
    return Session(
        config,
        known_voice=lambda voice: tts.resolve_voice(voice) is not None,
        vad_frame_ms=1000 * vad.frame_samples / vad.sample_rate,
        # A native streaming recognizer has the transcript ready when the turn ends.
        stream_transcripts=backends.stt.capabilities.streaming,
        playback=playback,
        context_window=backends.llm.context_window,
        vision=backends.llm.capabilities.vision,
    )
