"""The session core driven directly, without sockets: client events in; server events and effects out.

Every server event the core emits is validated strictly against the `openai` SDK's own GA type for
its `type` (required fields, literals, no type coercion), and may carry no key the SDK does not
declare except the few listed in `KNOWN_EXTENSIONS`.
"""

from __future__ import annotations

import json
import typing
from typing import Any

import openai.types.realtime as rt
import pytest
from conftest import WEATHER_TOOL
from openai.types.realtime.audio_transcription_param import AudioTranscriptionParam
from openai.types.realtime.realtime_audio_config_input_param import (
    NoiseReduction as SdkNoiseReduction,
)
from openai.types.realtime.realtime_audio_config_input_param import RealtimeAudioConfigInputParam
from openai.types.realtime.realtime_audio_config_output_param import RealtimeAudioConfigOutputParam
from openai.types.realtime.realtime_audio_config_param import RealtimeAudioConfigParam
from openai.types.realtime.realtime_audio_input_turn_detection_param import (
    SemanticVad as SdkSemanticVad,
)
from openai.types.realtime.realtime_audio_input_turn_detection_param import (
    ServerVad as SdkServerVad,
)
from openai.types.realtime.realtime_function_tool_param import RealtimeFunctionToolParam
from openai.types.realtime.realtime_session_create_request_param import (
    RealtimeSessionCreateRequestParam,
)
from openai.types.realtime.realtime_tools_config_union_param import Mcp as SdkMcpTool
from openai.types.realtime.realtime_tracing_config_param import TracingConfiguration
from openai.types.realtime.realtime_truncation_retention_ratio_param import (
    RealtimeTruncationRetentionRatioParam,
)
from openai.types.responses.response_prompt_param import ResponsePromptParam
from pydantic import BaseModel, TypeAdapter

from openrealtime.backends.llm.base import (
    ChatTurn,
    Finished,
    FunctionSpec,
    LlmEvent,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    ToolResult,
    Usage,
)
from openrealtime.core.effects import CancelResponse, Effect, GenerateResponse
from openrealtime.core.session import Session
from openrealtime.protocol.client_events import parse_client_event
from openrealtime.protocol.errors import ProtocolError

# --- strict validation against the SDK ---------------------------------------------------------


def _adapters_by_type(union: Any) -> dict[str, TypeAdapter[Any]]:
    members = typing.get_args(typing.get_args(union)[0]) or typing.get_args(union)
    return {
        typing.get_args(cls.model_fields["type"].annotation)[0]: TypeAdapter(cls)
        for cls in members
        if hasattr(cls, "model_fields")
    }


SDK_EVENTS = _adapters_by_type(rt.RealtimeServerEvent)
EFFECT_TYPES = typing.get_args(Effect)

# Keys the core sends that the SDK's models do not declare, each on purpose: the session's
# read-only `object` / `id` / `expires_at` (OpenAI sends them too) and `temperature` (an
# openrealtime extension, see protocol/session.py).
KNOWN_EXTENSIONS = {
    "session.object",
    "session.id",
    "session.expires_at",
    "session.temperature",
}


def _undeclared(value: Any, path: str = "") -> list[str]:
    """Dotted paths (list indices dropped) of keys no SDK model along the way declares."""
    found: list[str] = []
    if isinstance(value, BaseModel):
        found += [f"{path}{key}" for key in value.model_extra or {}]
        for name in type(value).model_fields:
            found += _undeclared(getattr(value, name), f"{path}{name}.")
    elif isinstance(value, list):
        for entry in value:
            found += _undeclared(entry, path)
    return found


def check_server_event(event: dict[str, Any]) -> Any:
    adapter = SDK_EVENTS.get(event["type"])
    assert adapter is not None, f"{event['type']!r} is not a GA server event"
    model = adapter.validate_json(json.dumps(event), strict=True)
    unknown = set(_undeclared(model)) - KNOWN_EXTENSIONS
    assert not unknown, f"{event['type']} carries keys the SDK does not know: {sorted(unknown)}"
    assert event["event_id"].startswith("event_")
    return model


# --- the harness -------------------------------------------------------------------------------

Output = dict[str, Any] | Effect


class Harness:
    """One `Session`, fed the way the runtime driver feeds it; every output is checked."""

    def __init__(self) -> None:
        self.session = Session()
        self.event_ids: set[str] = set()

    def open(self) -> list[Output]:
        self.session.open()
        return self.drain()

    def send(self, event: dict[str, Any]) -> list[Output]:
        """One client event as JSON text, parsed and handled as the transport does."""
        try:
            parsed = parse_client_event(json.dumps(event))
        except ProtocolError as error:
            self.session.reject(error)
        else:
            self.session.handle(parsed)
        return self.drain()

    def llm(self, response_id: str, *events: LlmEvent) -> list[Output]:
        for event in events:
            self.session.on_llm_event(response_id, event)
        return self.drain()

    def drain(self) -> list[Output]:
        out = self.session.drain()
        for entry in out:
            if isinstance(entry, dict):
                check_server_event(entry)
                assert entry["event_id"] not in self.event_ids, "event ids must be unique"
                self.event_ids.add(entry["event_id"])
            else:
                assert isinstance(entry, EFFECT_TYPES), f"not an effect: {entry!r}"
        return out

    # conveniences

    def update(self, **session: Any) -> list[Output]:
        return self.send({"type": "session.update", "session": {"type": "realtime", **session}})

    def add_item(self, item: dict[str, Any], **extra: Any) -> dict[str, Any]:
        out = self.send({"type": "conversation.item.create", "item": item, **extra})
        assert types(out) == ["conversation.item.added", "conversation.item.done"], out
        return out[1]["item"]

    def respond(self, **params: Any) -> tuple[str, GenerateResponse]:
        """`response.create`; returns the new response's id and its GenerateResponse effect."""
        event: dict[str, Any] = {"type": "response.create"}
        if params:
            event["response"] = params
        out = self.send(event)
        assert types(out) == ["response.created", "GenerateResponse"], out
        created, effect = out
        assert isinstance(effect, GenerateResponse)
        assert effect.response_id == created["response"]["id"]
        assert created["response"]["status"] == "in_progress"
        return effect.response_id, effect

    def wire(self) -> dict[str, Any]:
        return self.session.session_wire()


def types(out: list[Output]) -> list[str]:
    return [entry["type"] if isinstance(entry, dict) else type(entry).__name__ for entry in out]


def of_type(out: list[Output], type_: str) -> list[dict[str, Any]]:
    return [entry for entry in out if isinstance(entry, dict) and entry["type"] == type_]


def only(out: list[Output], type_: str) -> dict[str, Any]:
    matches = of_type(out, type_)
    assert len(matches) == 1, f"expected one {type_}, got {types(out)}"
    return matches[0]


def error_of(out: list[Output]) -> dict[str, Any]:
    assert types(out) == ["error"], out
    return out[0]["error"]


