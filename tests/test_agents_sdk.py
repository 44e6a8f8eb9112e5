"""The OpenAI Agents SDK (`openai-agents`) unchanged against openrealtime: a `RealtimeAgent`
with a function tool, run by `RealtimeRunner` over WebSocket with only the URL and key set.
The LLM is scripted; the server's other backends are the real defaults. Every raw server event
the SDK receives is validated against the `openai` SDK's types (conftest), and no `error`
reaches the agent session."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import orjson
import pytest
from agents import function_tool, set_tracing_disabled
from agents.mcp import MCPServerStreamableHttp
from agents.realtime import RealtimeAgent, RealtimeRunner, RealtimeSession
from conftest import API_KEY, validated
from scripted_llm import ScriptedLLM, Text, ToolCalls
from servers import ServerThread
from speech_fixtures import speak, with_silence
from test_mcp import _tools_server  # the tests' MCP server: add, explode

set_tracing_disabled(True)  # the SDK's own trace exporter would call api.openai.com

WEATHER_CALLS: list[str] = []


@function_tool
def get_weather(city: str) -> str:
    """Current weather for a city."""
    WEATHER_CALLS.append(city)
    return f"Sunny and 21 degrees in {city}."


AGENT = RealtimeAgent(
    name="Assistant", instructions="You are a weather assistant.", tools=[get_weather]
)


async def _session(server: ServerThread, **settings: Any) -> RealtimeSession:
    runner = RealtimeRunner(AGENT, config={"model_settings": settings})
    url = server.url.replace("http://", "ws://") + "/v1/realtime?model=gpt-realtime"
    return await runner.run(model_config={"url": url, "api_key": API_KEY})


async def _events_until(session: RealtimeSession, done: Any, timeout: float = 60.0) -> list[Any]:
    """The session's events until `done(event)` holds; raw server events validated strictly."""
    events: list[Any] = []

    async def collect() -> None:
        iterator: AsyncIterator[Any] = session.__aiter__()
        async for event in iterator:
            events.append(event)
            if event.type == "raw_model_event" and event.data.type == "raw_server_event":
                validated(orjson.dumps(event.data.data))
            if done(event):
                return

    await asyncio.wait_for(collect(), timeout)
    return events


def _raw(events: list[Any]) -> list[dict[str, Any]]:
    return [
        event.data.data
        for event in events
        if event.type == "raw_model_event" and event.data.type == "raw_server_event"
    ]


def _no_errors(events: list[Any]) -> None:
    errors = [event for event in events if event.type == "error"]
    errors += [event for event in _raw(events) if event["type"] == "error"]
    assert not errors, errors


def _response_done(event: Any) -> bool:
    return (
        event.type == "raw_model_event"
        and event.data.type == "raw_server_event"
        and event.data.data["type"] == "response.done"
    )


def _responses_done(count: int) -> Any:
    seen = [0]

    def done(event: Any) -> bool:
        seen[0] += _response_done(event)
        return seen[0] >= count

    return done


def _assistant_texts(events: list[Any]) -> list[str]:
    return [
        part.get("text") or part.get("transcript") or ""
        for raw in _raw(events)
        if raw["type"] == "response.done"
        for item in raw["response"]["output"]
        if item["type"] == "message"
        for part in item["content"]
    ]


async def test_text_turn_with_the_session_the_sdk_configures(
    server: ServerThread, llm: ScriptedLLM
) -> None:
    llm.script(Text(["It is ", "a fine day."]))
    session = await _session(server, output_modalities=["text"])
    async with session:
        await session.send_message("How is the day?")
        events = await _events_until(session, _response_done)
    _no_errors(events)
    raw = _raw(events)
    assert [e["type"] for e in raw if e["type"].startswith("session.")][:2] == [
        "session.created",
        "session.updated",
    ]
    updated = next(e for e in raw if e["type"] == "session.updated")["session"]
    assert updated["instructions"] == "You are a weather assistant."
    assert [tool["name"] for tool in updated["tools"]] == ["get_weather"]
    assert _assistant_texts(events) == ["It is a fine day."]
    assert llm.last_request["messages"][-1] == {"role": "user", "content": "How is the day?"}


