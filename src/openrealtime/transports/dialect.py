"""The two wire dialects. The core speaks GA; beta (`OpenAI-Beta: realtime=v1`) is translated
here, at the edge, in both directions."""

from __future__ import annotations

import contextlib
import json
from typing import Any, Protocol

import orjson

from ..protocol import errors
from ..protocol.beta import client_event_to_ga, server_event_to_beta
from ..protocol.client_events import parse_client_dict, parse_client_event, top_level_event_id


class Dialect(Protocol):
    name: str

    def parse(self, raw: str | bytes) -> Any:
        """A typed GA client event; raises ProtocolError."""
        ...

    def encode(self, event: dict[str, Any]) -> str | None:
        """The JSON text to send, or None when this dialect has no such event."""
        ...


class GA:
    name = "ga"

    def parse(self, raw: str | bytes) -> Any:
        return parse_client_event(raw)

    def encode(self, event: dict[str, Any]) -> str | None:
        return _encode(event)


class Beta:
    name = "beta"

    def parse(self, raw: str | bytes) -> Any:
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            if "depth limit" in str(exc):  # orjson stops at 1024 levels, far past ours
                raise errors.too_deep(MAX_DEPTH, top_level_event_id(raw)) from None
            raise errors.invalid_json(exc) from None
        if not nesting_within(data, MAX_DEPTH):
            event_id = data.get("event_id") if isinstance(data, dict) else None
            raise errors.too_deep(MAX_DEPTH, event_id if isinstance(event_id, str) else None)
        if isinstance(data, dict):
            # A value of the wrong JSON type where the translation expected another: GA
            # validation of the untranslated event then names the field.
            with contextlib.suppress(TypeError, ValueError, AttributeError):
                data = client_event_to_ga(data)
        return parse_client_dict(data)

    def encode(self, event: dict[str, Any]) -> str | None:
        translated = server_event_to_beta(event)
        return None if translated is None else _encode(translated)


# Deeper than any real event. GA events are read to the JSON parser's own limit
# (client_events.PARSER_DEPTH, 200); both are in docs/protocol.md, "Limits".
MAX_DEPTH = 64


def nesting_within(data: Any, limit: int) -> bool:
    """Whether `data` nests at most `limit` levels (iteratively: no recursion to exhaust)."""
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            children: Any = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        if depth > limit:
            return False
        stack.extend((child, depth + 1) for child in children)
    return True


def _encode(event: dict[str, Any]) -> str:
    try:
        return orjson.dumps(event).decode()
    except TypeError:
        # orjson refuses integers past 64 bits, which JSON (and so a client) may send.
        return json.dumps(event, separators=(",", ":"))


def choose_dialect(headers: dict[str, str], subprotocols: list[str]) -> Dialect:
    beta = (
        "realtime=v1" in headers.get("openai-beta", "") or "openai-beta.realtime-v1" in subprotocols
    )
    return Beta() if beta else GA()
