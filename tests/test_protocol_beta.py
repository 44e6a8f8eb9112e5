"""The beta dialect: beta client events parse as GA; GA server events validate as beta.

The beta reference is the `openai` SDK's `types/beta/realtime`. Its models allow extra fields,
so every test also asserts on the values that matter, not only that validation passes.
"""

from __future__ import annotations

import base64
import copy
from typing import Any

import orjson
import pytest
from conftest import WEATHER_TOOL
from openai.types.beta.realtime import (
    RealtimeServerEvent,
    ResponseDoneEvent,
    ResponseTextDeltaEvent,
    TranscriptionSession,
)
from openai.types.beta.realtime.session_updated_event import SessionUpdatedEvent
from pydantic import TypeAdapter

from openrealtime.backends.llm.base import Finished, TextDelta, ToolCallDelta, Usage
from openrealtime.core.effects import GenerateResponse
from openrealtime.core.session import Session
from openrealtime.protocol import client_events as ce
from openrealtime.protocol.beta import SERVER_RENAMES, client_event_to_ga, server_event_to_beta
from openrealtime.protocol.client_events import parse_client_dict, parse_client_event
from openrealtime.protocol.errors import ProtocolError
from openrealtime.protocol.session import (
    RealtimeSession,
    merge_session_update,
)
from openrealtime.protocol.session import (
    TranscriptionSession as GaTranscriptionSession,
)

BETA_EVENT: TypeAdapter[Any] = TypeAdapter(RealtimeServerEvent)
GA_ONLY_TYPES = set(SERVER_RENAMES) | {"conversation.item.done"}


def to_ga(event: dict[str, Any]) -> Any:
    return parse_client_dict(client_event_to_ga(event))


# --- beta client events → GA -----------------------------------------------------------------

FULL_BETA_SESSION = {
    "modalities": ["text", "audio"],
    "instructions": "Be brief.",
    "voice": "verse",
    "speed": 1.2,
    "input_audio_format": "g711_ulaw",
    "output_audio_format": "g711_alaw",
    "input_audio_transcription": {"model": "whisper-1", "language": "en", "prompt": "names"},
    "turn_detection": {
        "type": "server_vad",
        "threshold": 0.6,
        "prefix_padding_ms": 200,
        "silence_duration_ms": 700,
        "create_response": False,
        "interrupt_response": False,
    },
    "input_audio_noise_reduction": {"type": "far_field"},
    "tools": [WEATHER_TOOL],
    "tool_choice": "required",
    "temperature": 0.7,
    "max_response_output_tokens": 300,
    "tracing": {"workflow_name": "w", "group_id": "g", "metadata": {"k": "v"}},
    "model": "gpt-4o-realtime-preview",
    # Echoed back from session.created by some clients.
    "id": "sess_x",
    "object": "realtime.session",
    "expires_at": 123,
    "client_secret": {"expires_after": {"anchor": "created_at", "seconds": 60}},
}


def test_session_update_with_every_beta_field():
    event = to_ga({"type": "session.update", "event_id": "e1", "session": FULL_BETA_SESSION})
    assert isinstance(event, ce.SessionUpdate) and event.event_id == "e1"
    s = event.session.model_dump(mode="json", exclude_unset=True)
    assert s["type"] == "realtime"
    assert s["output_modalities"] == ["audio"]
    assert s["instructions"] == "Be brief."
    assert s["audio"]["output"] == {
        "voice": "verse",
        "speed": 1.2,
        "format": {"type": "audio/pcma"},
    }
    audio_in = s["audio"]["input"]
    assert audio_in["format"] == {"type": "audio/pcmu"}
    assert audio_in["transcription"] == {"model": "whisper-1", "language": "en", "prompt": "names"}
    assert audio_in["turn_detection"]["type"] == "server_vad"
    assert audio_in["turn_detection"]["silence_duration_ms"] == 700
    assert audio_in["turn_detection"]["create_response"] is False
    assert audio_in["noise_reduction"] == {"type": "far_field"}
    assert s["tools"][0]["name"] == "get_weather"
    assert s["tool_choice"] == "required"
    assert s["temperature"] == 0.7
    assert s["max_output_tokens"] == 300
    assert s["tracing"]["workflow_name"] == "w"
    assert s["model"] == "gpt-4o-realtime-preview"
    assert not {"id", "object", "expires_at", "client_secret"} & set(s)