async def test_tool_turn_the_sdk_runs_the_tool_and_the_answer_continues(
    server: ServerThread, llm: ScriptedLLM
) -> None:
    WEATHER_CALLS.clear()
    llm.script(
        ToolCalls([("call_w", "get_weather", '{"city": "Paris"}')]),
        Text(["Paris is ", "sunny."]),
    )
    session = await _session(server, output_modalities=["text"])
    async with session:
        await session.send_message("Weather in Paris?")
        events = await _events_until(session, _responses_done(2))
    _no_errors(events)
    assert WEATHER_CALLS == ["Paris"]
    ends = [event for event in events if event.type == "tool_end"]
    assert [(end.tool.name, end.output) for end in ends] == [
        ("get_weather", "Sunny and 21 degrees in Paris.")
    ]
    assert _assistant_texts(events) == ["Paris is sunny."]
    tool_messages = [m for m in llm.last_request["messages"] if m["role"] == "tool"]
    assert tool_messages == [
        {"role": "tool", "tool_call_id": "call_w", "content": "Sunny and 21 degrees in Paris."}
    ]


async def test_audio_turn_transcribed_and_answered_with_audio(
    server: ServerThread, llm: ScriptedLLM
) -> None:
    llm.script(Text(["Hello ", "to you."]))
    session = await _session(
        server,
        input_audio_transcription={"model": "whisper-1"},
        turn_detection={"type": "server_vad"},
    )
    speech = with_silence(speak("hello world"), before_ms=300, after_ms=900)
    async with session:
        pcm = speech.tobytes()
        for start in range(0, len(pcm), 4800):  # 100 ms chunks
            await session.send_audio(pcm[start : start + 4800])
        events = await _events_until(session, _response_done, timeout=120.0)
    _no_errors(events)
    raw = _raw(events)
    transcripts = [
        e["transcript"]
        for e in raw
        if e["type"] == "conversation.item.input_audio_transcription.completed"
    ]
    assert len(transcripts) == 1 and "hello" in transcripts[0].lower(), transcripts
    audio = b"".join(event.audio.data for event in events if event.type == "audio")
    assert len(audio) > 24000 * 2 // 2, "less than half a second of answer audio"
    assert _assistant_texts(events) == ["Hello to you."]


async def test_every_setting_the_sdk_sends_on_connect_is_accepted(
    server: ServerThread, llm: ScriptedLLM
) -> None:
    llm.script(Text(["Fine."]))
    session = await _session(
        server,
        output_modalities=["audio"],
        voice="marin",
        speed=1.2,
        max_output_tokens=300,
        tool_choice="auto",
        parallel_tool_calls=False,
        input_audio_noise_reduction={"type": "near_field"},
        input_audio_transcription={"model": "gpt-4o-mini-transcribe", "language": "en"},
        turn_detection={"type": "semantic_vad", "eagerness": "high", "interrupt_response": True},
        tracing={"workflow_name": "agents-sdk-test"},
    )
    async with session:
        await session.send_message("Hello?")
        events = await _events_until(session, _response_done)
    _no_errors(events)
    updated = [e["session"] for e in _raw(events) if e["type"] == "session.updated"][-1]
    assert updated["audio"]["output"]["voice"] == "marin"
    assert updated["audio"]["output"]["speed"] == 1.2
    assert updated["audio"]["input"]["noise_reduction"]["type"] == "near_field"
    assert updated["audio"]["input"]["turn_detection"]["type"] == "semantic_vad"
    assert updated["max_output_tokens"] == 300
    request = llm.last_request
    assert request["max_tokens"] == 300 or request.get("max_completion_tokens") == 300
    assert request["parallel_tool_calls"] is False
    assert any(event.type == "audio" for event in events)