def user(text: str) -> dict[str, Any]:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


def ids(h: Harness) -> list[str]:
    return [item.id for item in h.session.conversation.items()]


TIME_TOOL = {
    "type": "function",
    "name": "get_time",
    "description": "The time now.",
    "parameters": {},
}


@pytest.fixture
def raw() -> Harness:
    """An opened session with default (audio) settings; `session.created` already drained."""
    harness = Harness()
    assert types(harness.open()) == ["session.created"]
    return harness


@pytest.fixture
def h(raw: Harness) -> Harness:
    """An opened text session: responses answer in text."""
    assert types(raw.update(output_modalities=["text"])) == ["session.updated"]
    return raw


# === session ===================================================================================


def test_nothing_before_open_then_session_created_first() -> None:
    harness = Harness()
    assert harness.drain() == []
    out = harness.open()
    assert types(out) == ["session.created"]
    session = out[0]["session"]
    assert session["id"] == harness.session.id and session["id"].startswith("sess_")
    assert session["object"] == "realtime.session" and session["type"] == "realtime"
    assert session["output_modalities"] == ["audio"]
    assert session["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 24000}
    assert session["audio"]["input"]["turn_detection"]["type"] == "server_vad"
    assert session["max_output_tokens"] == "inf" and session["tool_choice"] == "auto"


def test_update_answers_session_updated_with_the_full_effective_session(raw: Harness) -> None:
    before = raw.wire()
    out = raw.update(instructions="Be terse.")
    assert types(out) == ["session.updated"]
    echoed = out[0]["session"]
    assert echoed == raw.wire() == {**before, "instructions": "Be terse."}


def test_nested_voice_change_keeps_the_rest_of_audio(raw: Harness) -> None:
    raw.update(audio={"input": {"format": {"type": "audio/pcmu"}}})
    before = raw.wire()["audio"]
    echoed = only(raw.update(audio={"output": {"voice": "marin"}}), "session.updated")["session"]
    assert echoed["audio"]["output"]["voice"] == "marin"
    assert echoed["audio"]["input"] == before["input"]
    assert echoed["audio"]["input"]["format"] == {"type": "audio/pcmu"}
    assert echoed["audio"]["output"]["format"] == before["output"]["format"]
    assert echoed["audio"]["output"]["speed"] == before["output"]["speed"]


def test_partial_server_vad_update_keeps_its_other_parameters(raw: Harness) -> None:
    raw.update(audio={"input": {"turn_detection": {"type": "server_vad", "threshold": 0.8}}})
    out = raw.update(
        audio={"input": {"turn_detection": {"type": "server_vad", "silence_duration_ms": 900}}}
    )
    vad = only(out, "session.updated")["session"]["audio"]["input"]["turn_detection"]
    assert vad["threshold"] == 0.8 and vad["silence_duration_ms"] == 900


def test_switching_turn_detection_type_replaces_it_whole(raw: Harness) -> None:
    raw.update(
        audio={
            "input": {
                "turn_detection": {"type": "server_vad", "threshold": 0.9, "idle_timeout_ms": 6000}
            }
        }
    )
    out = raw.update(
        audio={"input": {"turn_detection": {"type": "semantic_vad", "eagerness": "high"}}}
    )
    vad = only(out, "session.updated")["session"]["audio"]["input"]["turn_detection"]
    assert vad == {
        "type": "semantic_vad",
        "eagerness": "high",
        "create_response": True,
        "interrupt_response": True,
    }


def test_turn_detection_null_turns_it_off_and_it_can_come_back(raw: Harness) -> None:
    out = raw.update(audio={"input": {"turn_detection": None}})
    assert only(out, "session.updated")["session"]["audio"]["input"]["turn_detection"] is None
    assert raw.wire()["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 24000}
    out = raw.update(audio={"input": {"turn_detection": {"type": "server_vad"}}})
    assert (
        only(out, "session.updated")["session"]["audio"]["input"]["turn_detection"]["threshold"]
        == 0.5
    )


def test_tools_replace_the_list(raw: Harness) -> None:
    raw.update(tools=[WEATHER_TOOL, TIME_TOOL])
    assert [t["name"] for t in raw.wire()["tools"]] == ["get_weather", "get_time"]
    out = raw.update(tools=[TIME_TOOL])
    assert only(out, "session.updated")["session"]["tools"] == [TIME_TOOL]
    out = raw.update(tools=[])
    assert only(out, "session.updated")["session"]["tools"] == []


def test_echoing_the_created_session_back_is_accepted(raw: Harness) -> None:
    session = raw.wire()
    assert {"id", "object", "expires_at"} <= session.keys()
    out = raw.send({"type": "session.update", "session": session})
    assert only(out, "session.updated")["session"] == session


def test_read_only_fields_are_ignored_not_applied(raw: Harness) -> None:
    own_id = raw.session.id
    out = raw.update(id="sess_someone_else", object="realtime.session", expires_at=123, model="m2")
    echoed = only(out, "session.updated")["session"]
    assert echoed["id"] == own_id and echoed["expires_at"] is None and echoed["model"] == "m2"


def test_changing_type_to_transcription_is_refused(raw: Harness) -> None:
    before = raw.wire()
    error = error_of(
        raw.send({"type": "session.update", "event_id": "e1", "session": {"type": "transcription"}})
    )
    assert error["code"] == "invalid_value" and error["param"] == "session.type"
    assert error["event_id"] == "e1"
    assert raw.wire() == before


@pytest.mark.parametrize(
    ("session", "param"),
    [
        ({"temperature": 3.0}, "session.temperature"),
        ({"max_output_tokens": 0}, "session.max_output_tokens"),
        ({"max_output_tokens": 5000}, "session.max_output_tokens"),
        ({"output_modalities": ["text", "audio"]}, "session.output_modalities"),
        ({"output_modalities": ["video"]}, "session.output_modalities[0]"),
        ({"audio": {"output": {"speed": 2.0}}}, "session.audio.output.speed"),
        (
            {"audio": {"input": {"format": {"type": "audio/wav"}}}},
            "session.audio.input.format.type",
        ),
        (
            {"audio": {"input": {"turn_detection": {"type": "server_vad", "threshold": 1.5}}}},
            "session.audio.input.turn_detection.threshold",
        ),
        ({"tool_choice": "sometimes"}, "session.tool_choice"),
        ({"tools": [{"type": "function"}]}, "session.tools[0].name"),
        ({"truncation": {"type": "retention_ratio", "retention_ratio": 2}}, "session.truncation"),
        ({"voice": "alloy"}, "session.voice"),
        # one valid change next to an invalid one: nothing is applied
        ({"instructions": "changed", "temperature": -1}, "session.temperature"),
    ],
)
def test_invalid_update_is_refused_and_leaves_the_session_unchanged(
    raw: Harness, session: dict[str, Any], param: str
) -> None:
    before = raw.wire()
    error = error_of(
        raw.send(
            {
                "type": "session.update",
                "event_id": "bad",
                "session": {"type": "realtime", **session},
            }
        )
    )
    assert error["type"] == "invalid_request_error"
    assert error["event_id"] == "bad"
    assert error["param"] is not None and error["param"].startswith(param), error
    assert raw.wire() == before
    # and the session goes on
    assert types(raw.update(instructions="still here")) == ["session.updated"]


# --- every GA field: accepted, stored, echoed ---------------------------------------------------

MAXIMAL_GA_SESSION: dict[str, Any] = {
    "type": "realtime",
    "model": "gpt-realtime-2025-08-28",
    "instructions": "Answer in French, briefly.",
    "output_modalities": ["text"],
    "max_output_tokens": 1234,
    "include": ["item.input_audio_transcription.logprobs"],
    "parallel_tool_calls": False,
    "reasoning": {"effort": "low"},
    "audio": {
        "input": {
            "format": {"type": "audio/pcmu"},
            "noise_reduction": {"type": "far_field", "strength": 0.7},
            "transcription": {
                "model": "gpt-4o-transcribe",
                "language": "fr",
                "prompt": "Expect words about cooking.",
                "languages": ["fr", "en"],
                "keywords": ["roux", "béchamel"],
                "delay": "low",
            },
            "turn_detection": {
                "type": "server_vad",
                "threshold": 0.65,
                "prefix_padding_ms": 250,
                "silence_duration_ms": 750,
                "idle_timeout_ms": 6000,
                "create_response": False,
                "interrupt_response": False,
            },
        },
        "output": {"format": {"type": "audio/pcma"}, "voice": "marin", "speed": 1.25},
    },
    "prompt": {"id": "pmpt_123", "version": "7", "variables": {"city": "Paris"}},
    "tool_choice": {"type": "function", "name": "get_weather"},
    "tools": [WEATHER_TOOL, TIME_TOOL],
    "tracing": {
        "workflow_name": "support",
        "group_id": "grp_1",
        "metadata": {"tier": "gold", "n": 3},
    },
    "truncation": {
        "type": "retention_ratio",
        "retention_ratio": 0.8,
        "token_limits": {"post_instructions": 5000},
    },
}

VARIANTS: dict[str, dict[str, Any]] = {
    "maximal": {},
    "tracing auto, truncation auto": {"tracing": "auto", "truncation": "auto"},
    "tracing null, truncation disabled": {"tracing": None, "truncation": "disabled"},
    "retention ratio without token limits": {
        "truncation": {"type": "retention_ratio", "retention_ratio": 0.5}
    },
    "pcm 24k, custom voice, audio out": {
        "output_modalities": ["audio"],
        "audio": {
            "input": {
                **MAXIMAL_GA_SESSION["audio"]["input"],
                "format": {"type": "audio/pcm", "rate": 24000},
            },
            "output": {
                "format": {"type": "audio/pcm", "rate": 24000},
                "voice": {"id": "marin"},  # an id must name a known voice
            },
        },
    },
    "semantic vad, no noise reduction, no transcription": {
        "audio": {
            "input": {
                "noise_reduction": None,
                "transcription": None,
                "turn_detection": {
                    "type": "semantic_vad",
                    "eagerness": "low",
                    "create_response": True,
                    "interrupt_response": False,
                },
            }
        }
    },
    "string tool choice, inf tokens, null prompt": {
        "tool_choice": "required",
        "max_output_tokens": "inf",
        "prompt": None,
    },
}


def assert_echoed(sent: Any, echoed: Any, path: str = "session") -> None:
    """Every value sent comes back equal; objects may gain defaults for keys not sent."""
    if isinstance(sent, dict) and path.rsplit(".", 1)[-1] not in (
        "parameters",
        "metadata",
        "variables",
    ):
        assert isinstance(echoed, dict), f"{path}: sent an object, got {echoed!r}"
        for key, value in sent.items():
            assert key in echoed, f"{path}.{key} was not echoed"
            assert_echoed(value, echoed[key], f"{path}.{key}")
    elif isinstance(sent, list):
        assert isinstance(echoed, list) and len(echoed) == len(sent), f"{path}: {echoed!r}"
        for index, (a, b) in enumerate(zip(sent, echoed, strict=True)):
            assert_echoed(a, b, f"{path}[{index}]")
    else:
        assert echoed == sent, f"{path}: sent {sent!r}, echoed {echoed!r}"


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_every_ga_session_field_is_accepted_stored_and_echoed(raw: Harness, variant: str) -> None:
    sent = {**MAXIMAL_GA_SESSION, **VARIANTS[variant]}
    out = raw.send({"type": "session.update", "session": sent})
    echoed = only(out, "session.updated")["session"]
    assert_echoed(sent, echoed)
    assert raw.wire() == echoed
    # the JSON Schema of a tool comes back byte for byte, not normalized
    assert echoed["tools"] == [WEATHER_TOOL, TIME_TOOL]


@pytest.mark.parametrize(
    ("path", "sdk_type"),
    [
        ((), RealtimeSessionCreateRequestParam),
        (("audio",), RealtimeAudioConfigParam),
        (("audio", "input"), RealtimeAudioConfigInputParam),
        (("audio", "input", "noise_reduction"), SdkNoiseReduction),
        (("audio", "input", "transcription"), AudioTranscriptionParam),
        (("audio", "input", "turn_detection"), SdkServerVad),
        (("audio", "output"), RealtimeAudioConfigOutputParam),
        (("tools", 0), RealtimeFunctionToolParam),
        (("tracing",), TracingConfiguration),
        (("truncation",), RealtimeTruncationRetentionRatioParam),
        (("prompt",), ResponsePromptParam),
    ],
)
def test_the_maximal_session_covers_every_sdk_field(path: tuple[Any, ...], sdk_type: Any) -> None:
    """Keeps the test above honest: when the SDK gains a field, this names it."""
    value: Any = MAXIMAL_GA_SESSION
    for part in path:
        value = value[part]
    assert set(sdk_type.__required_keys__ | sdk_type.__optional_keys__) <= set(value)


def test_semantic_vad_variant_covers_every_sdk_field() -> None:
    variant = VARIANTS["semantic vad, no noise reduction, no transcription"]
    vad = variant["audio"]["input"]["turn_detection"]
    assert set(SdkSemanticVad.__required_keys__ | SdkSemanticVad.__optional_keys__) <= set(vad)


MCP_TOOLS = [
    {
        "type": "mcp",
        "server_label": "docs",
        "server_url": "https://mcp.example.com/sse",
        "server_description": "Product documentation.",
        "allowed_tools": ["search", "fetch"],
        "allowed_callers": ["direct"],
        "authorization": "token-123",
        "headers": {"X-Team": "support"},
        "require_approval": {"never": {"tool_names": ["search"]}, "always": {"read_only": False}},
        "defer_loading": True,
    },
    {
        "type": "mcp",
        "server_label": "mail",
        "connector_id": "connector_gmail",
        "allowed_tools": {"read_only": True, "tool_names": ["list"]},
        "require_approval": "always",
    },
    {"type": "mcp", "server_label": "intranet", "tunnel_id": "tun_42", "require_approval": "never"},
]


def test_mcp_tools_cover_every_sdk_field() -> None:
    keys = set().union(*MCP_TOOLS)
    assert set(SdkMcpTool.__required_keys__ | SdkMcpTool.__optional_keys__) <= keys


def test_mcp_tools_with_every_sdk_field_are_accepted_and_echoed(raw: Harness) -> None:
    served = MCP_TOOLS[:1]  # a server_url: listed next (test_mcp.py)
    out = raw.update(
        tools=served, tool_choice={"type": "mcp", "server_label": "docs", "name": "search"}
    )
    assert types(out)[0] == "session.updated", out[0].get("error")
    assert_echoed(served, out[0]["session"]["tools"], "session.tools")
    for hosted in MCP_TOOLS[1:]:  # connectors and tunnels: refused, saying what is supported
        error = only(raw.update(tools=[hosted]), "error")["error"]
        assert error["code"] == "not_supported" and "server_url" in error["message"]


def test_tool_choice_is_replaced_whole(raw: Harness) -> None:
    raw.update(tool_choice={"type": "mcp", "server_label": "docs", "name": "search"})
    out = raw.update(tool_choice={"type": "mcp", "server_label": "mail"})
    choice = only(out, "session.updated")["session"]["tool_choice"]
    assert choice.get("name") is None, choice


def test_prompt_reference_is_replaced_whole(raw: Harness) -> None:
    raw.update(prompt={"id": "pmpt_A", "version": "3", "variables": {"city": "Paris"}})
    out = raw.update(prompt={"id": "pmpt_B"})
    prompt = only(out, "session.updated")["session"]["prompt"]
    assert prompt.get("version") is None and prompt.get("variables") is None, prompt


def test_noise_reduction_strength_survives_a_type_change(raw: Harness) -> None:
    raw.update(audio={"input": {"noise_reduction": {"type": "near_field", "strength": 0.3}}})
    out = raw.update(audio={"input": {"noise_reduction": {"type": "far_field"}}})
    reduction = only(out, "session.updated")["session"]["audio"]["input"]["noise_reduction"]
    assert reduction == {"type": "far_field", "strength": 0.3}


# === items =====================================================================================


def test_item_create_assigns_an_id_when_absent_and_keeps_a_given_one(h: Harness) -> None:
    assigned = h.add_item(user("hi"))
    assert assigned["id"].startswith("item_")
    assert assigned["object"] == "realtime.item" and assigned["status"] == "completed"
    kept = h.add_item({**user("again"), "id": "item_mine"})
    assert kept["id"] == "item_mine"
    assert ids(h) == [assigned["id"], "item_mine"]


def test_duplicate_item_id_is_refused_and_nothing_changes(h: Harness) -> None:
    h.add_item({**user("one"), "id": "item_dup"})
    error = error_of(
        h.send(
            {
                "type": "conversation.item.create",
                "event_id": "e9",
                "item": {**user("two"), "id": "item_dup"},
            }
        )
    )
    assert error["code"] == "item_id_already_exists" and error["param"] == "item.id"
    assert error["event_id"] == "e9"
    assert ids(h) == ["item_dup"]
    assert h.session.conversation.get("item_dup").content[0].text == "one"


def test_added_then_done_with_the_previous_item_id(h: Harness) -> None:
    out = h.send({"type": "conversation.item.create", "item": user("first")})
    added, done = out
    assert types(out) == ["conversation.item.added", "conversation.item.done"]
    assert added["previous_item_id"] is None and done["previous_item_id"] is None
    assert added["item"] == done["item"]
    first = done["item"]["id"]
    out = h.send({"type": "conversation.item.create", "item": user("second")})
    assert [e["previous_item_id"] for e in out] == [first, first]


def test_previous_item_id_in_the_middle(h: Harness) -> None:
    a = h.add_item(user("a"))["id"]
    b = h.add_item(user("b"))["id"]
    out = h.send(
        {"type": "conversation.item.create", "previous_item_id": a, "item": user("between")}
    )
    middle = only(out, "conversation.item.done")
    assert middle["previous_item_id"] == a
    assert ids(h) == [a, middle["item"]["id"], b]
    # and the model sees them in that order
    _, effect = h.respond()
    assert effect.request.context == (
        ChatTurn("user", "a"),
        ChatTurn("user", "between"),
        ChatTurn("user", "b"),
    )


def test_previous_item_id_root_inserts_first(h: Harness) -> None:
    a = h.add_item(user("a"))["id"]
    out = h.send(
        {"type": "conversation.item.create", "previous_item_id": "root", "item": user("zero")}
    )
    first = only(out, "conversation.item.added")
    assert first["previous_item_id"] is None
    assert ids(h) == [first["item"]["id"], a]


def test_previous_item_id_root_on_an_empty_conversation(h: Harness) -> None:
    out = h.send(
        {"type": "conversation.item.create", "previous_item_id": "root", "item": user("x")}
    )
    assert only(out, "conversation.item.done")["previous_item_id"] is None


def test_unknown_previous_item_id_is_refused(h: Harness) -> None:
    h.add_item(user("a"))
    error = error_of(
        h.send(
            {
                "type": "conversation.item.create",
                "event_id": "e2",
                "previous_item_id": "item_nope",
                "item": user("x"),
            }
        )
    )
    assert error["code"] == "previous_item_not_found" and error["param"] == "previous_item_id"
    assert error["event_id"] == "e2"
    assert len(h.session.conversation) == 1


def test_every_item_type_can_be_created(h: Harness) -> None:
    system = h.add_item(
        {"type": "message", "role": "system", "content": [{"type": "input_text", "text": "S"}]}
    )
    assistant = h.add_item(
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "A"}]}
    )
    call = h.add_item(
        {"type": "function_call", "call_id": "call_1", "name": "get_time", "arguments": "{}"}
    )
    result = h.add_item({"type": "function_call_output", "call_id": "call_1", "output": "noon"})
    assert [system["role"], assistant["role"]] == ["system", "assistant"]
    assert call["type"] == "function_call" and call["status"] == "completed"
    assert result["type"] == "function_call_output" and result["output"] == "noon"
    _, effect = h.respond()
    assert effect.request.context == (
        ChatTurn("system", "S"),
        ChatTurn("assistant", "A"),
        ToolCall("call_1", "get_time", "{}"),
        ToolResult("call_1", "noon"),
    )


