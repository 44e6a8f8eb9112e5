"""`session.update`: an update merged into the session's configuration, and the voice rules.

Rules:
- `session.type` cannot change; the read-only `object`, `id` and `expires_at` are ignored.
- A voice must be one the speech backend can speak (`known_voice`). A custom voice
  (`{"id": ...}`) is mapped by its id: it must name a backend voice; nothing is stored here
  that could give an other id a meaning.
- Once assistant audio exists, the voice is locked: it may be re-sent, not changed.
- The update is merged into the current configuration and validated whole; a refused update
  changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..protocol import client_events as ce
from ..protocol import errors
from ..protocol.errors import ProtocolError
from ..protocol.session import (
    READ_ONLY_FIELDS,
    RealtimeSession,
    TranscriptionSession,
    VoiceId,
    merge_session_update,
)

AnyConfig = RealtimeSession | TranscriptionSession


def check_voice(voice: Any, param: str, known_voice: Callable[[str], bool]) -> None:
    """`voice` as sent: a name, a `VoiceId`, or its JSON (`{"id": ...}`)."""
    if isinstance(voice, dict) and isinstance(voice.get("id"), str):
        voice = VoiceId(id=voice["id"])
    if isinstance(voice, VoiceId):
        if not known_voice(voice.id):
            raise errors.unknown_custom_voice(voice.id, f"{param}.id")
    elif isinstance(voice, str) and not known_voice(voice):
        raise errors.unknown_voice(voice, param)


def updated(
    config: AnyConfig,
    event: ce.SessionUpdate,
    *,
    known_voice: Callable[[str], bool],
    voice_locked: bool,
) -> AnyConfig:
    """The configuration after `event`."""
    update = event.session.model_dump(mode="json", exclude_unset=True)
    if update.get("type") != config.type:
        raise ProtocolError(
            f"This is a '{config.type}' session; session.type cannot change to "
            f"'{update.get('type')}'. Open a new connection for a {update.get('type')} session.",
            errors.INVALID_VALUE,
            "session.type",
        )
    for field in READ_ONLY_FIELDS:
        update.pop(field, None)
    new_voice = (update.get("audio") or {}).get("output", {}).get("voice")
    if new_voice is not None:
        check_voice(new_voice, "session.audio.output.voice", known_voice)
        if voice_locked and new_voice != _voice_value(config):
            raise ProtocolError(
                "Cannot update a conversation's voice if assistant audio is present.",
                errors.VOICE_LOCKED,
                "session.audio.output.voice",
            )
    merged = merge_session_update(config.model_dump(mode="json"), update)
    return type(config).model_validate(merged)


def _voice_value(config: AnyConfig) -> Any:
    assert isinstance(config, RealtimeSession)
    voice = config.audio.output.voice
    return voice.model_dump() if isinstance(voice, VoiceId) else voice
