"""`input_audio_buffer.append` is built without the validator when it holds only its strings:
the event is the one validation builds, and anything else is refused exactly as before."""

from __future__ import annotations

import json
from typing import Any

import pytest

from openrealtime.protocol import client_events
from openrealtime.protocol.beta import client_event_to_ga
from openrealtime.protocol.client_events import (
    InputAudioBufferAppend,
    parse_client_dict,
    parse_client_event,
)
from openrealtime.protocol.errors import ProtocolError

APPEND = "input_audio_buffer.append"


def _validated(text: str) -> Any:
    return client_events._ADAPTER.validate_json(text)


@pytest.mark.parametrize(
    "event",
    [
        {"type": APPEND, "audio": "AAAA"},
        {"type": APPEND, "audio": "AAAA", "event_id": "evt_1"},
        {"event_id": None, "type": APPEND, "audio": ""},
        {"audio": "AAAA", "type": APPEND},
        {"event_id": "e" * 512, "type": APPEND, "audio": "AAAA"},
    ],
)
def test_a_plain_append_is_the_event_validation_builds(event: dict[str, Any]) -> None:
    text = json.dumps(event)
    expected = _validated(text)
    for parsed in (parse_client_event(text), parse_client_dict(event)):
        assert type(parsed) is InputAudioBufferAppend
        assert parsed == expected
        assert parsed.model_fields_set == expected.model_fields_set
        assert parsed.model_dump(exclude_unset=True) == expected.model_dump(exclude_unset=True)
    assert client_events._plain_append(event) is not None  # not by the validator


@pytest.mark.parametrize(
    ("event", "param"),
    [
        ({"type": APPEND, "audio": "AAAA", "extra": 1}, "extra"),
        ({"type": APPEND, "audio": 5}, "audio"),
        ({"type": APPEND}, "audio"),
        ({"type": APPEND, "audio": "AAAA", "event_id": 7}, "event_id"),
        ({"type": APPEND, "audio": "AAAA", "event_id": "e" * 513}, "event_id"),
    ],
)
def test_anything_else_is_refused_by_validation_as_before(
    event: dict[str, Any], param: str
) -> None:
    assert client_events._plain_append(event) is None
    for parse in (lambda: parse_client_event(json.dumps(event)), lambda: parse_client_dict(event)):
        with pytest.raises(ProtocolError) as refused:
            parse()
        assert refused.value.param == param, refused.value


def test_a_beta_append_takes_the_same_path() -> None:
    event = {"type": APPEND, "audio": "AAAA", "event_id": "evt_2"}
    parsed = parse_client_dict(client_event_to_ga(dict(event)))
    assert parsed == _validated(json.dumps(event))