def test_mcp_approval_response_item_has_the_sdk_shape(h: Harness) -> None:
    item = h.add_item(
        {"type": "mcp_approval_response", "approval_request_id": "mcpr_1", "approve": True}
    )
    assert item["approve"] is True


def test_retrieve_returns_the_stored_item(h: Harness) -> None:
    item = h.add_item(user("keep me"))
    out = h.send({"type": "conversation.item.retrieve", "item_id": item["id"]})
    assert only(out, "conversation.item.retrieved")["item"] == item


def test_delete_removes_the_item(h: Harness) -> None:
    a = h.add_item(user("a"))["id"]
    b = h.add_item(user("b"))["id"]
    out = h.send({"type": "conversation.item.delete", "item_id": a})
    assert types(out) == ["conversation.item.deleted"] and out[0]["item_id"] == a
    assert ids(h) == [b]
    error = error_of(h.send({"type": "conversation.item.retrieve", "event_id": "r", "item_id": a}))
    assert error["code"] == "item_not_found" and error["event_id"] == "r"


@pytest.mark.parametrize("event_type", ["conversation.item.retrieve", "conversation.item.delete"])
def test_unknown_item_ids_are_refused(h: Harness, event_type: str) -> None:
    h.add_item(user("a"))
    error = error_of(h.send({"type": event_type, "event_id": "ev", "item_id": "item_missing"}))
    assert error["code"] == "item_not_found" and error["param"] == "item_id"
    assert error["event_id"] == "ev" and "item_missing" in error["message"]
    assert len(h.session.conversation) == 1


