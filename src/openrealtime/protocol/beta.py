"""The beta dialect (`OpenAI-Beta: realtime=v1`), translated to and from GA at the transport edge.

The core speaks GA only. A beta client's events are rewritten to GA before parsing, and the
core's GA events are rewritten to beta before sending. Both directions work on plain JSON dicts
and never mutate their input. Unknown keys are left in place, so GA validation reports them to
the client as unknown parameters instead of this layer silently dropping them.

The reference for both shapes is the `openai` SDK: `types/beta/realtime/` and `types/realtime/`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .errors import INVALID_VALUE, ProtocolError
from .items import ITEM_SHAPE_HINTS
from .session import merge_session_update

JSON = dict[str, Any]

# --- tables --------------------------------------------------------------------------------

FORMAT_TO_GA: dict[str, JSON] = {
    "pcm16": {"type": "audio/pcm", "rate": 24000},
    "g711_ulaw": {"type": "audio/pcmu"},
    "g711_alaw": {"type": "audio/pcma"},
}
FORMAT_TO_BETA = {"audio/pcm": "pcm16", "audio/pcmu": "g711_ulaw", "audio/pcma": "g711_alaw"}

# Where each beta field lives in GA. Fields not listed keep their name and place.
SESSION_PATHS: dict[str, tuple[str, ...]] = {
    "modalities": ("output_modalities",),
    "voice": ("audio", "output", "voice"),
    "speed": ("audio", "output", "speed"),
    "output_audio_format": ("audio", "output", "format"),
    "input_audio_format": ("audio", "input", "format"),
    "input_audio_transcription": ("audio", "input", "transcription"),
    "turn_detection": ("audio", "input", "turn_detection"),
    "input_audio_noise_reduction": ("audio", "input", "noise_reduction"),
    "max_response_output_tokens": ("max_output_tokens",),
}
RESPONSE_PATHS = {
    key: SESSION_PATHS[key]
    for key in ("modalities", "voice", "output_audio_format", "max_response_output_tokens")
}
# Read-only fields a client echoes back from `session.created`; GA has no use for them.
ECHOED_FIELDS = frozenset({"client_secret", "id", "object", "expires_at"})
# A transcription session only ever outputs text, so its beta `modalities` carries nothing.
TRANSCRIPTION_DROPPED = ECHOED_FIELDS | {"modalities"}

# Beta's `text` part is an assistant's output and a user's or system's input.
_INPUT_PARTS = {"text": "input_text"}
PART_TO_GA = {
    "assistant": {"text": "output_text", "audio": "output_audio"},
    "user": _INPUT_PARTS,
    "system": _INPUT_PARTS,
}
PART_TO_BETA = {"output_text": "text", "output_audio": "audio"}
BETA_ITEM_TYPES = frozenset({"message", "function_call", "function_call_output"})

SERVER_RENAMES = {
    "response.output_text.delta": "response.text.delta",
    "response.output_text.done": "response.text.done",
    "response.output_audio.delta": "response.audio.delta",
    "response.output_audio.done": "response.audio.done",
    "response.output_audio_transcript.delta": "response.audio_transcript.delta",
    "response.output_audio_transcript.done": "response.audio_transcript.done",
    "conversation.item.added": "conversation.item.created",
}
# The beta SDK's `RealtimeServerEvent` union; any other GA event is not sent to a beta client
# (`conversation.item.done`, `input_audio_buffer.timeout_triggered`, `mcp_*`, ...).
BETA_SERVER_TYPES = frozenset(
    {
        "conversation.created",
        "conversation.item.created",
        "conversation.item.deleted",
        "conversation.item.input_audio_transcription.completed",
        "conversation.item.input_audio_transcription.delta",
        "conversation.item.input_audio_transcription.failed",
        "conversation.item.retrieved",
        "conversation.item.truncated",
        "error",
        "input_audio_buffer.cleared",
        "input_audio_buffer.committed",
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "rate_limits.updated",
        "response.audio.delta",
        "response.audio.done",
        "response.audio_transcript.delta",
        "response.audio_transcript.done",
        "response.content_part.added",
        "response.content_part.done",
        "response.created",
        "response.done",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.added",
        "response.output_item.done",
        "response.text.delta",
        "response.text.done",
        "session.created",
        "session.updated",
        "transcription_session.updated",
        "output_audio_buffer.started",
        "output_audio_buffer.stopped",
        "output_audio_buffer.cleared",
    }
)
BETA_DEFAULT_TEMPERATURE = 0.8

# --- beta → GA -----------------------------------------------------------------------------


def client_event_to_ga(event: JSON) -> JSON:
    """One beta client event as its GA equivalent (a new dict; events GA shares pass as-is)."""
    kind = event.get("type")
    if kind == "session.update" and isinstance(event.get("session"), dict):
        session = _fields_to_ga(event["session"], SESSION_PATHS, ECHOED_FIELDS)
        return {**event, "session": {"type": "realtime", **session}}
    if kind == "transcription_session.update" and isinstance(event.get("session"), dict):
        session = _fields_to_ga(event["session"], SESSION_PATHS, TRANSCRIPTION_DROPPED)
        return {**event, "type": "session.update", "session": {"type": "transcription", **session}}
    if kind == "conversation.item.create" and "item" in event:
        _check_beta_item(event["item"])
        return {**event, "item": _item_to_ga(event["item"])}
    if kind == "response.create" and isinstance(event.get("response"), dict):
        return {**event, "response": _fields_to_ga(event["response"], RESPONSE_PATHS, frozenset())}
    return event


def _modalities_to_ga(value: Any) -> Any:
    # Beta's ["text", "audio"] means "audio with its transcript": GA's ["audio"].
    if isinstance(value, list) and value and set(value) <= {"text", "audio"}:
        return ["audio"] if "audio" in value else ["text"]
    return value


def _format_to_ga(value: Any) -> Any:
    return dict(FORMAT_TO_GA[value]) if isinstance(value, str) and value in FORMAT_TO_GA else value


def _turn_detection_to_ga(value: Any) -> Any:
    # Beta lets `type` default to server_vad; GA needs it to pick the variant.
    return (
        {"type": "server_vad", **value}
        if isinstance(value, dict) and "type" not in value
        else value
    )


def _tools_to_ga(value: Any) -> Any:
    if not isinstance(value, list):
        return value
    return [
        {"type": "function", **t} if isinstance(t, dict) and "type" not in t else t for t in value
    ]


def _tool_choice_to_ga(value: Any) -> Any:
    # Beta's tool_choice is a string: a mode, or the name of the function to call.
    if isinstance(value, str) and value not in ("auto", "none", "required"):
        return {"type": "function", "name": value}
    return value


def _input_to_ga(value: Any) -> Any:
    return [_item_to_ga(item) for item in value] if isinstance(value, list) else value


VALUES_TO_GA: dict[str, Callable[[Any], Any]] = {
    "modalities": _modalities_to_ga,
    "input_audio_format": _format_to_ga,
    "output_audio_format": _format_to_ga,
    "turn_detection": _turn_detection_to_ga,
    "tools": _tools_to_ga,
    "tool_choice": _tool_choice_to_ga,
    "input": _input_to_ga,
}


def _fields_to_ga(fields: JSON, paths: dict[str, tuple[str, ...]], dropped: frozenset[str]) -> JSON:
    out: JSON = {}
    for key, value in fields.items():
        if key in dropped:
            continue
        convert = VALUES_TO_GA.get(key)
        _put(out, paths.get(key, (key,)), convert(value) if convert else value)
    return out


def _put(target: JSON, path: tuple[str, ...], value: Any) -> None:
    """Set `target[path]`, copying dicts on the way so the client's input is never mutated."""
    *parents, last = path
    for key in parents:
        child = target.get(key)
        target[key] = dict(child) if isinstance(child, dict) else {}
        target = target[key]
    old = target.get(last)
    # A client mixing dialects (`audio: {...}` and `voice`) gets both, whatever the key order.
    if isinstance(old, dict) and isinstance(value, dict):
        value = merge_session_update(old, value)
    target[last] = value


