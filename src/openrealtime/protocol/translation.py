"""The translation surface (`/v1/realtime/translations`): its client events, its session
object and its server events, in the shapes of the SDK's `realtime_translation_*` types."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import orjson
from pydantic import Field, TypeAdapter, ValidationError

from ..ids import new_event_id
from . import errors
from .base import WireModel, deferred_adapter
from .errors import ProtocolError

# Target languages: ISO 639-1 codes the LLM prompt can name and espeak-ng can speak.
LANGUAGES = {
    "ar": "Arabic", "ca": "Catalan", "cs": "Czech", "da": "Danish", "de": "German",
    "el": "Greek", "en": "English", "es": "Spanish", "fi": "Finnish", "fr": "French",
    "he": "Hebrew", "hi": "Hindi", "hu": "Hungarian", "id": "Indonesian", "it": "Italian",
    "ja": "Japanese", "ko": "Korean", "nl": "Dutch", "no": "Norwegian", "pl": "Polish",
    "pt": "Portuguese", "ro": "Romanian", "ru": "Russian", "sk": "Slovak", "sv": "Swedish",
    "th": "Thai", "tr": "Turkish", "uk": "Ukrainian", "vi": "Vietnamese", "zh": "Chinese",
}  # fmt: skip
DEFAULT_LANGUAGE = "en"
# Input audio: 24 kHz PCM16 mono, the only format translation sockets take.
INPUT_RATE = 24_000
# Timing metadata advances in 200 ms engine frames, as OpenAI's does.
FRAME_MS = 200


class NoiseReduction(WireModel):
    type: Literal["near_field", "far_field"]
    strength: float | None = Field(None, ge=0.0, le=1.0)


class Transcription(WireModel):
    model: str
    # An extension, as `transcription.language` of voice sessions: the source language
    # (ISO 639-1), which spares the recognizer detecting it. Unset: detected per phrase.
    language: str | None = None


class AudioInput(WireModel):
    noise_reduction: NoiseReduction | None = None
    transcription: Transcription | None = None


class AudioOutput(WireModel):
    language: str | None = None


class Audio(WireModel):
    input: AudioInput | None = None
    output: AudioOutput | None = None


class SessionUpdateRequest(WireModel):
    audio: Audio | None = None


class SessionCreateRequest(WireModel):
    """A translation client secret's session (`/v1/realtime/translations/client_secrets`)."""

    model: str
    audio: Audio | None = None


class SessionUpdate(WireModel):
    type: Literal["session.update"]
    session: SessionUpdateRequest
    event_id: str | None = None


class AudioAppend(WireModel):
    type: Literal["session.input_audio_buffer.append"]
    audio: str
    event_id: str | None = None


class SessionClose(WireModel):
    type: Literal["session.close"]
    event_id: str | None = None


ClientEvent = SessionUpdate | AudioAppend | SessionClose
CLIENT_EVENT_TYPES = {"session.update", "session.input_audio_buffer.append", "session.close"}
_CLIENT_EVENT: TypeAdapter[ClientEvent] = deferred_adapter(
    Annotated[ClientEvent, Field(discriminator="type")]
)


def parse_client_event(raw: str | bytes) -> ClientEvent:
    """A typed client event; raises ProtocolError (an `error` event; the session goes on)."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise errors.invalid_json(exc) from None
    event_id = data.get("event_id") if isinstance(data, dict) else None
    event_id = event_id if isinstance(event_id, str) else None
    kind = data.get("type") if isinstance(data, dict) else None
    if kind not in CLIENT_EVENT_TYPES:
        raise ProtocolError(
            f"Invalid value: {kind!r}. Supported values are: {sorted(CLIENT_EVENT_TYPES)}.",
            errors.UNKNOWN_EVENT_TYPE,
            "type",
            event_id=event_id,
        )
    try:
        event = _CLIENT_EVENT.validate_python(data)
    except ValidationError as exc:
        raise errors.from_validation_error(exc, data, event_id=event_id) from None
    if isinstance(event, SessionUpdate) and event.session.audio is not None:
        check_languages(event.session.audio, event_id)
    return event


def check_languages(audio: Audio, event_id: str | None = None) -> None:
    """The target and source languages `audio` sets are ones the server knows."""
    if audio.output is not None and audio.output.language is not None:
        check_language(audio.output.language, event_id)
    transcription = audio.input.transcription if audio.input is not None else None
    if transcription is not None and transcription.language is not None:
        param = "session.audio.input.transcription.language"
        check_language(transcription.language, event_id, param)


def check_language(
    language: str, event_id: str | None = None, param: str = "session.audio.output.language"
) -> None:
    if language.lower() not in LANGUAGES:
        raise ProtocolError(
            f"Invalid value: '{language}'. Supported values are: {sorted(LANGUAGES)}.",
            errors.INVALID_VALUE,
            param,
            event_id=event_id,
        )


def _event(type_: str, **fields: Any) -> dict[str, Any]:
    return {"type": type_, "event_id": new_event_id(), **fields}


def session_created(session: dict[str, Any]) -> dict[str, Any]:
    return _event("session.created", session=session)


def session_updated(session: dict[str, Any]) -> dict[str, Any]:
    return _event("session.updated", session=session)


def session_closed() -> dict[str, Any]:
    return _event("session.closed")


def input_transcript_delta(delta: str, elapsed_ms: int) -> dict[str, Any]:
    return _event("session.input_transcript.delta", delta=delta, elapsed_ms=elapsed_ms)


def output_transcript_delta(delta: str, elapsed_ms: int) -> dict[str, Any]:
    return _event("session.output_transcript.delta", delta=delta, elapsed_ms=elapsed_ms)


def output_audio_delta(audio_b64: str, sample_rate: int, elapsed_ms: int) -> dict[str, Any]:
    return _event(
        "session.output_audio.delta",
        delta=audio_b64,
        format="pcm16",
        sample_rate=sample_rate,
        channels=1,
        elapsed_ms=elapsed_ms,
    )