# === the response lifecycle ====================================================================

TEXT_SEQUENCE = [
    "response.created",
    "GenerateResponse",
    "response.output_item.added",
    "conversation.item.added",
    "response.content_part.added",
    "response.output_text.delta",
    "response.output_text.delta",
    "response.output_text.delta",
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
    "conversation.item.done",
    "response.done",
]


def test_text_response_emits_the_full_ga_sequence_in_order(h: Harness) -> None:
    question = h.add_item(user("What is the answer?"))
    out = h.send({"type": "response.create"})
    rid = out[0]["response"]["id"]
    out += h.llm(
        rid,
        TextDelta("The "),
        TextDelta(""),
        TextDelta("answer "),
        TextDelta("is 42."),
        Finished("stop"),
    )
    assert types(out) == TEXT_SEQUENCE

    created = out[0]["response"]
    assert created["object"] == "realtime.response" and created["output"] == []
    assert created["conversation_id"] == h.session.conversation_id
    assert created["output_modalities"] == ["text"] and created["usage"] is None

    added = only(out, "response.output_item.added")
    item_id = added["item"]["id"]
    assert added["output_index"] == 0 and added["response_id"] == rid
    assert added["item"] == {
        "id": item_id,
        "type": "message",
        "object": "realtime.item",
        "status": "in_progress",
        "role": "assistant",
        "content": [],
    }
    assert only(out, "conversation.item.added")["previous_item_id"] == question["id"]
    assert only(out, "response.content_part.added")["part"] == {"type": "text", "text": ""}
    for event in out[4:10]:
        assert (event["response_id"], event["item_id"], event["output_index"]) == (rid, item_id, 0)
        assert event.get("content_index", 0) == 0
    assert [e["delta"] for e in of_type(out, "response.output_text.delta")] == [
        "The ",
        "answer ",
        "is 42.",
    ]
    assert only(out, "response.output_text.done")["text"] == "The answer is 42."
    assert only(out, "response.content_part.done")["part"] == {
        "type": "text",
        "text": "The answer is 42.",
    }
    final_item = {
        **added["item"],
        "status": "completed",
        "content": [{"type": "output_text", "text": "The answer is 42."}],
    }
    assert only(out, "response.output_item.done")["item"] == final_item
    item_done = only(out, "conversation.item.done")
    assert item_done["item"] == final_item and item_done["previous_item_id"] == question["id"]

    done = out[-1]["response"]
    assert done["id"] == rid and done["status"] == "completed" and done["status_details"] is None
    assert done["output"] == [final_item]
    assert ids(h) == [question["id"], item_id]
    assert h.session.responses == {}
    # the answer is now part of the context of the next response
    _, effect = h.respond()
    assert effect.request.context[-1] == ChatTurn("assistant", "The answer is 42.")


