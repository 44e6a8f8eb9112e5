"""From an `LlmRequest` to Chat Completions arguments: what an OpenAI-compatible endpoint accepts.

Chat endpoints (OpenAI, vLLM, llama.cpp, Ollama) refuse a request whose tool messages do not
answer the assistant message just before them, so every mapping here is also checked for that.
"""

from __future__ import annotations

from typing import Any

import pytest
from openai.types.chat import ChatCompletionMessageParam
from pydantic import TypeAdapter

from openrealtime.backends.llm.base import ChatTurn, FunctionSpec, LlmRequest, ToolCall, ToolResult
from openrealtime.backends.llm.openai_chat import NO_RESULT, chat_arguments, chat_messages

MESSAGE = TypeAdapter(ChatCompletionMessageParam)

WEATHER = FunctionSpec(
    "get_weather",
    "Current weather for a city.",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)
TIME = FunctionSpec("get_time")


def request(*context: Any, **fields: Any) -> LlmRequest:
    return LlmRequest(instructions=fields.pop("instructions", ""), context=tuple(context), **fields)


def call_msg(*calls: tuple[str, str, str], content: str | None = None) -> dict[str, Any]:
    return {
        "role": "assistant",
        "content": content,
        "tool_calls": [
            {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
            for call_id, name, arguments in calls
        ],
    }


def tool_msg(call_id: str, content: str) -> dict[str, Any]:
    return {"role": "tool", "tool_call_id": call_id, "content": content}


def check_endpoint_rules(messages: list[dict[str, Any]]) -> None:
    """What Chat Completions endpoints enforce: SDK message shapes, a system message only first
    or among turns, and every tool call answered by tool messages right after its assistant
    message, with no tool message that answers nothing."""
    for message in messages:
        validated = MESSAGE.validate_python(message, strict=True)
        list(validated.get("tool_calls") or ())  # the SDK declares an Iterable: consume to check
    open_calls: set[str] = set()
    for message in messages:
        if message["role"] == "tool":
            assert message["tool_call_id"] in open_calls, f"orphan tool message: {message}"
            open_calls.discard(message["tool_call_id"])
            continue
        assert not open_calls, f"unanswered tool calls {open_calls} before {message}"
        for call in message.get("tool_calls") or ():
            open_calls.add(call["id"])
    assert not open_calls, f"unanswered tool calls at the end: {open_calls}"


# --- chat_messages -------------------------------------------------------------------------------


def test_instructions_become_the_system_message_and_order_is_kept() -> None:
    messages = chat_messages(
        request(
            ChatTurn("user", "Hi"),
            ChatTurn("assistant", "Hello!"),
            ChatTurn("system", "The user is in Oslo."),
            ChatTurn("user", "Weather?"),
            instructions="Be brief.",
        )
    )
    assert messages == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "system", "content": "The user is in Oslo."},
        {"role": "user", "content": "Weather?"},
    ]
    check_endpoint_rules(messages)


def test_no_instructions_no_system_message() -> None:
    assert chat_messages(request(ChatTurn("user", "Hi"))) == [{"role": "user", "content": "Hi"}]


def test_consecutive_tool_calls_merge_into_one_assistant_message() -> None:
    messages = chat_messages(
        request(
            ChatTurn("user", "Weather and time in Oslo?"),
            ToolCall("call_a", "get_weather", '{"city":"Oslo"}'),
            ToolCall("call_b", "get_time", "{}"),
            ToolResult("call_a", "rain"),
            ToolResult("call_b", "noon"),
            ChatTurn("assistant", "Rainy at noon."),
        )
    )
    assert messages == [
        {"role": "user", "content": "Weather and time in Oslo?"},
        call_msg(("call_a", "get_weather", '{"city":"Oslo"}'), ("call_b", "get_time", "{}")),
        tool_msg("call_a", "rain"),
        tool_msg("call_b", "noon"),
        {"role": "assistant", "content": "Rainy at noon."},
    ]
    check_endpoint_rules(messages)


def test_text_then_tool_calls_share_one_assistant_message() -> None:
    messages = chat_messages(
        request(
            ChatTurn("user", "Time?"),
            ChatTurn("assistant", "Let me check."),
            ToolCall("call_t", "get_time", "{}"),
            ToolResult("call_t", "noon"),
        )
    )
    assert messages[1:] == [
        call_msg(("call_t", "get_time", "{}"), content="Let me check."),
        tool_msg("call_t", "noon"),
    ]
    check_endpoint_rules(messages)


def test_separate_rounds_of_tool_calls_stay_separate() -> None:
    messages = chat_messages(
        request(
            ToolCall("call_1", "get_time", "{}"),
            ToolResult("call_1", "noon"),
            ToolCall("call_2", "get_time", "{}"),
            ToolResult("call_2", "one"),
        )
    )
    assert messages == [
        call_msg(("call_1", "get_time", "{}")),
        tool_msg("call_1", "noon"),
        call_msg(("call_2", "get_time", "{}")),
        tool_msg("call_2", "one"),
    ]
    check_endpoint_rules(messages)


def test_empty_arguments_are_sent_as_an_empty_object() -> None:
    messages = chat_messages(request(ToolCall("c", "get_time", ""), ToolResult("c", "noon")))
    assert messages[0]["tool_calls"][0]["function"]["arguments"] == "{}"