async def test_a_handoff_updates_the_session_to_the_next_agent(
    server: ServerThread, llm: ScriptedLLM
) -> None:
    specialist = RealtimeAgent(name="Specialist", instructions="You are the specialist.")
    triage = RealtimeAgent(name="Triage", instructions="Route the user.", handoffs=[specialist])
    llm.script(
        ToolCalls([("call_h", "transfer_to_specialist", "{}")]),
        Text(["Specialist ", "here."]),
    )
    runner = RealtimeRunner(triage, config={"model_settings": {"output_modalities": ["text"]}})
    url = server.url.replace("http://", "ws://") + "/v1/realtime?model=gpt-realtime"
    session = await runner.run(model_config={"url": url, "api_key": API_KEY})
    async with session:
        await session.send_message("I need the specialist.")
        events = await _events_until(session, _responses_done(2))
    _no_errors(events)
    handoffs = [event for event in events if event.type == "handoff"]
    assert [(h.from_agent.name, h.to_agent.name) for h in handoffs] == [("Triage", "Specialist")]
    assert _assistant_texts(events) == ["Specialist here."]
    assert llm.last_request["messages"][0] == {
        "role": "system",
        "content": "You are the specialist.",
    }


async def test_barge_in_the_sdk_truncates_the_answer_it_was_playing(
    server: ServerThread, llm: ScriptedLLM
) -> None:
    story = "The waves rolled in all day long. A small boat sailed past the old lighthouse. " * 4
    llm.script(Text(story.split(" "), delay=0.1), Text(["Yes?"]))
    session = await _session(
        server,
        input_audio_transcription={"model": "whisper-1"},
        turn_detection={"type": "server_vad", "interrupt_response": True},
    )
    speech = with_silence(speak("wait a moment"), before_ms=100, after_ms=900).tobytes()
    async with session:
        await session.send_message("Tell me a story.")
        events = await _events_until(session, lambda event: event.type == "audio")
        for start in range(0, len(speech), 4800):
            await session.send_audio(speech[start : start + 4800])
        events += await _events_until(session, _responses_done(2), timeout=120.0)
    _no_errors(events)
    raw = _raw(events)
    statuses = [e["response"]["status"] for e in raw if e["type"] == "response.done"]
    assert statuses == ["cancelled", "completed"]
    assert any(event.type == "audio_interrupted" for event in events)
    truncated = [e for e in raw if e["type"] == "conversation.item.truncated"]
    # The server cuts at what it sent (barge_in.py); the SDK then at what it played, no later.
    assert len(truncated) == 2
    assert 0 <= truncated[1]["audio_end_ms"] <= truncated[0]["audio_end_ms"]
    assert _assistant_texts(events)[-1] == "Yes?"


@pytest.fixture(scope="module")
def mcp_url() -> Iterator[str]:
    with ServerThread(_tools_server().streamable_http_app()) as thread:
        yield thread.url + "/mcp"


async def test_the_sdks_own_mcp_servers_reach_the_server_as_function_tools(
    server: ServerThread, llm: ScriptedLLM, mcp_url: str
) -> None:
    llm.script(ToolCalls([("call_a", "add", '{"a": 2, "b": 3}')]), Text(["Five."]))
    async with MCPServerStreamableHttp(params={"url": mcp_url}, name="calc") as calc:
        agent = RealtimeAgent(name="Calc", instructions="Add.", mcp_servers=[calc])
        runner = RealtimeRunner(agent, config={"model_settings": {"output_modalities": ["text"]}})
        url = server.url.replace("http://", "ws://") + "/v1/realtime?model=gpt-realtime"
        session = await runner.run(model_config={"url": url, "api_key": API_KEY})
        async with session:
            await session.send_message("Two plus three?")
            events = await _events_until(session, _responses_done(2))
    _no_errors(events)
    updated = [e["session"] for e in _raw(events) if e["type"] == "session.updated"][-1]
    assert {tool["type"] for tool in updated["tools"]} == {"function"}
    assert {tool["name"] for tool in updated["tools"]} == {"add", "explode"}
    # The SDK ran the tool on its MCP server and sent the result as the function's output.
    results = [m["content"] for m in llm.last_request["messages"] if m["role"] == "tool"]
    assert results == ['{"type": "text", "text": "5"}']
    assert _assistant_texts(events) == ["Five."]
