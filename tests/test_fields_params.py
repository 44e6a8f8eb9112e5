"""Session and response fields passed through to the LLM, checked in the request body the
scripted LLM received, through the official `openai` SDK over a real socket."""

from __future__ import annotations

from conftest import WEATHER_TOOL, recv, recv_until
from scripted_llm import Text, ToolCalls


def _user(text: str, item_id: str | None = None) -> dict:
    item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}
    return {**item, "id": item_id} if item_id else item


def _session(conn, **fields) -> None:
    recv_until(conn, "session.created")
    conn.session.update(session={"type": "realtime", "output_modalities": ["text"], **fields})
    recv_until(conn, "session.updated")


def _respond(conn, **response) -> object:
    conn.response.create(**({"response": response} if response else {}))
    return recv_until(conn, "response.done")[-1].response


def test_reasoning_effort_from_session_and_response(client, llm) -> None:
    with client.realtime.connect(model="gpt-realtime") as conn:
        _session(conn, reasoning={"effort": "low"}, max_output_tokens=300)
        conn.conversation.item.create(item=_user("Think about it."))
        _respond(conn)
        session_level = llm.last_request
        _respond(conn, reasoning={"effort": "high"}, max_output_tokens=50)
        response_level = llm.last_request
    assert session_level["reasoning_effort"] == "low"
    # Reasoning models refuse `max_tokens`: the newer name is used with them.
    assert session_level["max_completion_tokens"] == 300
    assert "max_tokens" not in session_level
    assert response_level["reasoning_effort"] == "high"
    assert response_level["max_completion_tokens"] == 50


def test_no_reasoning_sends_no_effort_and_max_tokens(client, llm) -> None:
    with client.realtime.connect(model="gpt-realtime") as conn:
        _session(conn, max_output_tokens=120)
        conn.conversation.item.create(item=_user("Hi"))
        _respond(conn)
    assert "reasoning_effort" not in llm.last_request
    assert llm.last_request["max_tokens"] == 120


def test_max_output_tokens_hit_ends_incomplete(client, llm) -> None:
    llm.script(Text(["This answer is cut"], finish_reason="length", usage=(20, 5)))
    with client.realtime.connect(model="gpt-realtime") as conn:
        _session(conn)
        conn.conversation.item.create(item=_user("Tell me a long story."))
        done = _respond(conn, max_output_tokens=5)
        conn.conversation.item.retrieve(item_id=done.output[0].id)
        stored = recv(conn).item
    assert llm.last_request["max_tokens"] == 5
    assert done.status == "incomplete"
    assert done.status_details.type == "incomplete"
    assert done.status_details.reason == "max_output_tokens"
    assert done.max_output_tokens == 5
    assert done.output[0].status == "incomplete"
    assert done.output[0].content[0].text == "This answer is cut"
    assert stored.status == "incomplete"


def test_tool_choice_named_function_and_parallel_tool_calls(client, llm) -> None:
    llm.script(ToolCalls([("call_1", "get_weather", '{"city": "Oslo"}')]))
    other_tool = {**WEATHER_TOOL, "name": "get_time", "description": "Local time."}
    with client.realtime.connect(model="gpt-realtime") as conn:
        _session(
            conn,
            tools=[WEATHER_TOOL, other_tool],
            tool_choice={"type": "function", "name": "get_weather"},
            parallel_tool_calls=False,
        )
        conn.conversation.item.create(item=_user("Oslo?"))
        done = _respond(conn)
        forced = llm.last_request
        _respond(conn, tool_choice="required", parallel_tool_calls=True)
        required = llm.last_request
        _respond(conn, tool_choice="none")
        none = llm.last_request
        _respond(conn, tool_choice="auto")
        auto = llm.last_request
    assert done.output[0].type == "function_call"
    assert forced["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert forced["parallel_tool_calls"] is False
    assert [t["function"]["name"] for t in forced["tools"]] == ["get_weather", "get_time"]
    assert required["tool_choice"] == "required"
    assert required["parallel_tool_calls"] is True
    # "none": the model gets no tools at all, which every endpoint understands.
    assert "tools" not in none and "tool_choice" not in none
    assert auto["tool_choice"] == "auto"
    assert auto["parallel_tool_calls"] is False  # the session's setting again


def test_item_references_in_response_input(client, llm) -> None:
    with client.realtime.connect(model="gpt-realtime") as conn:
        _session(conn, instructions="Be brief.")
        for item_id, text in [("item_a", "First"), ("item_b", "Second"), ("item_c", "Third")]:
            conn.conversation.item.create(item=_user(text, item_id))
            recv_until(conn, "conversation.item.done")
        done = _respond(
            conn,
            conversation="none",
            input=[
                {"type": "item_reference", "id": "item_c"},
                _user("Inline"),
                {"type": "item_reference", "id": "item_a"},
            ],
        )
    assert done.status == "completed"
    assert done.conversation_id is None
    assert llm.last_request["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Third"},
        {"role": "user", "content": "Inline"},
        {"role": "user", "content": "First"},
    ]
