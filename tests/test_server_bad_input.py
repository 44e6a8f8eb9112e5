"""Bad client input over a real socket: every mistake becomes an OpenAI-shaped `error` event
and the session goes on. Also conversation editing and out-of-band / overridden responses.

Inputs the SDK cannot send go through the raw `websocket-client` library; every frame received
is validated strictly with the SDK's own pydantic types.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import openai
import orjson
import pytest
import websocket
from conftest import API_KEY, WEATHER_TOOL, recv, recv_until, validated
from scripted_llm import Text

ERROR_KEYS = {"type", "code", "message", "param", "event_id"}


def _user(text: str, item_id: str | None = None) -> dict[str, Any]:
    item: dict[str, Any] = {
        "type": "message",
        "role": "user",
        "content": [{"type": "input_text", "text": text}],
    }
    if item_id is not None:
        item["id"] = item_id
    return item


class Raw:
    """A raw `websocket-client` connection whose every received frame is validated."""

    def __init__(self, ws: websocket.WebSocket) -> None:
        self.ws = ws

    def send(self, event: dict[str, Any] | str) -> None:
        self.ws.send(event if isinstance(event, str) else json.dumps(event))

    def recv(self) -> Any:
        frame = self.ws.recv()
        assert isinstance(frame, str), "server events are text frames"
        self.last_raw = orjson.loads(frame)
        return validated(frame)

    def recv_until(self, event_type: str, limit: int = 500) -> list[Any]:
        events = []
        for _ in range(limit):
            events.append(self.recv())
            if events[-1].type == event_type:
                return events
        raise AssertionError(f"no {event_type} within {limit} events: {[e.type for e in events]}")

    def expect_error(self, code: str, param: str | None, event_id: str | None) -> Any:
        """The next event is an `error` with every field present and these values."""
        event = self.recv()
        assert event.type == "error", f"expected an error, got {event.type}: {self.last_raw}"
        assert set(self.last_raw["error"]) == ERROR_KEYS, self.last_raw
        error = event.error
        assert error.type == "invalid_request_error"
        assert (error.code, error.param, error.event_id) == (code, param, event_id), self.last_raw
        assert error.message
        return error

    def text_turn(self, llm: Any, text: str = "Still there?") -> None:
        """Prove the socket is open and the session works: a full text turn."""
        llm.script(Text(["Yes, ", "still here."]))
        self.send(
            {
                "type": "session.update",
                "session": {"type": "realtime", "output_modalities": ["text"]},
            }
        )
        assert self.recv().type == "session.updated"
        self.send({"type": "conversation.item.create", "item": _user(text)})
        assert [e.type for e in self.recv_until("conversation.item.done")] == [
            "conversation.item.added",
            "conversation.item.done",
        ]
        self.send({"type": "response.create"})
        done = self.recv_until("response.done")[-1].response
        assert done.status == "completed"
        assert done.output[0].content[0].text == "Yes, still here."
        assert llm.last_request["messages"][-1] == {"role": "user", "content": text}


@pytest.fixture
def raw(server) -> Iterator[Raw]:
    ws = websocket.create_connection(
        f"ws://127.0.0.1:{server.port}/v1/realtime?model=gpt-realtime",
        header=[f"Authorization: Bearer {API_KEY}"],
        timeout=10,
    )
    connection = Raw(ws)
    assert connection.recv().type == "session.created"
    try:
        yield connection
    finally:
        ws.close()


# --- frames that are not events ----------------------------------------------------------------


def test_invalid_json_gets_invalid_json_error_and_session_goes_on(raw, llm) -> None:
    raw.send('{"type": "response.create",')
    error = raw.expect_error("invalid_json", None, None)
    assert "JSON" in error.message
    raw.text_turn(llm)


def _deep(depth: int, event_id_first: bool) -> str:
    """A `response.cancel` whose `response_id` nests `depth` arrays, with its event_id before
    or after the deep part."""
    head = '{"type": "response.cancel", "response_id": ' + "[" * depth + "]" * depth
    return (
        '{"event_id": "evt_deep", ' + head[1:] + "}"
        if event_id_first
        else head + ', "event_id": "evt_deep"}'
    )


@pytest.mark.parametrize("event_id_first", [True, False], ids=["id-first", "id-last"])
@pytest.mark.parametrize("depth", [250, 3000])  # past the GA parser; past orjson too
def test_an_event_too_deep_gets_an_error_naming_its_event_id(raw, llm, depth, event_id_first):
    """Was: the error had `event_id` null, so the client could not tell which event failed."""
    raw.send(_deep(depth, event_id_first))
    error = raw.expect_error("invalid_json", None, "evt_deep")
    assert "deeper than 200 levels" in error.message
    raw.text_turn(llm)


@pytest.mark.parametrize("depth", [100, 3000])  # past the beta limit; past orjson too
def test_a_beta_event_too_deep_gets_an_error_naming_its_event_id(server, depth) -> None:
    ws = websocket.create_connection(
        f"ws://127.0.0.1:{server.port}/v1/realtime?model=gpt-4o-realtime-preview",
        header=[f"Authorization: Bearer {API_KEY}", "OpenAI-Beta: realtime=v1"],
        timeout=10,
    )
    try:
        assert validated(ws.recv(), beta=True).type == "session.created"
        ws.send(_deep(depth, event_id_first=False))
        error = validated(ws.recv(), beta=True)
        assert error.type == "error", error
        assert (error.error.code, error.error.event_id) == ("invalid_json", "evt_deep")
        assert "deeper than 64 levels" in error.error.message
        ws.send(json.dumps({"type": "input_audio_buffer.clear"}))  # the session goes on
        assert validated(ws.recv(), beta=True).type == "input_audio_buffer.cleared"
    finally:
        ws.close()


def test_json_array_gets_invalid_event_error_and_session_goes_on(raw, llm) -> None:
    raw.send('[{"type": "response.create"}]')
    error = raw.expect_error("invalid_event", None, None)
    assert "object" in error.message and "array" in error.message
    raw.text_turn(llm)


def test_binary_frame_gets_error_and_session_goes_on(raw, llm) -> None:
    raw.ws.send_binary(b'{"type": "response.create"}')
    error = raw.expect_error("invalid_binary_frame", None, None)
    assert "text frame" in error.message
    raw.text_turn(llm)


def test_unknown_event_type_lists_supported_types(raw, llm) -> None:
    raw.send({"type": "conversation.item.created", "event_id": "evt_unknown"})
    error = raw.expect_error("invalid_value", "type", "evt_unknown")
    assert "'conversation.item.created'" in error.message
    for supported in (
        "session.update",
        "input_audio_buffer.append",
        "input_audio_buffer.commit",
        "input_audio_buffer.clear",
        "conversation.item.create",
        "conversation.item.retrieve",
        "conversation.item.delete",
        "conversation.item.truncate",
        "response.create",
        "response.cancel",
        "output_audio_buffer.clear",
    ):
        assert f"'{supported}'" in error.message
    raw.text_turn(llm)


# --- schema violations -------------------------------------------------------------------------

BAD_EVENTS = {
    "seed2_user_shape": (
        {"type": "conversation.item.create", "item": {"type": "user", "text": "hi"}},
        "invalid_value",
        "item.type",
        ['{"type": "message", "role": "user", "content": [{"type": "input_text"'],
    ),
    "seed2_function_result_shape": (
        {
            "type": "conversation.item.create",
            "item": {"type": "function_result", "function_call": {"name": "f", "arguments": "1"}},
        },
        "invalid_value",
        "item.type",
        ['"type": "function_call_output"', '"call_id"', '"output"'],
    ),
    "unknown_session_field": (
        {"type": "session.update", "session": {"type": "realtime", "foo": 1}},
        "unknown_parameter",
        "session.foo",
        ["'session.foo'"],
    ),
    "unknown_event_field": (
        {"type": "response.create", "responce": {}},
        "unknown_parameter",
        "responce",
        ["'responce'"],
    ),
    "instructions_not_a_string": (
        {"type": "session.update", "session": {"type": "realtime", "instructions": 5}},
        "invalid_type",
        "session.instructions",
        ["string", "integer"],
    ),
    "modalities_not_an_array": (
        {"type": "session.update", "session": {"type": "realtime", "output_modalities": "text"}},
        "invalid_type",
        "session.output_modalities",
        ["array", "string"],
    ),
    "temperature_not_a_number": (
        {"type": "response.create", "response": {"temperature": "hot"}},
        "invalid_type",
        "response.temperature",
        ["string"],
    ),
    "session_max_output_tokens_out_of_range": (
        {"type": "session.update", "session": {"type": "realtime", "max_output_tokens": 5000}},
        "invalid_value",
        "session.max_output_tokens",
        ["4096"],
    ),
    "response_max_output_tokens_out_of_range": (
        {"type": "response.create", "response": {"max_output_tokens": 5000}},
        "invalid_value",
        "response.max_output_tokens",
        ["4096"],
    ),
    "unknown_modality": (
        {"type": "session.update", "session": {"type": "realtime", "output_modalities": ["video"]}},
        "invalid_value",
        "session.output_modalities[0]",
        ["'video'"],
    ),
    "missing_session": (
        {"type": "session.update"},
        "missing_required_parameter",
        "session",
        ["'session'"],
    ),
    "missing_item_id": (
        {"type": "conversation.item.retrieve"},
        "missing_required_parameter",
        "item_id",
        ["'item_id'"],
    ),
    "missing_tool_output": (
        {
            "type": "conversation.item.create",
            "item": {"type": "function_call_output", "call_id": "c1"},
        },
        "missing_required_parameter",
        "item.output",
        ["'item.output'"],
    ),
    "missing_type": ({"item_id": "x"}, "missing_required_parameter", "type", ["'type'"]),
    "retrieve_unknown_item": (
        {"type": "conversation.item.retrieve", "item_id": "item_nope"},
        "item_not_found",
        "item_id",
        ["item_nope"],
    ),
    "delete_unknown_item": (
        {"type": "conversation.item.delete", "item_id": "item_nope"},
        "item_not_found",
        "item_id",
        ["item_nope"],
    ),
    "truncate_unknown_item": (
        {
            "type": "conversation.item.truncate",
            "item_id": "item_nope",
            "content_index": 0,
            "audio_end_ms": 0,
        },
        "item_not_found",
        "item_id",
        ["item_nope"],
    ),
    "truncate_negative_audio_end": (
        {
            "type": "conversation.item.truncate",
            "item_id": "item_nope",
            "content_index": 0,
            "audio_end_ms": -1,
        },
        "invalid_value",
        "audio_end_ms",
        ["audio_end_ms"],
    ),
    "unknown_previous_item_id": (
        {"type": "conversation.item.create", "previous_item_id": "item_nope", "item": _user("x")},
        "previous_item_not_found",
        "previous_item_id",
        ["item_nope", '"root"'],
    ),
    "reference_to_unknown_item": (
        {
            "type": "response.create",
            "response": {
                "conversation": "none",
                "input": [{"type": "item_reference", "id": "item_nope"}],
            },
        },
        "item_not_found",
        "response.input",
        ["item_nope"],
    ),
    "cancel_with_nothing_active": (
        {"type": "response.cancel"},
        "response_cancel_not_active",
        None,
        ["no active response"],
    ),
    "cancel_unknown_response": (
        {"type": "response.cancel", "response_id": "resp_nope"},
        "response_cancel_not_active",
        "response_id",
        ["resp_nope"],
    ),
    "unknown_conversation": (
        {"type": "response.create", "response": {"conversation": "conv_other"}},
        "invalid_value",
        "response.conversation",
        ["'auto'", "'none'"],
    ),
}


@pytest.mark.parametrize(
    ("event", "code", "param", "fragments"), list(BAD_EVENTS.values()), ids=list(BAD_EVENTS)
)
def test_bad_event_gets_error_with_event_id_and_session_goes_on(
    raw, llm, event, code, param, fragments
) -> None:
    raw.send({**event, "event_id": "evt_bad_1"})
    error = raw.expect_error(code, param, "evt_bad_1")
    for fragment in fragments:
        assert fragment in error.message
    raw.text_turn(llm)
    assert len(llm.requests) == 1  # the bad event started no response


def test_bad_event_without_event_id_gets_error_with_null_event_id(raw, llm) -> None:
    raw.send({"type": "session.update", "session": {"type": "realtime", "foo": 1}})
    raw.expect_error("unknown_parameter", "session.foo", None)
    raw.text_turn(llm)


@pytest.mark.parametrize(
    ("role", "part", "allowed"),
    [
        ("user", {"type": "output_text", "text": "x"}, "input_text"),
        ("assistant", {"type": "input_audio", "audio": ""}, "output_text"),
        ("system", {"type": "input_image", "image_url": "data:image/png;base64,"}, "input_text"),
    ],
)
def test_content_not_allowed_for_role_is_refused(raw, llm, role, part, allowed) -> None:
    raw.send(
        {
            "type": "conversation.item.create",
            "event_id": "evt_role",
            "item": {"type": "message", "role": role, "content": [part]},
        }
    )
    event = raw.recv()
    assert event.type == "error"
    assert set(raw.last_raw["error"]) == ERROR_KEYS
    assert (event.error.code, event.error.event_id) == ("invalid_value", "evt_role")
    assert event.error.param is not None and event.error.param.startswith("item")
    assert f"'{part['type']}'" in event.error.message and allowed in event.error.message
    raw.text_turn(llm)
    assert [m["role"] for m in llm.last_request["messages"]] == ["system", "user"]


def test_content_not_allowed_for_role_names_the_part_in_param(raw) -> None:
    raw.send(
        {
            "type": "conversation.item.create",
            "event_id": "evt_role",
            "item": {
                "type": "message",
                "role": "user",
                "content": [{"type": "output_text", "text": "x"}],
            },
        }
    )
    raw.expect_error("invalid_value", "item.content[0].type", "evt_role")


def test_text_part_without_text_is_refused_and_session_goes_on(raw, llm) -> None:
    raw.send(
        {
            "type": "conversation.item.create",
            "event_id": "evt_notext",
            "item": {"type": "message", "role": "user", "content": [{"type": "input_text"}]},
        }
    )
    event = raw.recv()
    assert event.type == "error"
    assert set(raw.last_raw["error"]) == ERROR_KEYS
    assert (event.error.code, event.error.event_id) == ("missing_required_parameter", "evt_notext")
    raw.text_turn(llm)
    assert [m["content"] for m in llm.last_request["messages"][1:]] == ["Still there?"]


def test_text_part_without_text_names_the_missing_field(raw) -> None:
    raw.send(
        {
            "type": "conversation.item.create",
            "event_id": "evt_notext",
            "item": {"type": "message", "role": "user", "content": [{"type": "input_text"}]},
        }
    )
    error = raw.expect_error("missing_required_parameter", "item.content[0].text", "evt_notext")
    assert "'item.content[0].text'" in error.message


def test_truncate_of_a_user_text_item_is_refused_and_the_item_kept(raw, llm) -> None:
    _create(raw, _user("typed, not spoken", "item_typed"))
    raw.send(
        {
            "type": "conversation.item.truncate",
            "event_id": "evt_trunc",
            "item_id": "item_typed",
            "content_index": 0,
            "audio_end_ms": 0,
        }
    )
    error = raw.expect_error("invalid_value", "item_id", "evt_trunc")
    assert "item_typed" in error.message and "audio" in error.message
    raw.text_turn(llm)
    assert [m["content"] for m in llm.last_request["messages"][1:]] == [
        "typed, not spoken",
        "Still there?",
    ]


def test_duplicate_item_id_is_refused_and_the_original_is_kept(raw, llm) -> None:
    raw.send({"type": "conversation.item.create", "item": _user("the original", "item_dup")})
    assert [e.type for e in raw.recv_until("conversation.item.done")] == [
        "conversation.item.added",
        "conversation.item.done",
    ]
    raw.send(
        {
            "type": "conversation.item.create",
            "event_id": "evt_dup",
            "item": _user("the impostor", "item_dup"),
        }
    )
    error = raw.expect_error("item_id_already_exists", "item.id", "evt_dup")
    assert "item_dup" in error.message
    raw.send({"type": "conversation.item.retrieve", "item_id": "item_dup"})
    retrieved = raw.recv()
    assert retrieved.type == "conversation.item.retrieved"
    assert retrieved.item.content[0].text == "the original"
    raw.text_turn(llm, "And now?")
    assert [m["content"] for m in llm.last_request["messages"][1:]] == ["the original", "And now?"]


def test_many_bad_inputs_in_a_row_leave_the_session_intact(raw, llm) -> None:
    raw.send({"type": "conversation.item.create", "item": _user("kept", "item_kept")})
    raw.recv_until("conversation.item.done")
    raw.send("nope")
    raw.ws.send_binary(b"\x00\x01")
    raw.send("[]")
    raw.send({"type": "nope", "event_id": "e1"})
    raw.send(
        {
            "type": "conversation.item.create",
            "event_id": "e2",
            "item": {"type": "user", "text": "hi"},
        }
    )
    raw.send({"type": "response.cancel", "event_id": "e3"})
    codes = [
        raw.expect_error(code, param, event_id).code
        for code, param, event_id in [
            ("invalid_json", None, None),
            ("invalid_binary_frame", None, None),
            ("invalid_event", None, None),
            ("invalid_value", "type", "e1"),
            ("invalid_value", "item.type", "e2"),
            ("response_cancel_not_active", None, "e3"),
        ]
    ]
    assert len(codes) == 6
    raw.text_turn(llm, "After all that?")
    assert [m["content"] for m in llm.last_request["messages"][1:]] == ["kept", "After all that?"]


# --- seed 2's shapes through the SDK itself ------------------------------------------------


def test_seed2_item_shapes_through_ga_sdk_get_errors_naming_the_right_shape(client, llm) -> None:
    with client.realtime.connect(model="gpt-realtime") as conn:
        assert recv(conn).type == "session.created"
        conn.conversation.item.create(item={"type": "user", "text": "Hello! How are you?"})
        error = recv(conn)
        assert error.type == "error"
        assert (error.error.code, error.error.param) == ("invalid_value", "item.type")
        assert (
            '{"type": "message", "role": "user", "content": [{"type": "input_text"'
            in error.error.message
        )
        conn.conversation.item.create(
            item={"type": "function_result", "function_call": {"name": "f", "arguments": "1"}},
            event_id="evt_seed2",
        )
        error = recv(conn)
        assert error.type == "error"
        assert (error.error.code, error.error.param, error.error.event_id) == (
            "invalid_value",
            "item.type",
            "evt_seed2",
        )
        assert "function_call_output" in error.error.message and "call_id" in error.error.message
        # The session goes on.
        conn.session.update(session={"type": "realtime", "output_modalities": ["text"]})
        assert recv(conn).type == "session.updated"
        conn.conversation.item.create(item=_user("Hello! How are you?"))
        conn.response.create()
        assert recv_until(conn, "response.done")[-1].response.status == "completed"
    assert llm.last_request["messages"][1:] == [{"role": "user", "content": "Hello! How are you?"}]


def test_seed2_script_through_beta_sdk_gets_error_then_works(server, llm) -> None:
    """Seed 2 as written: beta connect, a session.update without `type`, the wrong item shape."""
    # The beta SDK always dials wss:// unless given a WebSocket base URL.
    client = openai.OpenAI(
        base_url=server.url + "/v1",
        api_key=API_KEY,
        websocket_base_url=f"ws://127.0.0.1:{server.port}/v1",
    )
    with client.beta.realtime.connect(model="gpt-4o-realtime-preview") as conn:
        assert recv(conn, beta=True).type == "session.created"
        conn.session.update(
            session={
                "instructions": "Please respond in very short phrases.",
                "modalities": ["text"],
            }
        )
        assert recv(conn, beta=True).type == "session.updated"
        conn.conversation.item.create(item={"type": "user", "text": "Hello! How are you?"})
        error = recv(conn, beta=True)
        assert error.type == "error"
        assert error.error.param == "item.type"
        assert '"type": "message", "role": "user"' in error.error.message
        conn.conversation.item.create(
            item={
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "Hello! How are you?"}],
            }
        )
        conn.response.create()
        assert recv_until(conn, "response.done", beta=True)[-1].response.status == "completed"
    assert llm.last_request["messages"] == [
        {"role": "system", "content": "Please respond in very short phrases."},
        {"role": "user", "content": "Hello! How are you?"},
    ]


# --- conversation editing --------------------------------------------------------------------


def _create(raw: Raw, item: dict[str, Any], previous_item_id: str | None = None) -> Any:
    event: dict[str, Any] = {"type": "conversation.item.create", "item": item}
    if previous_item_id is not None:
        event["previous_item_id"] = previous_item_id
    raw.send(event)
    added, done = raw.recv_until("conversation.item.done")
    assert added.type == "conversation.item.added"
    assert added.previous_item_id == done.previous_item_id
    return added


def _respond(raw: Raw, response: dict[str, Any] | None = None) -> list[Any]:
    raw.send(
        {"type": "response.create", **({"response": response} if response is not None else {})}
    )
    events = raw.recv_until("response.done")
    assert events[-1].response.status == "completed", events[-1].response
    return events


def _text_session(raw: Raw, **session: Any) -> None:
    raw.send(
        {
            "type": "session.update",
            "session": {"type": "realtime", "output_modalities": ["text"], **session},
        }
    )
    assert raw.recv().type == "session.updated"


def test_previous_item_id_inserts_in_the_middle_and_root_inserts_first(raw, llm) -> None:
    _text_session(raw, instructions="Session rules.")
    assert _create(raw, _user("A", "item_a")).previous_item_id is None
    assert _create(raw, _user("C", "item_c")).previous_item_id == "item_a"
    assert (
        _create(raw, _user("B", "item_b"), previous_item_id="item_a").previous_item_id == "item_a"
    )
    assert _create(raw, _user("Z", "item_z"), previous_item_id="root").previous_item_id is None
    # Appending again lands after the last item, C.
    assert _create(raw, _user("D", "item_d")).previous_item_id == "item_c"
    events = _respond(raw)
    assert [m["content"] for m in llm.last_request["messages"]] == [
        "Session rules.",
        "Z",
        "A",
        "B",
        "C",
        "D",
    ]
    added = next(e for e in events if e.type == "conversation.item.added")
    assert added.previous_item_id == "item_d"


def test_retrieve_returns_the_item(raw, llm) -> None:
    _create(raw, _user("Remember me.", "item_keep"))
    raw.send({"type": "conversation.item.retrieve", "item_id": "item_keep", "event_id": "evt_get"})
    retrieved = raw.recv()
    assert retrieved.type == "conversation.item.retrieved"
    item = retrieved.item
    assert (item.id, item.type, item.role, item.status) == (
        "item_keep",
        "message",
        "user",
        "completed",
    )
    assert item.content[0].type == "input_text" and item.content[0].text == "Remember me."


def test_retrieve_returns_an_assistant_output_item(raw, llm) -> None:
    _text_session(raw)
    _create(raw, _user("Say something."))
    llm.script(Text(["Some", "thing."]))
    done = _respond(raw)[-1].response
    output_id = done.output[0].id
    raw.send({"type": "conversation.item.retrieve", "item_id": output_id})
    retrieved = raw.recv()
    assert retrieved.type == "conversation.item.retrieved"
    assert retrieved.item.id == output_id and retrieved.item.role == "assistant"
    assert retrieved.item.content[0].text == "Something."


def test_deleted_item_is_gone_and_no_longer_reaches_the_llm(raw, llm) -> None:
    _text_session(raw, instructions="Rules.")
    _create(raw, _user("secret", "item_secret"))
    _create(raw, _user("public", "item_public"))
    raw.send({"type": "conversation.item.delete", "item_id": "item_secret", "event_id": "evt_del"})
    deleted = raw.recv()
    assert deleted.type == "conversation.item.deleted"
    assert deleted.item_id == "item_secret"
    _respond(raw)
    assert llm.last_request["messages"] == [
        {"role": "system", "content": "Rules."},
        {"role": "user", "content": "public"},
    ]
    raw.send(
        {"type": "conversation.item.retrieve", "item_id": "item_secret", "event_id": "evt_gone"}
    )
    raw.expect_error("item_not_found", "item_id", "evt_gone")
    # The id is free again once its item is deleted.
    assert _create(raw, _user("again", "item_secret")).item.id == "item_secret"


# --- out-of-band responses and per-response overrides ------------------------------------


def test_out_of_band_response_leaves_the_conversation_alone(raw, llm) -> None:
    _text_session(raw, instructions="Session rules.")
    _create(raw, _user("The sky is blue today.", "item_fact"))
    llm.script(Text(["Summary: ", "blue sky."]), Text(["Normal answer."]))
    events = _respond(
        raw,
        {
            "conversation": "none",
            "input": [{"type": "item_reference", "id": "item_fact"}, _user("Summarize the above.")],
            "instructions": "You summarize.",
            "metadata": {"purpose": "summary"},
        },
    )
    types = {e.type for e in events}
    assert "conversation.item.added" not in types and "conversation.item.done" not in types
    assert "response.output_item.added" in types
    created, done = events[0].response, events[-1].response
    assert created.conversation_id is None and done.conversation_id is None
    assert created.metadata == {"purpose": "summary"} and done.metadata == {"purpose": "summary"}
    assert done.output[0].content[0].text == "Summary: blue sky."
    assert llm.last_request["messages"] == [
        {"role": "system", "content": "You summarize."},
        {"role": "user", "content": "The sky is blue today."},
        {"role": "user", "content": "Summarize the above."},
    ]
    # The default conversation is unchanged: neither the out-of-band input nor its output joined it.
    raw.send(
        {"type": "conversation.item.retrieve", "item_id": done.output[0].id, "event_id": "evt_oob"}
    )
    raw.expect_error("item_not_found", "item_id", "evt_oob")
    events = _respond(raw)
    assert events[-1].response.conversation_id is not None
    assert events[-1].response.metadata is None
    added = next(e for e in events if e.type == "conversation.item.added")
    assert added.previous_item_id == "item_fact"
    assert llm.last_request["messages"] == [
        {"role": "system", "content": "Session rules."},
        {"role": "user", "content": "The sky is blue today."},
    ]


def test_out_of_band_response_may_run_beside_a_conversation_response(raw, llm) -> None:
    _text_session(raw)
    _create(raw, _user("Talk for a while."))
    llm.script(Text(["word "] * 50, delay=0.01), Text(["side note"]))
    raw.send({"type": "response.create"})
    raw.recv_until("response.output_text.delta")
    raw.send(
        {"type": "response.create", "response": {"conversation": "none", "input": [_user("Side?")]}}
    )
    done = [raw.recv_until("response.done", limit=1000)[-1].response for _ in range(2)]
    assert [r.status for r in done] == ["completed", "completed"]
    finished = {r.conversation_id is None: r for r in done}
    assert set(finished) == {True, False}
    assert finished[True].output[0].content[0].text == "side note"
    assert llm.requests[1]["messages"][1:] == [{"role": "user", "content": "Side?"}]


OVERRIDES = {
    "instructions": (
        {"instructions": "Answer in French."},
        lambda sent: sent["messages"][0] == {"role": "system", "content": "Answer in French."},
    ),
    "tools_and_required": (
        {"tools": [WEATHER_TOOL], "tool_choice": "required"},
        lambda sent: (
            sent.get("tool_choice") == "required"
            and [t["function"]["name"] for t in sent["tools"]] == ["get_weather"]
        ),
    ),
    "forced_function": (
        {"tools": [WEATHER_TOOL], "tool_choice": {"type": "function", "name": "get_weather"}},
        lambda sent: (
            sent.get("tool_choice") == {"type": "function", "function": {"name": "get_weather"}}
        ),
    ),
    "max_output_tokens": ({"max_output_tokens": 42}, lambda sent: sent.get("max_tokens") == 42),
    "temperature": ({"temperature": 0.3}, lambda sent: sent.get("temperature") == 0.3),
    "temperature_zero": ({"temperature": 0}, lambda sent: sent.get("temperature") == 0),
}


@pytest.mark.parametrize(("override", "reached"), list(OVERRIDES.values()), ids=list(OVERRIDES))
def test_per_response_override_reaches_the_llm_for_that_response_only(
    raw, llm, override, reached
) -> None:
    _text_session(raw, instructions="Session rules.")
    _create(raw, _user("Hi."))
    events = _respond(raw, override)
    assert reached(llm.last_request), llm.last_request
    if "max_output_tokens" in override:
        assert events[-1].response.max_output_tokens == override["max_output_tokens"]
    _respond(raw)
    plain = llm.last_request
    assert not reached(plain), plain
    assert plain["messages"][0] == {"role": "system", "content": "Session rules."}
    assert not {"tools", "tool_choice", "max_tokens", "temperature"} & set(plain)