@pytest.mark.parametrize(
    ("beta", "ga"),
    [
        ({"modalities": ["text"]}, {"output_modalities": ["text"]}),
        ({"modalities": ["audio", "text"]}, {"output_modalities": ["audio"]}),
        (
            {"input_audio_format": "pcm16"},
            {"audio": {"input": {"format": {"type": "audio/pcm", "rate": 24000}}}},
        ),
        ({"turn_detection": None}, {"audio": {"input": {"turn_detection": None}}}),
        ({"input_audio_transcription": None}, {"audio": {"input": {"transcription": None}}}),
        ({"input_audio_noise_reduction": None}, {"audio": {"input": {"noise_reduction": None}}}),
        (
            {"turn_detection": {"type": "semantic_vad", "eagerness": "high"}},
            {"audio": {"input": {"turn_detection": {"type": "semantic_vad", "eagerness": "high"}}}},
        ),
        # Beta's turn_detection `type` defaults to server_vad.
        (
            {"turn_detection": {"silence_duration_ms": 900}},
            {
                "audio": {
                    "input": {"turn_detection": {"type": "server_vad", "silence_duration_ms": 900}}
                }
            },
        ),
        ({"max_response_output_tokens": "inf"}, {"max_output_tokens": "inf"}),
        # Beta tools may leave out `type`; a string tool_choice may name a function.
        (
            {"tools": [{"name": "f"}], "tool_choice": "f"},
            {
                "tools": [{"type": "function", "name": "f"}],
                "tool_choice": {"type": "function", "name": "f"},
            },
        ),
        ({"tracing": "auto"}, {"tracing": "auto"}),
    ],
)
def test_session_update_fields(beta: dict[str, Any], ga: dict[str, Any]):
    event = to_ga({"type": "session.update", "session": beta})
    assert event.session.model_dump(mode="json", exclude_unset=True) == {"type": "realtime", **ga}


def test_mixed_dialect_fields_merge_and_input_is_not_mutated():
    beta = {"voice": "ash", "audio": {"output": {"speed": 1.1}}}
    before = copy.deepcopy(beta)
    ga = client_event_to_ga({"type": "session.update", "session": beta})
    assert ga["session"]["audio"]["output"] == {"speed": 1.1, "voice": "ash"}
    assert beta == before


def test_unknown_beta_fields_reach_ga_validation():
    with pytest.raises(ProtocolError) as info:
        to_ga({"type": "session.update", "session": {"voice": "ash", "bogus": 1}})
    assert info.value.code == "unknown_parameter"
    assert info.value.param == "session.bogus"
    with pytest.raises(ProtocolError) as info:
        to_ga({"type": "session.update", "session": {"input_audio_format": "pcm8"}})
    assert info.value.param is not None and info.value.param.startswith(
        "session.audio.input.format"
    )


def test_transcription_session_update():
    event = to_ga(
        {
            "type": "transcription_session.update",
            "event_id": "e2",
            "session": {
                "input_audio_format": "g711_alaw",
                "input_audio_transcription": {"model": "gpt-4o-transcribe", "language": "de"},
                "turn_detection": {"type": "server_vad", "silence_duration_ms": 400},
                "input_audio_noise_reduction": {"type": "near_field"},
                "include": ["item.input_audio_transcription.logprobs"],
                "modalities": ["text"],
                "client_secret": {"expires_at": {"anchor": "created_at", "seconds": 60}},
            },
        }
    )
    assert isinstance(event, ce.SessionUpdate) and event.event_id == "e2"
    assert event.session.model_dump(mode="json", exclude_unset=True) == {
        "type": "transcription",
        "audio": {
            "input": {
                "format": {"type": "audio/pcma"},
                "transcription": {"model": "gpt-4o-transcribe", "language": "de"},
                "turn_detection": {"type": "server_vad", "silence_duration_ms": 400},
                "noise_reduction": {"type": "near_field"},
            }
        },
        "include": ["item.input_audio_transcription.logprobs"],
    }