def test_one_tool_call(h: Harness) -> None:
    h.update(tools=[WEATHER_TOOL])
    h.add_item(user("Weather in Paris?"))
    rid, _ = h.respond()
    out = h.llm(
        rid,
        ToolCallDelta(0, "call_abc", "get_weather", ""),
        ToolCallDelta(0, arguments='{"city": '),
        ToolCallDelta(0, arguments='"Paris"}'),
        Finished("tool_calls"),
    )
    assert types(out) == [
        "response.output_item.added",
        "conversation.item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "conversation.item.done",
        "response.done",
    ]
    added = only(out, "response.output_item.added")["item"]
    assert added["type"] == "function_call" and added["status"] == "in_progress"
    assert (added["call_id"], added["name"], added["arguments"]) == ("call_abc", "get_weather", "")
    args_done = only(out, "response.function_call_arguments.done")
    assert args_done["arguments"] == '{"city": "Paris"}' and args_done["call_id"] == "call_abc"
    assert args_done["name"] == "get_weather" and args_done["item_id"] == added["id"]
    final = only(out, "response.output_item.done")["item"]
    assert final == {**added, "status": "completed", "arguments": '{"city": "Paris"}'}
    done = out[-1]["response"]
    assert done["status"] == "completed" and done["output"] == [final]
    # the client answers and asks again: the model sees the call and its result
    h.add_item({"type": "function_call_output", "call_id": "call_abc", "output": '{"temp": 21}'})
    _, effect = h.respond()
    assert effect.request.context[-2:] == (
        ToolCall("call_abc", "get_weather", '{"city": "Paris"}'),
        ToolResult("call_abc", '{"temp": 21}'),
    )


def test_two_tool_calls_in_parallel(h: Harness) -> None:
    h.update(tools=[WEATHER_TOOL, TIME_TOOL])
    rid, _ = h.respond()
    out = h.llm(
        rid,
        ToolCallDelta(0, "call_a", "get_weather", '{"city":'),
        ToolCallDelta(1, "call_b", "get_time", "{"),
        ToolCallDelta(0, arguments='"Oslo"}'),
        ToolCallDelta(1, arguments="}"),
        Finished("tool_calls"),
    )
    added = of_type(out, "response.output_item.added")
    assert [(e["output_index"], e["item"]["call_id"]) for e in added] == [
        (0, "call_a"),
        (1, "call_b"),
    ]
    deltas = of_type(out, "response.function_call_arguments.delta")
    assert [(d["call_id"], d["output_index"], d["delta"]) for d in deltas] == [
        ("call_a", 0, '{"city":'),
        ("call_b", 1, "{"),
        ("call_a", 0, '"Oslo"}'),
        ("call_b", 1, "}"),
    ]
    args = {
        e["call_id"]: e["arguments"] for e in of_type(out, "response.function_call_arguments.done")
    }
    assert args == {"call_a": '{"city":"Oslo"}', "call_b": "{}"}
    done = out[-1]["response"]
    assert [(i["call_id"], i["status"]) for i in done["output"]] == [
        ("call_a", "completed"),
        ("call_b", "completed"),
    ]
    assert [i.type for i in h.session.conversation.items()] == ["function_call", "function_call"]
    # each conversation.item.done names the item before it
    item_done = of_type(out, "conversation.item.done")
    assert item_done[1]["previous_item_id"] == item_done[0]["item"]["id"]


