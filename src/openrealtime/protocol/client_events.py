"""Typed client events (GA names), discriminated on `type`, and their parser."""

from __future__ import annotations

import itertools
import re
from typing import Annotated, Any, Literal

import orjson
from pydantic import Field, TypeAdapter, ValidationError

from . import errors
from .base import WireModel, deferred_adapter
from .errors import ProtocolError
from .items import ITEM_SHAPE_HINTS, ConversationItem, ItemOrReference
from .session import (
    AnySession,
    MaxOutputTokens,
    Modality,
    OutputModalities,
    Prompt,
    Reasoning,
    Tool,
    ToolChoice,
    VoiceId,
)
from .session import AudioFormatConfig as _AudioFormat


class _ClientEvent(WireModel):
    event_id: str | None = Field(None, max_length=512)


class SessionUpdate(_ClientEvent):
    type: Literal["session.update"]
    session: AnySession


class InputAudioBufferAppend(_ClientEvent):
    type: Literal["input_audio_buffer.append"]
    audio: str


class InputAudioBufferCommit(_ClientEvent):
    type: Literal["input_audio_buffer.commit"]


class InputAudioBufferClear(_ClientEvent):
    type: Literal["input_audio_buffer.clear"]


class ConversationItemCreate(_ClientEvent):
    type: Literal["conversation.item.create"]
    previous_item_id: str | None = None
    item: ConversationItem


class ConversationItemRetrieve(_ClientEvent):
    type: Literal["conversation.item.retrieve"]
    item_id: str


class ConversationItemDelete(_ClientEvent):
    type: Literal["conversation.item.delete"]
    item_id: str


class ConversationItemTruncate(_ClientEvent):
    type: Literal["conversation.item.truncate"]
    item_id: str
    content_index: int = Field(ge=0)
    audio_end_ms: int = Field(ge=0)


class ResponseAudioOutput(WireModel):
    format: _AudioFormat | None = None
    voice: str | VoiceId | None = None


class ResponseAudio(WireModel):
    output: ResponseAudioOutput | None = None


class ResponseParams(WireModel):
    """`response.create`'s `response`: per-response overrides of the session."""

    conversation: Literal["auto", "none"] | str | None = None
    input: list[ItemOrReference] | None = None
    instructions: str | None = None
    output_modalities: OutputModalities | None = None
    audio: ResponseAudio | None = None
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    max_output_tokens: MaxOutputTokens | None = None
    metadata: dict[str, Annotated[str, Field(max_length=512)]] | None = Field(None, max_length=16)
    prompt: Prompt | None = None
    reasoning: Reasoning | None = None


class ResponseCreate(_ClientEvent):
    type: Literal["response.create"]
    response: ResponseParams | None = None


class ResponseCancel(_ClientEvent):
    type: Literal["response.cancel"]
    response_id: str | None = None


class OutputAudioBufferClear(_ClientEvent):
    type: Literal["output_audio_buffer.clear"]


ClientEvent = Annotated[
    SessionUpdate
    | InputAudioBufferAppend
    | InputAudioBufferCommit
    | InputAudioBufferClear
    | ConversationItemCreate
    | ConversationItemRetrieve
    | ConversationItemDelete
    | ConversationItemTruncate
    | ResponseCreate
    | ResponseCancel
    | OutputAudioBufferClear,
    Field(discriminator="type"),
]

_ADAPTER: TypeAdapter[Any] = deferred_adapter(ClientEvent)
EVENT_TYPES: tuple[str, ...] = tuple(
    cls.model_fields["type"].annotation.__args__[0]
    for cls in ClientEvent.__origin__.__args__  # type: ignore[attr-defined]
)
__all__ = [
    "EVENT_TYPES",
    "ClientEvent",
    "Modality",
    "parse_client_dict",
    "parse_client_event",
    "top_level_event_id",
]


# How deep pydantic-core's JSON parser reads (objects and arrays); past it an event is refused.
PARSER_DEPTH = 200


def parse_client_event(raw: str | bytes) -> Any:
    """Parse one client event from JSON text. Raises ProtocolError with an OpenAI-shaped error.

    The fast path validates straight from JSON; only a failure pays for a second parse, which
    gives the error a clean `param` path and the client's `event_id`.
    """
    try:
        return _ADAPTER.validate_json(raw)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        if first["type"] == "json_invalid":  # unparseable, or nested too deep to parse
            if "recursion limit" in first["msg"]:
                raise errors.too_deep(PARSER_DEPTH, top_level_event_id(raw)) from None
            raise errors.invalid_json(first["msg"]) from None
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as json_exc:
            raise errors.invalid_json(json_exc) from None
        raise _explain(exc, data) from None


def parse_client_dict(data: Any) -> Any:
    """Parse an already-decoded event (the beta dialect translates to GA first)."""
    try:
        return _ADAPTER.validate_python(data)
    except ValidationError as exc:
        raise _explain(exc, data) from None


# Past orjson's depth (1024 levels), how much of an event the shallow scan for its id reads:
# bounded, because a regular expression over a whole 21 MiB frame would take seconds.
SCAN_CHARS = 64 * 1024
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')
_EVENT_ID = re.compile(r'"event_id"\s*:\s*("[^"\\]*(?:\\.[^"\\]*)*")')


def top_level_event_id(raw: str | bytes) -> str | None:
    """The `event_id` of an event too deep to validate, so that its error can name it: read
    by orjson (in C, to 1024 levels), or past that found by a shallow scan of the event's
    start for a top-level `"event_id": "..."`."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return _scan_event_id(raw if isinstance(raw, str) else raw.decode("utf-8", "replace"))
    event_id = data.get("event_id") if isinstance(data, dict) else None
    return event_id if isinstance(event_id, str) else None


def _scan_event_id(text: str) -> str | None:
    text = text[:SCAN_CHARS]
    for found in itertools.islice(_EVENT_ID.finditer(text), 8):
        before = _STRING.sub("", text[: found.start()])
        if '"' in before:  # the match is inside a string
            continue
        depth = before.count("{") + before.count("[") - before.count("}") - before.count("]")
        if depth == 1 and before.rstrip()[-1:] in ("{", ","):
            value = orjson.loads(found.group(1))  # a complete JSON string, by the pattern
            return value if isinstance(value, str) else None
    return None


def _explain(exc: ValidationError, data: Any) -> ProtocolError:
    if not isinstance(data, dict):
        return ProtocolError(
            f"Each event must be a JSON object with a 'type', got {errors._describe(data)}.",
            errors.INVALID_EVENT,
        )
    event_id = data.get("event_id") if isinstance(data.get("event_id"), str) else None
    event_type = data.get("type")
    if not isinstance(event_type, str):
        return ProtocolError(
            "Missing required parameter: 'type'.",
            errors.MISSING_PARAMETER,
            "type",
            event_id=event_id,
        )
    if event_type not in EVENT_TYPES:
        return ProtocolError(
            f"Invalid value: '{event_type}'. Supported values are: "
            + ", ".join(f"'{t}'" for t in EVENT_TYPES)
            + ".",
            errors.UNKNOWN_EVENT_TYPE,
            "type",
            event_id=event_id,
        )
    error = errors.from_validation_error(exc, data, event_id=event_id)
    item = data.get("item")
    if error.param == "item.type" and isinstance(item, dict):
        hint = ITEM_SHAPE_HINTS.get(str(item.get("type")))
        error.message += " " + (hint or ITEM_SHAPE_HINTS["user"])
    return error