# GA-only shapes a beta client could send but could never be shown (its events lack them).
_GA_ONLY_PARTS = frozenset({"input_image", "output_text", "output_audio"})


def _check_beta_item(item: Any) -> None:
    if isinstance(item, dict) and "type" in item and item["type"] not in BETA_ITEM_TYPES:
        hint = ITEM_SHAPE_HINTS.get(str(item["type"]), ITEM_SHAPE_HINTS["user"])
        raise ProtocolError(
            f"Invalid value: {item['type']!r}. The beta dialect supports the item types: "
            + ", ".join(f"'{t}'" for t in sorted(BETA_ITEM_TYPES))
            + ". "
            + hint,
            INVALID_VALUE,
            "item.type",
        )


def _item_to_ga(item: Any) -> Any:
    if not isinstance(item, dict) or not isinstance(item.get("content"), list):
        return item
    for index, part in enumerate(item["content"]):
        if isinstance(part, dict) and part.get("type") in _GA_ONLY_PARTS:
            raise ProtocolError(
                f"Invalid value: {part['type']!r}. The beta dialect has no such content part; "
                "use 'input_text'/'input_audio' (user, system) or 'text'/'audio' (assistant).",
                INVALID_VALUE,
                f"item.content[{index}].type",
            )
    renames = PART_TO_GA.get(item.get("role", ""), {})
    content = [
        {**part, "type": renames[part["type"]]}
        if isinstance(part, dict) and part.get("type") in renames
        else part
        for part in item["content"]
    ]
    return {**item, "content": content}