def test_an_unanswered_call_gets_a_placeholder_before_the_next_turn() -> None:
    messages = chat_messages(
        request(
            ChatTurn("user", "Time?"),
            ToolCall("call_x", "get_time", "{}"),
            ChatTurn("user", "Never mind, hello."),
        )
    )
    assert messages == [
        {"role": "user", "content": "Time?"},
        call_msg(("call_x", "get_time", "{}")),
        tool_msg("call_x", NO_RESULT),
        {"role": "user", "content": "Never mind, hello."},
    ]
    check_endpoint_rules(messages)


def test_partly_answered_calls_get_a_placeholder_for_the_rest() -> None:
    messages = chat_messages(
        request(
            ToolCall("call_a", "get_weather", "{}"),
            ToolCall("call_b", "get_time", "{}"),
            ToolResult("call_b", "noon"),
            ChatTurn("user", "And?"),
        )
    )
    assert messages[1:3] == [tool_msg("call_b", "noon"), tool_msg("call_a", NO_RESULT)]
    assert messages[-1] == {"role": "user", "content": "And?"}
    check_endpoint_rules(messages)


def test_an_unanswered_call_at_the_end_is_answered_too() -> None:
    messages = chat_messages(
        request(ChatTurn("user", "Time?"), ToolCall("call_x", "get_time", "{}"))
    )
    assert messages[-1] == tool_msg("call_x", NO_RESULT)
    check_endpoint_rules(messages)


def test_a_call_after_an_unanswered_one_opens_a_new_assistant_message() -> None:
    messages = chat_messages(
        request(
            ToolCall("call_1", "get_time", "{}"),
            ChatTurn("assistant", "Still checking."),
            ToolCall("call_2", "get_time", "{}"),
            ToolResult("call_2", "noon"),
        )
    )
    assert messages == [
        call_msg(("call_1", "get_time", "{}")),
        tool_msg("call_1", NO_RESULT),
        call_msg(("call_2", "get_time", "{}"), content="Still checking."),
        tool_msg("call_2", "noon"),
    ]
    check_endpoint_rules(messages)


def test_an_orphan_result_becomes_a_user_turn() -> None:
    messages = chat_messages(
        request(ChatTurn("user", "Hi"), ToolResult("call_gone", "42"), ChatTurn("user", "So?"))
    )
    assert messages == [
        {"role": "user", "content": "Hi"},
        {"role": "user", "content": "Result of tool call call_gone: 42"},
        {"role": "user", "content": "So?"},
    ]
    check_endpoint_rules(messages)


def test_a_second_result_for_the_same_call_is_an_orphan() -> None:
    messages = chat_messages(
        request(ToolCall("c", "get_time", "{}"), ToolResult("c", "noon"), ToolResult("c", "again"))
    )
    assert messages[1:] == [
        tool_msg("c", "noon"),
        {"role": "user", "content": "Result of tool call c: again"},
    ]
    check_endpoint_rules(messages)


def test_an_orphan_result_while_calls_are_pending_answers_them_first() -> None:
    messages = chat_messages(request(ToolCall("a", "get_time", "{}"), ToolResult("zzz", "x")))
    assert messages == [
        call_msg(("a", "get_time", "{}")),
        tool_msg("a", NO_RESULT),
        {"role": "user", "content": "Result of tool call zzz: x"},
    ]
    check_endpoint_rules(messages)


# --- chat_arguments ------------------------------------------------------------------------------


def test_arguments_stream_with_usage() -> None:
    args = chat_arguments(request(ChatTurn("user", "Hi"), instructions="Be brief."), "my-model")
    assert args == {
        "model": "my-model",
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }


def test_no_tools_means_no_tool_keys() -> None:
    args = chat_arguments(request(ChatTurn("user", "Hi"), tool_choice="required"), "m")
    assert not {"tools", "tool_choice", "parallel_tool_calls"} & args.keys()


def test_tool_choice_none_sends_no_tools() -> None:
    args = chat_arguments(
        request(tools=(WEATHER,), tool_choice="none", parallel_tool_calls=True), "m"
    )
    assert not {"tools", "tool_choice", "parallel_tool_calls"} & args.keys()


@pytest.mark.parametrize("choice", ["auto", "required"])
def test_tools_and_a_string_tool_choice(choice: str) -> None:
    args = chat_arguments(request(tools=(WEATHER, TIME), tool_choice=choice), "m")
    assert args["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Current weather for a city.",
                "parameters": WEATHER.parameters,
            },
        },
        {
            "type": "function",
            "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}},
        },
    ]
    assert args["tool_choice"] == choice
    assert "parallel_tool_calls" not in args


def test_forced_function() -> None:
    args = chat_arguments(
        request(tools=(WEATHER, TIME), tool_choice="required", forced_function="get_time"), "m"
    )
    assert args["tool_choice"] == {"type": "function", "function": {"name": "get_time"}}


def test_parallel_tool_calls_temperature_and_max_tokens_only_when_set() -> None:
    args = chat_arguments(
        request(tools=(TIME,), parallel_tool_calls=False, temperature=0.0, max_output_tokens=64),
        "m",
    )
    assert args["parallel_tool_calls"] is False
    assert args["temperature"] == 0.0
    assert args["max_tokens"] == 64
    bare = chat_arguments(request(tools=(TIME,)), "m")
    assert not {"parallel_tool_calls", "temperature", "max_tokens"} & bare.keys()
