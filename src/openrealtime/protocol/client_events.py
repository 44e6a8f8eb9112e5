"""Typed client events (GA names), discriminated on `type`, and their parser."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import orjson
from pydantic import Field, TypeAdapter, ValidationError

from . import errors
from .base import WireModel
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

_ADAPTER: TypeAdapter[Any] = TypeAdapter(ClientEvent)
EVENT_TYPES: tuple[str, ...] = tuple(
    cls.model_fields["type"].annotation.__args__[0]
    for cls in ClientEvent.__origin__.__args__  # type: ignore[attr-defined]
)
__all__ = ["EVENT_TYPES", "ClientEvent", "Modality", "parse_client_dict", "parse_client_event"]


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
