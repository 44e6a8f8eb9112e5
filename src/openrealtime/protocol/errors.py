"""Error codes and the conversion of validation failures into OpenAI-shaped error details.

The codes follow what the OpenAI Realtime API sends where it is documented or observed;
openrealtime-specific codes are listed in docs/protocol.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from .session import OPENAI_VOICES

INVALID_REQUEST = "invalid_request_error"
SERVER_ERROR = "server_error"

# Codes.
INVALID_JSON = "invalid_json"
INVALID_EVENT = "invalid_event"
UNKNOWN_EVENT_TYPE = "invalid_value"  # OpenAI reports an unknown `type` as an invalid value.
UNKNOWN_PARAMETER = "unknown_parameter"
MISSING_PARAMETER = "missing_required_parameter"
INVALID_VALUE = "invalid_value"
INVALID_TYPE = "invalid_type"
BINARY_FRAME = "invalid_binary_frame"
ITEM_NOT_FOUND = "item_not_found"
PREVIOUS_ITEM_NOT_FOUND = "previous_item_not_found"
DUPLICATE_ITEM_ID = "item_id_already_exists"
ACTIVE_RESPONSE = "conversation_already_has_active_response"
NO_ACTIVE_RESPONSE = "response_cancel_not_active"
COMMIT_EMPTY = "input_audio_buffer_commit_empty"
INVALID_AUDIO = "invalid_audio"
VOICE_LOCKED = "cannot_update_voice"
NOT_SUPPORTED = "not_supported"
MESSAGE_TOO_LARGE = "message_too_large"
# The server ends the session (then closes the socket): see docs/protocol.md, "Limits".
SESSION_EXPIRED = "session_expired"
SERVER_SHUTTING_DOWN = "server_shutting_down"
SEND_QUEUE_FULL = "send_queue_full"
INVALID_IMAGE = "invalid_image"
IMAGE_TOO_LARGE = "image_too_large"
IMAGE_NOT_SUPPORTED = "image_input_not_supported"


@dataclass(slots=True)
class ProtocolError(Exception):
    """A client mistake; becomes an `error` event and the session goes on."""

    message: str
    code: str = INVALID_VALUE
    param: str | None = None
    type: str = INVALID_REQUEST
    event_id: str | None = None

    def __str__(self) -> str:
        return self.message

    def as_error(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "code": self.code,
            "message": self.message,
            "param": self.param,
            "event_id": self.event_id,
        }


def invalid_json(detail: object) -> ProtocolError:
    return ProtocolError(
        f"The event is not valid JSON: {detail}. Send one JSON object per text frame.",
        INVALID_JSON,
    )


def too_deep(limit: int, event_id: str | None) -> ProtocolError:
    """An event nested past what the parser reads; `event_id` as found by a shallow scan."""
    return ProtocolError(
        f"The event nests objects and arrays deeper than {limit} levels; no event needs "
        "that. Send it flatter.",
        INVALID_JSON,
        event_id=event_id,
    )


def unknown_voice(voice: str, param: str) -> ProtocolError:
    return ProtocolError(
        f"Invalid value: '{voice}'. Supported values are: "
        + ", ".join(f"'{v}'" for v in OPENAI_VOICES)
        + ", or a voice name of the configured speech backend.",
        INVALID_VALUE,
        param,
    )


def unknown_custom_voice(voice_id: str, param: str) -> ProtocolError:
    return ProtocolError(
        f"Custom voice '{voice_id}' is not a voice of this server's speech backend: custom "
        "voices are not stored here, so an id must name a backend voice (or an OpenAI voice "
        "name). Use one of those, or a plain voice name.",
        INVALID_VALUE,
        param,
    )


def _clean_loc(loc: tuple[int | str, ...], data: Any, *, missing: bool) -> list[int | str]:
    """Drop the union tags pydantic puts in `loc`, by walking the client's input along it.

    A part that is not a key of the object at hand is a tag (a discriminated union's, or a
    plain union member's label), except the last part of a `missing` error, which names the
    absent field. Below a scalar, every remaining part is a union label.
    """
    path: list[int | str] = []
    for index, part in enumerate(loc):
        if isinstance(data, dict):
            if part in data:
                data = data[part]
                path.append(part)
            elif missing and index == len(loc) - 1:
                path.append(part)
        elif isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data):
            data = data[part]
            path.append(part)
        else:
            break
    return path


def format_param(path: list[int | str]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


_TYPE_NAMES = {
    "int": "an integer",
    "float": "a decimal",
    "string": "a string",
    "bool": "a boolean",
    "dict": "an object",
    "model": "an object",
    "list": "an array",
}


def _describe(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a decimal"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return "null" if value is None else type(value).__name__


def from_validation_error(
    exc: ValidationError, data: Any, *, event_id: str | None = None, prefix: str = ""
) -> ProtocolError:
    """The first validation failure, phrased the way OpenAI phrases it."""
    err = exc.errors(include_url=False)[0]
    path = _clean_loc(tuple(err["loc"]), data, missing=err["type"] in ("missing",))
    if prefix:
        path = [prefix, *path]
    param = format_param(path) or None
    kind = err["type"]
    value = err.get("input")
    ctx = err.get("ctx") or {}
    if "at" in ctx:  # a model validator's error names the field inside the model it checked
        param = f"{param}.{ctx['at']}" if param else str(ctx["at"])
        code = MISSING_PARAMETER if kind == "content_missing" else INVALID_VALUE
        return ProtocolError(f"Invalid '{param}': {err['msg']}", code, param, event_id=event_id)
    if kind == "extra_forbidden":
        return ProtocolError(
            f"Unknown parameter: '{param}'.", UNKNOWN_PARAMETER, param, event_id=event_id
        )
    if kind == "missing":
        return ProtocolError(
            f"Missing required parameter: '{param}'.", MISSING_PARAMETER, param, event_id=event_id
        )
    if kind in ("literal_error", "enum"):
        return ProtocolError(
            f"Invalid value: {value!r}. Supported values are: {ctx.get('expected')}.",
            INVALID_VALUE,
            param,
            event_id=event_id,
        )
    if kind == "union_tag_invalid":
        tag_param = f"{param}.{str(ctx.get('discriminator', 'type')).strip(chr(39))}"
        return ProtocolError(
            f"Invalid value: '{ctx.get('tag')}'. Supported values are: {ctx.get('expected_tags')}.",
            INVALID_VALUE,
            tag_param,
            event_id=event_id,
        )
    if kind == "union_tag_not_found":
        tag_param = f"{param}.{str(ctx.get('discriminator', 'type')).strip(chr(39))}"
        return ProtocolError(
            f"Missing required parameter: '{tag_param}'.",
            MISSING_PARAMETER,
            tag_param,
            event_id=event_id,
        )
    base = kind.split("_")[0]
    if kind.endswith("_type") or (kind.endswith("_parsing") and base in _TYPE_NAMES):
        expected = _TYPE_NAMES.get(base, base)
        return ProtocolError(
            f"Invalid type for '{param}': expected {expected}, but got {_describe(value)} instead.",
            INVALID_TYPE,
            param,
            event_id=event_id,
        )
    message = str(err["msg"]).removeprefix("Value error, ")
    return ProtocolError(
        f"Invalid value for '{param}': {message}", INVALID_VALUE, param, event_id=event_id
    )