BETA_ITEMS = [
    # (beta item, GA content types after translation)
    (
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]},
        ["input_text"],
    ),
    (
        {"type": "message", "role": "user", "content": [{"type": "text", "text": "hi"}]},
        ["input_text"],
    ),
    (
        {
            "type": "message",
            "role": "user",
            "content": [{"type": "input_audio", "audio": "AAAA", "transcript": "hi"}],
        },
        ["input_audio"],
    ),
    (
        {"type": "message", "role": "system", "content": [{"type": "input_text", "text": "rules"}]},
        ["input_text"],
    ),
    (
        {"type": "message", "role": "assistant", "content": [{"type": "text", "text": "hello"}]},
        ["output_text"],
    ),
    (
        {
            "type": "message",
            "role": "assistant",
            "content": [{"type": "audio", "transcript": "hello"}],
        },
        ["output_audio"],
    ),
    (
        {
            "id": "item_1",
            "object": "realtime.item",
            "status": "completed",
            "type": "message",
            "role": "assistant",
            "content": [{"type": "text", "text": "a"}, {"type": "audio", "transcript": "b"}],
        },
        ["output_text", "output_audio"],
    ),
    ({"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"}, None),
    (
        {
            "type": "function_call_output",
            "call_id": "c1",
            "output": "42",
            "object": "realtime.item",
        },
        None,
    ),
]


@pytest.mark.parametrize(("item", "content_types"), BETA_ITEMS)
def test_conversation_item_create(item: dict[str, Any], content_types: list[str] | None):
    event = to_ga({"type": "conversation.item.create", "previous_item_id": "root", "item": item})
    assert isinstance(event, ce.ConversationItemCreate)
    assert event.previous_item_id == "root"
    assert event.item.type == item["type"]
    if content_types is not None:
        assert [part.type for part in event.item.content] == content_types
    if "status" in item:
        assert event.item.status == item["status"] and event.item.object == "realtime.item"


def test_beta_item_reference_content_part_is_left_for_ga_to_refuse():
    item = {
        "type": "message",
        "role": "user",
        "content": [{"type": "item_reference", "id": "item_1"}],
    }
    with pytest.raises(ProtocolError):
        to_ga({"type": "conversation.item.create", "item": item})


def test_response_create_with_overrides():
    event = to_ga(
        {
            "type": "response.create",
            "response": {
                "modalities": ["text"],
                "voice": "coral",
                "output_audio_format": "g711_ulaw",
                "max_response_output_tokens": 64,
                "instructions": "Shout.",
                "tools": [WEATHER_TOOL],
                "tool_choice": "auto",
                "temperature": 0.9,
                "conversation": "none",
                "metadata": {"topic": "x"},
                "input": [
                    {"type": "item_reference", "id": "item_1"},
                    {
                        "type": "message",
                        "role": "assistant",
                        "content": [{"type": "text", "text": "yo"}],
                    },
                    {
                        "type": "message",
                        "role": "user",
                        "content": [{"type": "input_text", "text": "hi"}],
                    },
                ],
            },
        }
    )
    r = event.response
    assert r.output_modalities == ["text"]
    assert r.audio.output.voice == "coral"
    assert r.audio.output.format.type == "audio/pcmu"
    assert r.max_output_tokens == 64
    assert r.instructions == "Shout." and r.tool_choice == "auto" and r.temperature == 0.9
    assert r.conversation == "none" and r.metadata == {"topic": "x"}
    assert r.tools[0].name == "get_weather"
    assert [i.type for i in r.input] == ["item_reference", "message", "message"]
    assert r.input[0].id == "item_1"
    assert r.input[1].content[0].type == "output_text"


@pytest.mark.parametrize(
    "event",
    [
        {"type": "input_audio_buffer.append", "audio": "AAAA"},
        {"type": "input_audio_buffer.commit"},
        {"type": "input_audio_buffer.clear"},
        {"type": "conversation.item.retrieve", "item_id": "i"},
        {"type": "conversation.item.delete", "item_id": "i"},
        {
            "type": "conversation.item.truncate",
            "item_id": "i",
            "content_index": 0,
            "audio_end_ms": 10,
        },
        {"type": "response.cancel"},
        {"type": "response.create"},
        {"type": "output_audio_buffer.clear"},
    ],
)
def test_shared_events_pass_through(event: dict[str, Any]):
    assert client_event_to_ga(event) == event
    assert parse_client_dict(client_event_to_ga(event)).type == event["type"]


# --- GA sessions → beta and back -----------------------------------------------------------