def test_text_then_tool_call_closes_the_message_before_the_call_opens(h: Harness) -> None:
    h.update(tools=[TIME_TOOL])
    rid, _ = h.respond()
    out = h.llm(
        rid,
        TextDelta("Let me check."),
        ToolCallDelta(0, "call_t", "get_time", "{}"),
        Finished("tool_calls"),
    )
    assert types(out) == [
        "response.output_item.added",
        "conversation.item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "conversation.item.done",
        "response.output_item.added",
        "conversation.item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "conversation.item.done",
        "response.done",
    ]
    message_done, call_done = of_type(out, "response.output_item.done")
    assert message_done["output_index"] == 0 and message_done["item"]["status"] == "completed"
    assert call_done["output_index"] == 1 and call_done["item"]["type"] == "function_call"
    assert [i["type"] for i in out[-1]["response"]["output"]] == ["message", "function_call"]


def test_length_finish_makes_the_response_incomplete(h: Harness) -> None:
    rid, _ = h.respond()
    out = h.llm(rid, TextDelta("Once upon a"), Finished("length"))
    done = out[-1]["response"]
    assert done["status"] == "incomplete"
    assert done["status_details"] == {"type": "incomplete", "reason": "max_output_tokens"}
    assert done["output"][0]["status"] == "incomplete"
    assert done["output"][0]["content"] == [{"type": "output_text", "text": "Once upon a"}]


def test_a_tool_call_cut_by_the_length_limit_is_incomplete(h: Harness) -> None:
    h.update(tools=[WEATHER_TOOL])
    rid, _ = h.respond()
    out = h.llm(rid, ToolCallDelta(0, "call_x", "get_weather", '{"city": "Ber'), Finished("length"))
    done = out[-1]["response"]
    assert done["status"] == "incomplete"
    assert only(out, "response.output_item.done")["item"]["status"] == "incomplete"
    assert done["output"][0]["status"] == "incomplete"


def test_one_active_response_per_conversation(h: Harness) -> None:
    first, _ = h.respond()
    out = h.send({"type": "response.create", "event_id": "again"})
    error = error_of(out)
    assert error["code"] == "conversation_already_has_active_response"
    assert error["event_id"] == "again" and first in error["message"]
    assert list(h.session.responses) == [first]
    h.llm(first, TextDelta("ok"), Finished())
    second, _ = h.respond()
    assert second != first


def test_out_of_band_responses_run_alongside_and_add_nothing(h: Harness) -> None:
    h.add_item(user("context"))
    before = ids(h)
    main, _ = h.respond()
    side, side_effect = h.respond(conversation="none", metadata={"purpose": "summary"})
    side2, _ = h.respond(conversation="none", input=[])
    assert len({main, side, side2}) == 3
    assert side_effect.request.context == (ChatTurn("user", "context"),)

    out = h.llm(side, TextDelta("A summary."), Finished())
    assert not [t for t in types(out) if t.startswith("conversation.")]
    done = out[-1]["response"]
    assert done["status"] == "completed" and done["conversation_id"] is None
    assert done["metadata"] == {"purpose": "summary"}
    assert done["output"][0]["content"][0]["text"] == "A summary."
    assert ids(h) == before

    out = h.llm(main, TextDelta("In the conversation."), Finished())
    assert len(of_type(out, "conversation.item.done")) == 1
    assert len(h.session.conversation) == 2
    h.llm(side2, Finished())
    assert h.session.responses == {}


def test_out_of_band_input_can_reference_and_inline_items(h: Harness) -> None:
    a = h.add_item(user("a"))["id"]
    h.add_item(user("b"))
    _, effect = h.respond(
        conversation="none",
        input=[{"type": "item_reference", "id": a}, user("inline")],
    )
    assert effect.request.context == (ChatTurn("user", "a"), ChatTurn("user", "inline"))
    error = error_of(
        h.send(
            {
                "type": "response.create",
                "event_id": "x",
                "response": {
                    "conversation": "none",
                    "input": [{"type": "item_reference", "id": "item_no"}],
                },
            }
        )
    )
    assert error["code"] == "item_not_found" and error["event_id"] == "x"


def test_unknown_conversation_value_is_refused(h: Harness) -> None:
    error = error_of(
        h.send({"type": "response.create", "event_id": "c", "response": {"conversation": "conv_1"}})
    )
    assert error["param"] == "response.conversation" and error["event_id"] == "c"
    assert h.session.responses == {}


def _cancel_checks(out: list[Output], rid: str) -> dict[str, Any]:
    kinds = types(out)
    assert kinds[0] == "CancelResponse" and out[0] == CancelResponse(rid)
    assert kinds[-1] == "response.done" and kinds.count("CancelResponse") == 1
    done = out[-1]["response"]
    assert done["id"] == rid and done["status"] == "cancelled"
    assert done["status_details"] == {"type": "cancelled", "reason": "client_cancelled"}
    return done


def test_cancel_without_id_cancels_the_conversation_response(h: Harness) -> None:
    h.update(tools=[TIME_TOOL])
    rid, _ = h.respond()
    h.llm(rid, TextDelta("Partial"), ToolCallDelta(0, "call_1", "get_time", "{"))
    out = h.send({"type": "response.cancel"})
    done = _cancel_checks(out, rid)
    # open items close as incomplete, in the response and in the conversation
    assert [i["status"] for i in done["output"]] == ["completed", "incomplete"]
    assert only(out, "response.output_item.done")["item"]["status"] == "incomplete"
    assert [i.status for i in h.session.conversation.items()] == ["completed", "incomplete"]
    assert h.session.responses == {}


def test_cancel_closes_an_open_message_as_incomplete(h: Harness) -> None:
    rid, _ = h.respond()
    h.llm(rid, TextDelta("Half a sen"))
    out = h.send({"type": "response.cancel"})
    done = _cancel_checks(out, rid)
    assert types(out)[1:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "conversation.item.done",
        "response.done",
    ]
    assert done["output"][0]["status"] == "incomplete"
    assert done["output"][0]["content"] == [{"type": "output_text", "text": "Half a sen"}]


