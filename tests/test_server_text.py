"""Text and tools through the official `openai` SDK over a real socket, GA dialect."""

from __future__ import annotations

import json

import pytest
from conftest import WEATHER_TOOL, arecv_until, recv, recv_until
from scripted_llm import Fail, Garbage, Text, ToolCalls

FULL_SEQUENCE = [
    "response.created",
    "response.output_item.added",
    "conversation.item.added",
    "response.content_part.added",
    "response.output_text.delta",
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
    "conversation.item.done",
    "response.done",
]


def _user(text: str) -> dict:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


def test_session_created_first_and_reports_requested_model(client) -> None:
    with client.realtime.connect(model="gpt-4o-realtime-preview") as conn:
        created = recv(conn)
        assert created.type == "session.created"
        assert created.session.model == "gpt-4o-realtime-preview"
        assert created.session.type == "realtime"
        assert created.session.output_modalities == ["audio"]
        assert created.session.max_output_tokens == "inf"
        assert created.session.audio.input.format.type == "audio/pcm"
        assert created.session.audio.input.turn_detection.type == "server_vad"


def test_text_turn_streams_full_ga_sequence(client, llm) -> None:
    llm.script(Text(["The ", "answer ", "is ", "42."]))
    with client.realtime.connect(model="gpt-realtime") as conn:
        recv(conn)
        conn.session.update(
            session={"type": "realtime", "output_modalities": ["text"], "instructions": "Be brief."}
        )
        assert recv(conn).type == "session.updated"
        conn.conversation.item.create(item=_user("What is the answer?"))
        assert [e.type for e in recv_until(conn, "conversation.item.done")] == [
            "conversation.item.added",
            "conversation.item.done",
        ]
        conn.response.create()
        events = recv_until(conn, "response.done")
    types = [e.type for e in events]
    deduped = [t for i, t in enumerate(types) if i == 0 or t != types[i - 1]]
    assert deduped == FULL_SEQUENCE
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert deltas == ["The ", "answer ", "is ", "42."]
    done = events[-1].response
    assert done.status == "completed"
    assert done.output[0].content[0].text == "The answer is 42."
    assert done.usage.input_tokens == 11 and done.usage.output_tokens == 7
    sent = llm.last_request
    assert sent["model"] == "scripted-model"
    assert sent["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is the answer?"},
    ]
    assert sent["stream"] is True


async def test_multi_turn_tool_call_round_trip_async(async_client, llm) -> None:
    llm.script(
        ToolCalls([("call_abc", "get_weather", '{"city": "Paris"}')]),
        Text(["It is ", "sunny in Paris."]),
        Text(["You asked about Paris."]),
    )
    async with async_client.realtime.connect(model="gpt-realtime") as conn:
        await arecv_until(conn, "session.created")
        await conn.session.update(
            session={
                "type": "realtime",
                "output_modalities": ["text"],
                "tools": [WEATHER_TOOL],
                "tool_choice": "auto",
            }
        )
        await arecv_until(conn, "session.updated")
        await conn.conversation.item.create(item=_user("Weather in Paris?"))
        await conn.response.create()
        events = await arecv_until(conn, "response.done")
        call = events[-1].response.output[0]
        assert call.type == "function_call"
        assert (call.call_id, call.name, call.arguments) == (
            "call_abc",
            "get_weather",
            '{"city": "Paris"}',
        )
        args_deltas = "".join(
            e.delta for e in events if e.type == "response.function_call_arguments.delta"
        )
        assert args_deltas == '{"city": "Paris"}'
        args_done = next(e for e in events if e.type == "response.function_call_arguments.done")
        assert args_done.name == "get_weather" and args_done.call_id == "call_abc"

        await conn.conversation.item.create(
            item={
                "type": "function_call_output",
                "call_id": "call_abc",
                "output": json.dumps({"sky": "sunny"}),
            }
        )
        await conn.response.create()
        events = await arecv_until(conn, "response.done")
        assert events[-1].response.output[0].content[0].text == "It is sunny in Paris."

        await conn.conversation.item.create(item=_user("What did I ask?"))
        await conn.response.create()
        await arecv_until(conn, "response.done")

    second, third = llm.requests[1], llm.requests[2]
    assert second["tools"][0]["function"]["name"] == "get_weather"
    assert second["tools"][0]["function"]["parameters"] == WEATHER_TOOL["parameters"]
    assert second["messages"][2] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_abc",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
            }
        ],
    }
    assert second["messages"][3] == {
        "role": "tool",
        "tool_call_id": "call_abc",
        "content": '{"sky": "sunny"}',
    }
    assert [m["role"] for m in third["messages"]] == [
        "system",
        "user",
        "assistant",
        "tool",
        "assistant",
        "user",
    ]
    assert third["messages"][4]["content"] == "It is sunny in Paris."


def test_second_response_while_active_is_refused_and_cancel_stops_backend(client, llm) -> None:
    llm.script(Text(["word "] * 200, delay=0.02))
    with client.realtime.connect(model="gpt-realtime") as conn:
        recv(conn)
        conn.session.update(session={"type": "realtime", "output_modalities": ["text"]})
        conn.conversation.item.create(item=_user("Talk for a long time."))
        conn.response.create()
        recv_until(conn, "response.output_text.delta")
        conn.response.create(event_id="evt_second")
        error = recv_until(conn, "error")[-1]
        assert error.error.code == "conversation_already_has_active_response"
        assert error.error.event_id == "evt_second"
        conn.response.cancel()
        done = recv_until(conn, "response.done")[-1].response
        assert done.status == "cancelled"
        assert done.status_details.reason == "client_cancelled"
        assert done.output[0].status == "incomplete"
        # The session goes on.
        llm.script(Text(["ok"]))
        conn.response.create()
        assert recv_until(conn, "response.done")[-1].response.status == "completed"
    assert len(llm.requests) == 2


@pytest.mark.parametrize(
    ("reply", "code"),
    [
        (Fail(500), "llm_error"),
        (Fail(404, '{"error": {"message": "model not found"}}'), "llm_error"),
        (Garbage(), "llm_bad_response"),
    ],
)
def test_backend_failure_gives_failed_response_and_session_goes_on(
    client, llm, reply, code
) -> None:
    llm.script(reply, Text(["recovered"]))
    with client.realtime.connect(model="gpt-realtime") as conn:
        recv(conn)
        conn.session.update(session={"type": "realtime", "output_modalities": ["text"]})
        conn.conversation.item.create(item=_user("hi"))
        conn.response.create()
        done = recv_until(conn, "response.done")[-1].response
        assert done.status == "failed"
        assert done.status_details.error.code == code
        assert done.status_details.error.message
        conn.response.create()
        done = recv_until(conn, "response.done")[-1].response
        assert done.status == "completed"
        assert done.output[0].content[0].text == "recovered"
