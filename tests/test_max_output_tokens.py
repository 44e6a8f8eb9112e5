"""`max_output_tokens` holds even when the LLM backend ignores `max_tokens`: the output is
counted as usage estimates it, and at the limit the LLM stream is stopped and the response
ends `incomplete` (`max_output_tokens`). Through the official `openai` SDK over a real socket,
with a scripted LLM that streams past the limit, and in the core for the spoken path."""

from __future__ import annotations

import time

from conftest import WEATHER_TOOL, recv_until
from core_harness import Core, only, types
from scripted_llm import ScriptedLLM, Text, ToolCalls
from test_mcp import _listed_core  # a core with one MCP server listed

from openrealtime.backends.llm.base import Finished, TextDelta, ToolCallDelta
from openrealtime.core.effects import StopGenerating

WORDS = ["word "] * 40  # 5 characters each: 4 chunks reach 5 estimated tokens


def _ask(conn, **response) -> object:
    conn.session.update(session={"type": "realtime", "output_modalities": ["text"]})
    recv_until(conn, "session.updated")
    conn.conversation.item.create(
        item={"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Go"}]}
    )
    conn.response.create(response=response)
    return recv_until(conn, "response.done")[-1].response


def _wait_cancelled(llm: ScriptedLLM, count: int) -> None:
    deadline = time.monotonic() + 5
    while llm.cancelled < count and time.monotonic() < deadline:
        time.sleep(0.01)


def test_text_past_the_limit_is_cut_and_the_llm_stream_stopped(client, llm) -> None:
    llm.script(Text(WORDS, delay=0.01, usage=None))  # ignores max_tokens, no usage
    with client.realtime.connect(model="gpt-realtime") as conn:
        recv_until(conn, "session.created")
        done = _ask(conn, max_output_tokens=5)
    assert llm.last_request["max_tokens"] == 5  # asked; the backend ignored it
    assert done.status == "incomplete"
    assert done.status_details.reason == "max_output_tokens"
    assert done.output[0].status == "incomplete"
    assert done.output[0].content[0].text == "word " * 4
    assert done.usage.output_tokens == 5
    _wait_cancelled(llm, 1)
    assert llm.cancelled == 1  # the stream was abandoned, not read to its end


def test_function_arguments_count_too_and_the_cut_call_is_incomplete(client, llm) -> None:
    arguments = '{"city": "' + "x" * 200 + '"}'
    llm.script(ToolCalls([("call_1", "get_weather", arguments)]))
    with client.realtime.connect(model="gpt-realtime") as conn:
        recv_until(conn, "session.created")
        conn.session.update(session={"type": "realtime", "tools": [WEATHER_TOOL]})
        done = _ask(conn, max_output_tokens=10)
    assert done.status_details.reason == "max_output_tokens"
    call = done.output[0]
    assert call.type == "function_call" and call.status == "incomplete"
    assert call.arguments == arguments[: len(arguments) // 2]  # the first of its two pieces


def test_under_the_limit_nothing_changes(client, llm) -> None:
    llm.script(Text(WORDS[:3], usage=None))
    with client.realtime.connect(model="gpt-realtime") as conn:
        recv_until(conn, "session.created")
        done = _ask(conn, max_output_tokens=5)
    assert done.status == "completed"
    assert done.output[0].content[0].text == "word " * 3


def test_a_spoken_response_stops_the_llm_and_ends_once_its_audio_is_done() -> None:
    core = Core()
    core.send({"type": "session.update", "session": {"type": "realtime", "max_output_tokens": 3}})
    response_id = only(core.send({"type": "response.create"}), "GenerateResponse").response_id
    core.session.on_llm_event(response_id, TextDelta("Hello"))
    assert "StopGenerating" not in types(core.drain())
    core.session.on_llm_event(response_id, TextDelta(" there"))  # 11 characters: 3 tokens
    out = core.drain()
    assert only(out, "StopGenerating") == StopGenerating(response_id)
    assert "response.done" not in types(out)  # its audio is still being spoken
    core.session.on_llm_event(response_id, TextDelta(" and more"))
    core.session.on_llm_event(response_id, Finished())
    assert core.drain() == []  # the rest of the stream is dropped
    core.session.on_response_audio(response_id, b"\0" * 4800, 100.0)
    core.session.on_response_audio_done(response_id)
    done = only(core.drain(), "response.done")["response"]
    assert done["status"] == "incomplete"
    assert done["status_details"]["reason"] == "max_output_tokens"
    assert done["output"][0]["content"][0]["transcript"] == "Hello there"


def test_the_limit_counts_every_round_of_a_response_with_mcp_calls() -> None:
    spec = {
        "type": "mcp",
        "server_label": "calc",
        "server_url": "https://mcp.example.com/mcp",
        "require_approval": "never",
    }
    core = _listed_core(tools=[spec], output_modalities=["text"], max_output_tokens=4)
    response_id = only(core.send({"type": "response.create"}), "GenerateResponse").response_id
    core.session.on_llm_event(response_id, TextDelta("Checking"))  # 2 tokens
    core.session.on_llm_event(response_id, ToolCallDelta(0, "c1", "calc__add", "{}"))
    core.session.on_llm_event(response_id, Finished("tool_calls"))
    run = only(core.drain(), "RunMcpCall")
    core.session.on_mcp_call_done(response_id, run.item_id, "2", None)
    assert only(core.drain(), "GenerateResponse").response_id == response_id
    core.session.on_llm_event(response_id, TextDelta("It is two"))  # 2 + 3 tokens
    out = core.drain()
    assert only(out, "StopGenerating") == StopGenerating(response_id)
    assert only(out, "response.done")["response"]["status"] == "incomplete"