GA_SESSIONS = {
    "default": RealtimeSession(id="sess_1"),
    "g711": RealtimeSession.model_validate(
        {
            "audio": {
                "input": {"format": {"type": "audio/pcmu"}},
                "output": {"format": {"type": "audio/pcma"}},
            }
        }
    ),
    "semantic_vad": RealtimeSession.model_validate(
        {"audio": {"input": {"turn_detection": {"type": "semantic_vad", "eagerness": "high"}}}}
    ),
    "text_no_vad": RealtimeSession.model_validate(
        {"output_modalities": ["text"], "audio": {"input": {"turn_detection": None}}}
    ),
    "transcription": RealtimeSession.model_validate(
        {
            "audio": {
                "input": {
                    "transcription": {"model": "whisper-1", "language": "en"},
                    "noise_reduction": {"type": "near_field"},
                }
            }
        }
    ),
    "tools": RealtimeSession.model_validate(
        {
            "tools": [WEATHER_TOOL],
            "tool_choice": {"type": "function", "name": "get_weather"},
            "temperature": 0.6,
            "max_output_tokens": 1000,
            "tracing": "auto",
            "instructions": "Be terse.",
            "audio": {"output": {"voice": "verse", "speed": 1.25}},
        }
    ),
}


def beta_session_of(ga: RealtimeSession) -> dict[str, Any]:
    wire = ga.model_dump(mode="json")
    beta = server_event_to_beta({"type": "session.updated", "event_id": "ev_1", "session": wire})
    assert beta is not None and beta["type"] == "session.updated"
    SessionUpdatedEvent.model_validate(beta)
    assert isinstance(BETA_EVENT.validate_python(beta), SessionUpdatedEvent)
    return beta["session"]  # type: ignore[no-any-return]


@pytest.mark.parametrize("name", GA_SESSIONS)
def test_ga_session_to_beta_and_back(name: str):
    ga = GA_SESSIONS[name]
    beta = beta_session_of(ga)
    # Only names the beta Session type knows (plus `object` and `expires_at`, which OpenAI sends).
    known = set(SessionUpdatedEvent.model_fields["session"].annotation.model_fields)
    assert set(beta) <= known | {"object", "expires_at"}

    # beta → GA through the real core gives the same effective configuration.
    core = Session(ga.model_copy(deep=True), session_id=ga.id)
    before = core.session_wire()
    core.handle(to_ga({"type": "session.update", "session": beta}))
    (updated,) = core.drain()
    assert updated["type"] == "session.updated"
    after = core.session_wire()
    if before["temperature"] is None:
        assert after["temperature"] == 0.8  # beta always shows one; 0.8 is its default
        after["temperature"] = None
    assert after == before


def test_beta_session_values():
    default = beta_session_of(GA_SESSIONS["default"])
    assert default["id"] == "sess_1" and default["object"] == "realtime.session"
    assert default["model"] == "gpt-realtime"
    assert default["modalities"] == ["audio", "text"]
    assert default["voice"] == "alloy" and default["speed"] == 1.0
    assert default["input_audio_format"] == default["output_audio_format"] == "pcm16"
    assert default["input_audio_transcription"] is None
    assert default["input_audio_noise_reduction"] is None
    assert default["turn_detection"] == {
        "type": "server_vad",
        "threshold": 0.5,
        "prefix_padding_ms": 300,
        "silence_duration_ms": 500,
        "create_response": True,
        "interrupt_response": True,
    }
    assert default["temperature"] == 0.8
    assert default["max_response_output_tokens"] == "inf"
    assert default["tools"] == [] and default["tool_choice"] == "auto"
    assert not {"type", "audio", "output_modalities", "max_output_tokens", "truncation"} & set(
        default
    )

    g711 = beta_session_of(GA_SESSIONS["g711"])
    assert (g711["input_audio_format"], g711["output_audio_format"]) == ("g711_ulaw", "g711_alaw")
    assert beta_session_of(GA_SESSIONS["semantic_vad"])["turn_detection"] == {
        "type": "semantic_vad",
        "eagerness": "high",
        "create_response": True,
        "interrupt_response": True,
    }
    text = beta_session_of(GA_SESSIONS["text_no_vad"])
    assert text["modalities"] == ["text"] and text["turn_detection"] is None
    transcription = beta_session_of(GA_SESSIONS["transcription"])
    assert transcription["input_audio_transcription"] == {"model": "whisper-1", "language": "en"}
    assert transcription["input_audio_noise_reduction"] == {"type": "near_field"}
    tools = beta_session_of(GA_SESSIONS["tools"])
    assert tools["tools"][0]["name"] == "get_weather" and tools["tools"][0]["type"] == "function"
    assert tools["tool_choice"] == "get_weather"
    assert (tools["temperature"], tools["max_response_output_tokens"]) == (0.6, 1000)
    assert (tools["voice"], tools["speed"], tools["tracing"]) == ("verse", 1.25, "auto")
    assert tools["instructions"] == "Be terse."