# --- GA → beta -----------------------------------------------------------------------------


def server_event_to_beta(event: JSON) -> JSON | None:
    """One GA server event as a beta client expects it, or None when beta has no such event."""
    kind = event.get("type", "")
    session = event.get("session")
    if (
        kind in ("session.created", "session.updated")
        and isinstance(session, dict)
        and session.get("type") == "transcription"
    ):
        # OpenAI sends `transcription_session.created` though the beta SDK union lacks it.
        beta_session = _transcription_to_beta(session)
        return {**event, "type": f"transcription_{kind}", "session": beta_session}
    beta_kind = SERVER_RENAMES.get(kind, kind)
    if beta_kind not in BETA_SERVER_TYPES:
        return None
    out = {**event, "type": beta_kind}
    if isinstance(session, dict):
        out["session"] = _session_to_beta(session)
    if "item" in out:
        out["item"] = _item_to_beta(out["item"])
        if out["item"] is None:
            return None  # an item type beta cannot carry (mcp_*)
    if isinstance(out.get("response"), dict):
        out["response"] = _response_to_beta(out["response"])
    part = out.get("part")
    if isinstance(part, dict) and part.get("type") in PART_TO_BETA:
        out["part"] = {**part, "type": PART_TO_BETA[part["type"]]}
    return out


def _modalities_to_beta(value: Any) -> Any:
    # GA audio output always carries its transcript, which beta spells ["audio", "text"].
    return ["audio", "text"] if value == ["audio"] else value


def _format_to_beta(value: Any) -> Any:
    if not isinstance(value, dict):
        return value
    return FORMAT_TO_BETA.get(value.get("type", ""), value.get("type"))


def _voice_to_beta(value: Any) -> Any:
    # Beta voices are strings; a GA custom voice `{"id": ...}` is named by its id.
    return value.get("id") if isinstance(value, dict) else value


def _tool_choice_to_beta(value: Any) -> Any:
    if isinstance(value, dict) and value.get("type") == "function":
        return value.get("name")
    return value


def _compact(value: Any) -> Any:
    """Drop null fields of a sub-object; beta never had the GA-only ones (idle_timeout_ms…)."""
    return {k: v for k, v in value.items() if v is not None} if isinstance(value, dict) else value


