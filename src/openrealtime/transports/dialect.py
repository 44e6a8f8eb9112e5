"""The two wire dialects. The core speaks GA; beta (`OpenAI-Beta: realtime=v1`) is translated
here, at the edge, in both directions."""

from __future__ import annotations

from typing import Any, Protocol

import orjson

from ..protocol import errors
from ..protocol.beta import client_event_to_ga, server_event_to_beta
from ..protocol.client_events import parse_client_dict, parse_client_event
from ..protocol.errors import ProtocolError


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
        return orjson.dumps(event).decode()


class Beta:
    name = "beta"

    def parse(self, raw: str | bytes) -> Any:
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise ProtocolError(
                f"The event is not valid JSON: {exc}. Send one JSON object per text frame.",
                errors.INVALID_JSON,
            ) from None
        return parse_client_dict(client_event_to_ga(data) if isinstance(data, dict) else data)

    def encode(self, event: dict[str, Any]) -> str | None:
        translated = server_event_to_beta(event)
        return None if translated is None else orjson.dumps(translated).decode()


def choose_dialect(headers: dict[str, str], subprotocols: list[str]) -> Dialect:
    beta = (
        "realtime=v1" in headers.get("openai-beta", "") or "openai-beta.realtime-v1" in subprotocols
    )
    return Beta() if beta else GA()