def test_beta_session_hides_what_beta_cannot_express():
    ga = RealtimeSession.model_validate(
        {
            "tools": [
                WEATHER_TOOL,
                {"type": "mcp", "server_label": "srv", "server_url": "http://x"},
            ],
            "audio": {"output": {"voice": {"id": "voice_123"}}},
        }
    )
    beta = beta_session_of(ga)
    assert [t["name"] for t in beta["tools"]] == ["get_weather"]
    assert beta["voice"] == "voice_123"


@pytest.mark.parametrize("kind", ["session.created", "session.updated"])
def test_ga_transcription_session_to_beta_and_back(kind: str):
    ga = GaTranscriptionSession.model_validate(
        {
            "id": "sess_t",
            "audio": {
                "input": {
                    "format": {"type": "audio/pcmu"},
                    "transcription": {"model": "whisper-1", "language": "fr"},
                    "noise_reduction": {"type": "far_field"},
                }
            },
            "include": ["item.input_audio_transcription.logprobs"],
        }
    ).model_dump(mode="json")
    beta = server_event_to_beta({"type": kind, "event_id": "ev_t", "session": ga})
    assert beta is not None
    assert beta["type"] == "transcription_" + kind
    session = beta["session"]
    assert session["input_audio_format"] == "g711_ulaw"
    assert session["input_audio_transcription"] == {"model": "whisper-1", "language": "fr"}
    assert session["turn_detection"]["type"] == "server_vad"
    assert session["input_audio_noise_reduction"] == {"type": "far_field"}
    assert session["object"] == "realtime.transcription_session" and session["id"] == "sess_t"
    # The SDK type requires `client_secret`, which OpenAI sends only from the REST endpoint.
    assert "client_secret" not in session
    TranscriptionSession.model_validate(
        {**session, "client_secret": {"expires_at": 0, "value": "-"}}
    )
    if kind == "session.updated":
        BETA_EVENT.validate_python(
            {**beta, "session": {**session, "client_secret": {"expires_at": 0, "value": "-"}}}
        )

    back = to_ga({"type": "transcription_session.update", "session": session})
    update = back.session.model_dump(mode="json", exclude_unset=True)
    assert merge_session_update(ga, update) == ga


# --- the real core's event stream, as a beta client sees it --------------------------------


class BetaHarness:
    """A core session driven with beta client events; its output collected in both dialects."""

    def __init__(self) -> None:
        self.core = Session()
        self.core.open()
        self.ga: list[dict[str, Any]] = []
        self.beta: list[dict[str, Any]] = []
        self.generations: list[GenerateResponse] = []
        self._collect()

    def send(self, beta_event: dict[str, Any]) -> None:
        raw = orjson.dumps(client_event_to_ga(beta_event))
        self.core.handle(parse_client_event(raw))
        self._collect()

    def llm(self, *events: Any) -> None:
        response_id = self.generations[-1].response_id
        for event in events:
            self.core.on_llm_event(response_id, event)
        self._collect()

    def _collect(self) -> None:
        for out in self.core.drain():
            if not isinstance(out, dict):
                if isinstance(out, GenerateResponse):
                    self.generations.append(out)
                continue
            self.ga.append(out)
            beta = server_event_to_beta(out)
            if beta is not None:
                model = BETA_EVENT.validate_python(beta)
                assert model.type == beta["type"]
                self.beta.append(beta)

    def types(self) -> list[str]:
        return [e["type"] for e in self.beta]

    def one(self, type_: str) -> dict[str, Any]:
        (event,) = [e for e in self.beta if e["type"] == type_]
        return event