def _session_to_beta(session: JSON) -> JSON:
    audio = session.get("audio") or {}
    audio_in, audio_out = audio.get("input") or {}, audio.get("output") or {}
    temperature = session.get("temperature")
    return {
        "id": session.get("id"),
        "object": "realtime.session",
        "expires_at": session.get("expires_at"),
        "model": session.get("model"),
        "modalities": _modalities_to_beta(session.get("output_modalities")),
        "instructions": session.get("instructions"),
        "voice": _voice_to_beta(audio_out.get("voice")),
        "speed": audio_out.get("speed"),
        "input_audio_format": _format_to_beta(audio_in.get("format")),
        "output_audio_format": _format_to_beta(audio_out.get("format")),
        "input_audio_transcription": _compact(audio_in.get("transcription")),
        "turn_detection": _compact(audio_in.get("turn_detection")),
        "input_audio_noise_reduction": _compact(audio_in.get("noise_reduction")),
        # Beta tools are functions only; MCP tools stay configured but out of its view.
        "tools": [t for t in session.get("tools") or [] if t.get("type") == "function"],
        "tool_choice": _tool_choice_to_beta(session.get("tool_choice")),
        "temperature": BETA_DEFAULT_TEMPERATURE if temperature is None else temperature,
        "max_response_output_tokens": session.get("max_output_tokens"),
        "tracing": session.get("tracing"),
    }


def _transcription_to_beta(session: JSON) -> JSON:
    """`openai.types.beta.realtime.TranscriptionSession`, minus the REST-only client_secret."""
    audio_in = (session.get("audio") or {}).get("input") or {}
    return {
        "id": session.get("id"),
        "object": session.get("object"),
        "expires_at": session.get("expires_at"),
        "input_audio_format": _format_to_beta(audio_in.get("format")),
        "input_audio_transcription": _compact(audio_in.get("transcription")),
        "turn_detection": _compact(audio_in.get("turn_detection")),
        "input_audio_noise_reduction": _compact(audio_in.get("noise_reduction")),
        "include": session.get("include"),
    }


def _item_to_beta(item: Any) -> Any:
    if not isinstance(item, dict):
        return item
    if item.get("type") not in BETA_ITEM_TYPES:
        return None
    if not isinstance(item.get("content"), list):
        return item
    content = [
        {**part, "type": PART_TO_BETA[part["type"]]}
        if isinstance(part, dict) and part.get("type") in PART_TO_BETA
        else part
        for part in item["content"]
    ]
    return {**item, "content": content}


def _response_to_beta(response: JSON) -> JSON:
    out = {k: v for k, v in response.items() if k not in ("output_modalities", "audio")}
    if "output_modalities" in response:
        out["modalities"] = _modalities_to_beta(response["output_modalities"])
    audio_out = (response.get("audio") or {}).get("output") or {}
    if "voice" in audio_out:
        out["voice"] = _voice_to_beta(audio_out["voice"])
    if "format" in audio_out:
        out["output_audio_format"] = _format_to_beta(audio_out["format"])
    if isinstance(response.get("output"), list):
        items = (_item_to_beta(item) for item in response["output"])
        out["output"] = [item for item in items if item is not None]
    return out


# --- whole sessions, for the beta REST endpoints (`POST /v1/realtime/sessions`, ...) --------


def session_to_ga(fields: JSON, *, transcription: bool = False) -> JSON:
    """A beta session object as a GA session with its `type`, translated as the matching
    `session.update` / `transcription_session.update` would be."""
    kind = "transcription_session.update" if transcription else "session.update"
    return dict(client_event_to_ga({"type": kind, "session": fields})["session"])


def session_to_beta(session: JSON) -> JSON:
    """A GA session as the beta dialect shows it (`session.created`'s or the REST answer's)."""
    if session.get("type") == "transcription":
        return _transcription_to_beta(session)
    return _session_to_beta(session)