def test_cancel_by_id_cancels_only_that_response(h: Harness) -> None:
    main, _ = h.respond()
    side, _ = h.respond(conversation="none")
    out = h.send({"type": "response.cancel", "response_id": side})
    _cancel_checks(out, side)
    assert list(h.session.responses) == [main]
    out = h.send({"type": "response.cancel", "response_id": main})
    _cancel_checks(out, main)


def test_cancel_without_id_prefers_the_conversation_response(h: Harness) -> None:
    side, _ = h.respond(conversation="none")
    main, _ = h.respond()
    _cancel_checks(h.send({"type": "response.cancel"}), main)
    assert list(h.session.responses) == [side]
    assert h.llm(side, TextDelta("still running"))[-1]["delta"] == "still running"


def test_cancel_without_id_leaves_out_of_band_responses_alone(h: Harness) -> None:
    side, _ = h.respond(conversation="none")
    error = error_of(h.send({"type": "response.cancel", "event_id": "c"}))
    assert error["code"] == "response_cancel_not_active"
    assert list(h.session.responses) == [side]


def test_cancel_before_any_output(h: Harness) -> None:
    rid, _ = h.respond()
    out = h.send({"type": "response.cancel", "response_id": rid})
    assert types(out) == ["CancelResponse", "response.done"]
    assert _cancel_checks(out, rid)["output"] == []


@pytest.mark.parametrize("response_id", ["resp_unknown", None])
def test_cancel_with_nothing_to_cancel_is_refused(h: Harness, response_id: str | None) -> None:
    event: dict[str, Any] = {"type": "response.cancel", "event_id": "cx"}
    if response_id:
        event["response_id"] = response_id
    error = error_of(h.send(event))
    assert error["code"] == "response_cancel_not_active" and error["event_id"] == "cx"


def test_cancelling_a_finished_response_is_refused(h: Harness) -> None:
    rid, _ = h.respond()
    h.llm(rid, Finished())
    error = error_of(h.send({"type": "response.cancel", "response_id": rid}))
    assert error["code"] == "response_cancel_not_active"


def test_late_backend_events_after_cancel_or_finish_emit_nothing(h: Harness) -> None:
    rid, _ = h.respond()
    h.llm(rid, TextDelta("a"))
    h.send({"type": "response.cancel"})
    assert h.llm(rid, TextDelta("late"), ToolCallDelta(0, "c", "f", "{}"), Finished()) == []
    h.session.on_response_failed(rid, "llm_error", "too late")
    assert h.drain() == []
    done_id, _ = h.respond()
    h.llm(done_id, Finished())
    assert h.llm(done_id, TextDelta("late")) == []
    assert len(h.session.conversation) == 1


def test_backend_failure_fails_the_response(h: Harness) -> None:
    rid, _ = h.respond()
    h.llm(rid, TextDelta("Start"))
    h.session.on_response_failed(rid, "llm_unreachable", "cannot reach the LLM")
    out = h.drain()
    done = out[-1]["response"]
    assert types(out)[-1] == "response.done" and "CancelResponse" not in types(out)
    assert done["status"] == "failed"
    error = done["status_details"]["error"]
    assert done["status_details"]["type"] == "failed"
    assert error["code"] == "llm_unreachable" and error["message"] == "cannot reach the LLM"
    assert error["type"] == "server_error"
    assert done["output"][0]["status"] == "incomplete"
    assert h.llm(rid, TextDelta("late")) == []
    h.respond()  # the conversation is free again


def test_usage_comes_from_the_backend_when_given(h: Harness) -> None:
    rid, _ = h.respond()
    out = h.llm(
        rid,
        TextDelta("Hello there"),
        Finished("stop", Usage(input_tokens=11, output_tokens=7, cached_tokens=3)),
    )
    usage = out[-1]["response"]["usage"]
    assert (usage["input_tokens"], usage["output_tokens"], usage["total_tokens"]) == (11, 7, 18)
    assert usage["input_token_details"]["text_tokens"] == 11
    assert usage["input_token_details"]["cached_tokens"] == 3
    assert usage["output_token_details"] == {"text_tokens": 7, "audio_tokens": 0}


def test_usage_is_estimated_when_the_backend_gives_none(h: Harness) -> None:
    h.add_item(user("Tell me something about the sea, please."))
    rid, _ = h.respond()
    out = h.llm(rid, TextDelta("The sea is large and salty."), Finished())
    usage = out[-1]["response"]["usage"]
    assert usage["input_tokens"] > 0 and usage["output_tokens"] > 0
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    assert usage["output_token_details"]["text_tokens"] == usage["output_tokens"]
    # a longer answer costs more
    rid, _ = h.respond()
    longer = h.llm(rid, TextDelta("The sea is large and salty. " * 10), Finished())[-1]["response"][
        "usage"
    ]
    assert longer["output_tokens"] > usage["output_tokens"]
    assert longer["input_tokens"] > usage["input_tokens"]  # the first answer joined the context


def test_cancelled_response_still_reports_usage(h: Harness) -> None:
    rid, _ = h.respond()
    h.llm(rid, TextDelta("Some words here"))
    usage = h.send({"type": "response.cancel"})[-1]["response"]["usage"]
    assert usage["output_tokens"] > 0
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]


# === per-response overrides reach the LLM request ===============================================


def test_session_settings_reach_the_request(h: Harness) -> None:
    h.update(
        instructions="Be kind.",
        tools=[WEATHER_TOOL],
        temperature=0.4,
        max_output_tokens=300,
        tool_choice="required",
        parallel_tool_calls=False,
    )
    _, effect = h.respond()
    request = effect.request
    assert request.instructions == "Be kind."
    assert request.tools == (
        FunctionSpec("get_weather", WEATHER_TOOL["description"], WEATHER_TOOL["parameters"]),
    )
    assert (request.tool_choice, request.forced_function) == ("required", None)
    assert request.temperature == 0.4 and request.max_output_tokens == 300
    assert request.parallel_tool_calls is False
    assert effect.voice is None  # text session: nothing to speak


def test_per_response_overrides_reach_the_request_and_leave_the_session(h: Harness) -> None:
    h.update(
        instructions="Session instructions.",
        tools=[WEATHER_TOOL],
        temperature=0.4,
        max_output_tokens=300,
    )
    session_before = h.wire()
    out = h.send(
        {
            "type": "response.create",
            "response": {
                "instructions": "Response instructions.",
                "tools": [TIME_TOOL],
                "tool_choice": {"type": "function", "name": "get_time"},
                "temperature": 1.1,
                "max_output_tokens": 42,
                "parallel_tool_calls": True,
                "metadata": {"topic": "time", "turn": "3"},
            },
        }
    )
    created, effect = out
    request = effect.request
    assert request.instructions == "Response instructions."
    assert request.tools == (FunctionSpec("get_time", "The time now.", {}),)
    assert (request.tool_choice, request.forced_function) == ("required", "get_time")
    assert request.temperature == 1.1 and request.max_output_tokens == 42
    assert request.parallel_tool_calls is True
    assert created["response"]["metadata"] == {"topic": "time", "turn": "3"}
    assert created["response"]["max_output_tokens"] == 42
    done = h.llm(effect.response_id, Finished())[-1]["response"]
    assert done["metadata"] == {"topic": "time", "turn": "3"} and done["max_output_tokens"] == 42
    assert h.wire() == session_before
    # the next response goes back to the session's settings
    _, effect = h.respond()
    assert (
        effect.request.instructions == "Session instructions." and effect.request.temperature == 0.4
    )