def test_text_turn_as_beta():
    h = BetaHarness()
    h.send({"type": "session.update", "session": {"modalities": ["text"], "instructions": "Hi."}})
    h.send(
        {
            "type": "conversation.item.create",
            "item": {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "hello"}],
            },
        }
    )
    h.send({"type": "response.create"})
    h.llm(TextDelta("hi"), TextDelta(" there"), Finished("stop", Usage(12, 2)))

    types = h.types()
    assert types == [
        "session.created",
        "session.updated",
        "conversation.item.created",  # the user's item
        "response.created",
        "response.output_item.added",
        "conversation.item.created",  # the assistant's item
        "response.content_part.added",
        "response.text.delta",
        "response.text.delta",
        "response.text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.done",
    ]
    assert not GA_ONLY_TYPES & set(types)
    assert "conversation.item.done" in {e["type"] for e in h.ga}  # dropped, not missing

    assert h.one("session.updated")["session"]["modalities"] == ["text"]
    user_item = h.beta[2]["item"]
    assert user_item["role"] == "user" and user_item["content"][0] == {
        "type": "input_text",
        "text": "hello",
    }
    assert h.one("response.created")["response"]["modalities"] == ["text"]
    assert h.one("response.content_part.added")["part"] == {"type": "text", "text": ""}
    deltas = [BETA_EVENT.validate_python(e) for e in h.beta if e["type"] == "response.text.delta"]
    assert all(isinstance(d, ResponseTextDeltaEvent) for d in deltas)
    assert [d.delta for d in deltas] == ["hi", " there"]
    assert h.one("response.text.done")["text"] == "hi there"
    assert h.one("response.content_part.done")["part"] == {"type": "text", "text": "hi there"}
    item = h.one("response.output_item.done")["item"]
    assert item["status"] == "completed" and item["content"] == [
        {"type": "text", "text": "hi there"}
    ]

    done = BETA_EVENT.validate_python(h.one("response.done"))
    assert isinstance(done, ResponseDoneEvent)
    assert done.response.status == "completed" and done.response.modalities == ["text"]
    assert done.response.output_audio_format == "pcm16" and done.response.voice == "alloy"
    assert done.response.output[0].content[0].type == "text"
    assert done.response.output[0].content[0].text == "hi there"
    assert done.response.usage.input_tokens == 12 and done.response.usage.output_tokens == 2
    assert done.response.conversation_id.startswith("conv_")


def test_tool_call_turn_as_beta():
    h = BetaHarness()
    h.send({"type": "session.update", "session": {"modalities": ["text"], "tools": [WEATHER_TOOL]}})
    h.send({"type": "response.create", "response": {"tool_choice": "get_weather"}})
    h.llm(
        ToolCallDelta(0, "call_1", "get_weather", '{"city":'),
        ToolCallDelta(0, arguments=' "Paris"}'),
        Finished("tool_calls"),
    )
    assert h.generations[-1].request.forced_function == "get_weather"
    assert h.one("session.updated")["session"]["tools"][0]["name"] == "get_weather"
    deltas = [e["delta"] for e in h.beta if e["type"] == "response.function_call_arguments.delta"]
    assert deltas == ['{"city":', ' "Paris"}']
    args_done = h.one("response.function_call_arguments.done")
    assert (args_done["call_id"], args_done["name"]) == ("call_1", "get_weather")
    assert args_done["arguments"] == '{"city": "Paris"}'
    item = h.one("response.output_item.done")["item"]
    assert item["type"] == "function_call" and item["status"] == "completed"
    assert item["arguments"] == '{"city": "Paris"}' and item["call_id"] == "call_1"
    done = h.one("response.done")["response"]
    assert done["status"] == "completed" and done["output"][0]["name"] == "get_weather"

    # The result goes back as a beta item; the next turn answers in text.
    h.send(
        {
            "type": "conversation.item.create",
            "item": {"type": "function_call_output", "call_id": "call_1", "output": '{"temp": 21}'},
        }
    )
    created = [e for e in h.beta if e["type"] == "conversation.item.created"][-1]
    assert created["item"]["type"] == "function_call_output"
    assert created["previous_item_id"] == item["id"]
    h.send({"type": "response.create"})
    h.llm(TextDelta("21 degrees."), Finished())
    assert [e["delta"] for e in h.beta if e["type"] == "response.text.delta"] == ["21 degrees."]
    assert not GA_ONLY_TYPES & set(h.types())


