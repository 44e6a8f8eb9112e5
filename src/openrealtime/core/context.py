"""From conversation items to the LLM's view of them: a snapshot of plain entries."""

from __future__ import annotations

from typing import Any

from ..backends.llm.base import (
    ChatTurn,
    ContextEntry,
    FunctionSpec,
    LlmRequest,
    ToolCall,
    ToolResult,
)
from ..protocol.items import FunctionCallItem, FunctionCallOutputItem, MessageItem, item_text
from ..protocol.session import FunctionTool
from .usage import input_audio_tokens, tokens_for_chars


def context_entries(items: list[Any]) -> tuple[ContextEntry, ...]:
    entries: list[ContextEntry] = []
    for item in items:
        if isinstance(item, MessageItem):
            text = item_text(item)
            if text:
                entries.append(ChatTurn(item.role, text))
        elif isinstance(item, FunctionCallItem):
            entries.append(ToolCall(item.call_id or item.id or "", item.name, item.arguments))
        elif isinstance(item, FunctionCallOutputItem):
            entries.append(ToolResult(item.call_id, item.output))
    return tuple(entries)


def build_request(
    *,
    instructions: str,
    items: list[Any],
    tools: list[Any],
    tool_choice: Any,
    temperature: float | None,
    max_output_tokens: int | str,
    parallel_tool_calls: bool | None,
) -> LlmRequest:
    functions = tuple(
        FunctionSpec(tool.name, tool.description, tool.parameters)
        for tool in tools
        if isinstance(tool, FunctionTool)
    )
    forced = None
    choice = tool_choice if isinstance(tool_choice, str) else "required"
    if not isinstance(tool_choice, str) and tool_choice.type == "function":
        forced = tool_choice.name
    return LlmRequest(
        instructions=instructions,
        context=context_entries(items),
        tools=functions,
        tool_choice=choice if functions else "none",
        forced_function=forced if functions else None,
        temperature=temperature,
        max_output_tokens=None if max_output_tokens == "inf" else int(max_output_tokens),
        parallel_tool_calls=parallel_tool_calls,
    )


def estimate_input(request: LlmRequest, input_audio_ms: float) -> dict[str, int]:
    """Input token estimate for usage when the backend reports no counts."""
    chars = len(request.instructions)
    for entry in request.context:
        chars += len(entry.text) if isinstance(entry, ChatTurn) else 0
        chars += len(entry.arguments) if isinstance(entry, ToolCall) else 0
        chars += len(entry.output) if isinstance(entry, ToolResult) else 0
    return {
        "text_tokens": tokens_for_chars(chars),
        "audio_tokens": input_audio_tokens(input_audio_ms),
    }