@pytest.mark.parametrize(
    ("tool_choice", "expected"),
    [
        ("auto", ("auto", None)),
        ("none", ("none", None)),
        ("required", ("required", None)),
        ({"type": "function", "name": "get_weather"}, ("required", "get_weather")),
    ],
)
def test_tool_choice_in_the_request(
    h: Harness, tool_choice: Any, expected: tuple[str, str | None]
) -> None:
    h.update(tools=[WEATHER_TOOL])
    _, effect = h.respond(tool_choice=tool_choice)
    assert (effect.request.tool_choice, effect.request.forced_function) == expected


def test_no_tools_means_no_tool_choice(h: Harness) -> None:
    _, effect = h.respond(tool_choice={"type": "function", "name": "get_weather"})
    assert effect.request.tools == ()
    assert (effect.request.tool_choice, effect.request.forced_function) == ("none", None)


def test_empty_tools_override_removes_the_session_tools(h: Harness) -> None:
    h.update(tools=[WEATHER_TOOL])
    _, effect = h.respond(tools=[])
    assert effect.request.tools == () and effect.request.tool_choice == "none"


@pytest.mark.parametrize(
    ("session_value", "response_value", "request_value", "echoed"),
    [
        ("inf", None, None, "inf"),
        (300, None, 300, 300),
        (300, "inf", None, "inf"),
        ("inf", 17, 17, 17),
    ],
)
def test_max_output_tokens(
    h: Harness, session_value: Any, response_value: Any, request_value: int | None, echoed: Any
) -> None:
    h.update(max_output_tokens=session_value)
    params = {} if response_value is None else {"max_output_tokens": response_value}
    rid, effect = h.respond(**params)
    assert effect.request.max_output_tokens == request_value
    assert h.llm(rid, Finished())[-1]["response"]["max_output_tokens"] == echoed


def test_output_modalities_override(h: Harness) -> None:
    h.update(audio={"output": {"voice": "cedar", "speed": 1.2}})
    created = h.send({"type": "response.create", "response": {"output_modalities": ["audio"]}})
    assert created[0]["response"]["output_modalities"] == ["audio"]
    assert created[0]["response"]["audio"]["output"]["voice"] == "cedar"
    effect = created[1]
    assert isinstance(effect, GenerateResponse)
    assert (effect.voice, effect.speed) == ("cedar", 1.2)
    h.send({"type": "response.cancel"})
    _, effect = h.respond(output_modalities=["text"])
    assert effect.voice is None


def test_per_response_voice_and_format(raw: Harness) -> None:
    out = raw.send(
        {
            "type": "response.create",
            "response": {"audio": {"output": {"voice": "verse", "format": {"type": "audio/pcmu"}}}},
        }
    )
    response = out[0]["response"]
    assert response["output_modalities"] == ["audio"]
    assert response["audio"]["output"] == {"voice": "verse", "format": {"type": "audio/pcmu"}}
    assert isinstance(out[1], GenerateResponse) and out[1].voice == "verse"
    assert raw.wire()["audio"]["output"]["voice"] == "alloy"


def test_temperature_is_passed_only_when_set(h: Harness) -> None:
    _, effect = h.respond()
    assert effect.request.temperature is None
    h.send({"type": "response.cancel"})
    _, effect = h.respond(temperature=0.0)
    assert effect.request.temperature == 0.0


def test_the_request_is_a_snapshot(h: Harness) -> None:
    h.add_item(user("before"))
    _, effect = h.respond()
    h.add_item(user("after"))
    h.update(instructions="changed later")
    assert effect.request.context == (ChatTurn("user", "before"),)
    assert effect.request.instructions != "changed later"


# === errors carry the client's event_id, and the session goes on ================================


@pytest.mark.parametrize(
    "event",
    [
        {"type": "no.such.event"},
        {"type": "session.update"},
        {"type": "session.update", "session": {"type": "realtime", "bogus": 1}},
        {"type": "session.update", "session": {"type": "realtime", "instructions": 5}},
        {"type": "session.update", "session": {"type": "transcription"}},
        {
            "type": "conversation.item.create",
            "item": {"type": "message", "role": "user", "content": "hi"},
        },
        {"type": "conversation.item.create", "item": {"type": "user", "text": "hi"}},
        {
            "type": "conversation.item.create",
            "item": {
                "type": "message",
                "role": "system",
                "content": [{"type": "output_text", "text": "x"}],
            },
        },
        {"type": "conversation.item.create", "previous_item_id": "item_x", "item": user("x")},
        {"type": "conversation.item.retrieve", "item_id": "item_x"},
        {"type": "conversation.item.delete", "item_id": "item_x"},
        {"type": "conversation.item.delete"},
        {"type": "response.create", "response": {"temperature": 9}},
        {"type": "response.create", "response": {"conversation": "elsewhere"}},
        {
            "type": "response.create",
            "response": {"input": [{"type": "item_reference", "id": "item_x"}]},
        },
        {"type": "response.create", "response": {"output_modalities": ["text", "audio"]}},
        {"type": "response.cancel"},
        {"type": "response.cancel", "response_id": "resp_x"},
    ],
    ids=lambda event: json.dumps(event)[:60],
)
def test_every_error_carries_the_client_event_id(h: Harness, event: dict[str, Any]) -> None:
    before = (h.wire(), ids(h))
    error = error_of(h.send({**event, "event_id": "evt_client_42"}))
    assert error["event_id"] == "evt_client_42"
    assert error["type"] == "invalid_request_error" and error["code"] and error["message"]
    assert (h.wire(), ids(h)) == before
    assert (
        types(h.send({"type": "conversation.item.create", "item": user("ok")}))[-1]
        == "conversation.item.done"
    )


def test_error_for_an_active_response_carries_the_event_id(h: Harness) -> None:
    h.respond()
    error = error_of(h.send({"type": "response.create", "event_id": "evt_dup"}))
    assert error["event_id"] == "evt_dup"


def test_errors_without_an_event_id_say_so(h: Harness) -> None:
    assert (
        error_of(h.send({"type": "conversation.item.delete", "item_id": "nope"}))["event_id"]
        is None
    )
    h.session.reject(ProtocolError("not JSON", "invalid_json"))
    assert error_of(h.drain())["event_id"] is None