def test_audio_turn_as_beta():
    h = BetaHarness()  # default session: audio out
    h.send(
        {
            "type": "response.create",
            "response": {"voice": "ash", "output_audio_format": "g711_ulaw"},
        }
    )
    response_id = h.generations[-1].response_id
    h.llm(TextDelta("hello"))
    h.core.on_response_audio(response_id, b"\xff" * 80, 10.0)
    h.llm(Finished())
    h.core.on_response_audio_done(response_id)
    h._collect()

    created = h.one("response.created")["response"]
    assert created["modalities"] == ["audio", "text"]
    assert (created["voice"], created["output_audio_format"]) == ("ash", "g711_ulaw")
    assert h.one("response.content_part.added")["part"] == {"type": "audio", "transcript": ""}
    assert h.one("response.audio_transcript.delta")["delta"] == "hello"
    assert base64.b64decode(h.one("response.audio.delta")["delta"]) == b"\xff" * 80
    assert h.one("response.audio_transcript.done")["transcript"] == "hello"
    assert "response.audio.done" in h.types()
    item = h.one("response.output_item.done")["item"]
    assert item["content"] == [{"type": "audio", "transcript": "hello"}]
    assert h.one("response.done")["response"]["output"][0]["content"][0]["type"] == "audio"
    assert not GA_ONLY_TYPES & set(h.types())


def test_cancel_retrieve_delete_and_errors_as_beta():
    h = BetaHarness()
    h.send({"type": "response.cancel"})
    error = h.beta[-1]
    assert error["type"] == "error" and error["error"]["code"] == "response_cancel_not_active"

    h.send({"type": "response.create", "response": {"modalities": ["text"]}})
    h.llm(TextDelta("partial"))
    h.send({"type": "response.cancel"})
    done = h.one("response.done")["response"]
    assert done["status"] == "cancelled"
    assert done["status_details"] == {"type": "cancelled", "reason": "client_cancelled"}
    assert done["output"][0]["status"] == "incomplete"

    item_id = done["output"][0]["id"]
    h.send({"type": "conversation.item.retrieve", "item_id": item_id})
    retrieved = h.one("conversation.item.retrieved")["item"]
    assert retrieved["id"] == item_id and retrieved["content"][0]["type"] == "text"
    h.send({"type": "conversation.item.delete", "item_id": item_id})
    assert h.one("conversation.item.deleted")["item_id"] == item_id
    h.send(
        {
            "type": "conversation.item.truncate",
            "item_id": item_id,
            "content_index": 0,
            "audio_end_ms": 0,
        }
    )
    assert h.beta[-1]["type"] == "error"


# --- GA events beta has no counterpart for ------------------------------------------------


@pytest.mark.parametrize(
    "event",
    [
        {
            "type": "conversation.item.done",
            "event_id": "e",
            "previous_item_id": None,
            "item": {"type": "message"},
        },
        {
            "type": "input_audio_buffer.timeout_triggered",
            "event_id": "e",
            "audio_start_ms": 0,
            "audio_end_ms": 1,
            "item_id": "i",
        },
        {
            "type": "conversation.item.input_audio_transcription.segment",
            "event_id": "e",
            "item_id": "i",
        },
        {"type": "mcp_list_tools.in_progress", "event_id": "e", "item_id": "i"},
        {
            "type": "conversation.item.added",
            "event_id": "e",
            "previous_item_id": None,
            "item": {
                "type": "mcp_approval_response",
                "id": "i",
                "approval_request_id": "a",
                "approve": True,
            },
        },
    ],
)
def test_ga_only_events_are_not_sent(event: dict[str, Any]):
    assert server_event_to_beta(event) is None


def test_shared_server_events_pass_through_unchanged():
    for event in [
        {
            "type": "conversation.item.input_audio_transcription.completed",
            "event_id": "e",
            "item_id": "i",
            "content_index": 0,
            "transcript": "hi",
            "usage": {"type": "duration", "seconds": 1.5},
        },
        {
            "type": "input_audio_buffer.speech_started",
            "event_id": "e",
            "audio_start_ms": 5,
            "item_id": "i",
        },
        {"type": "output_audio_buffer.stopped", "event_id": "e", "response_id": "r"},
        {
            "type": "conversation.item.truncated",
            "event_id": "e",
            "item_id": "i",
            "content_index": 0,
            "audio_end_ms": 9,
        },
    ]:
        beta = server_event_to_beta(event)
        assert beta == event
        BETA_EVENT.validate_python(beta)
