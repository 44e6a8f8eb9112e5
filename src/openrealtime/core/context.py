"""From conversation items to the LLM's view of them: a snapshot of plain entries, cut to fit
the model's context window.

Truncation, as OpenAI describes it: when the conversation after the instructions (and tool
definitions) would not fit in the context window less the room kept for the answer, the
oldest entries are left out — `auto` down to the limit, `retention_ratio` down to that share of
it, so that the next turns need no new cut. `disabled` sends everything. It happens before the
request is sent, never after it fails. Token counts are estimated at 4 characters per token.
"""

from __future__ import annotations

from typing import Any

from ..backends.llm.base import (
    ChatTurn,
    ContextEntry,
    FunctionSpec,
    ImageInput,
    LlmRequest,
    ToolCall,
    ToolResult,
)
from ..protocol.items import (
    FunctionCallItem,
    FunctionCallOutputItem,
    McpApprovalResponseItem,
    MessageItem,
    item_text,
)
from ..protocol.mcp import McpApprovalRequestItem, McpCallItem
from ..protocol.session import FunctionTool, RetentionRatioTruncation
from .images import image_tokens
from .mcp import function_name
from .usage import input_audio_tokens, tokens_for_chars

# Room kept for the answer when max_output_tokens is "inf" (OpenAI's maximum).
DEFAULT_OUTPUT_RESERVE = 4096


def context_entries(items: list[Any]) -> tuple[ContextEntry, ...]:
    """MCP calls reach the LLM as a tool call and its result (the output, or the error); a
    declined approval request as a call whose result says it was declined; one not (yet)
    answered, or answered yes (its `mcp_call` follows), not at all."""
    entries: list[ContextEntry] = []
    declined = {
        item.approval_request_id: item.reason
        for item in items
        if isinstance(item, McpApprovalResponseItem) and not item.approve
    }
    for item in items:
        if isinstance(item, MessageItem):
            text = item_text(item)
            images = tuple(
                ImageInput(part.image_url, part.detail)
                for part in item.content
                if part.type == "input_image" and part.image_url
            )
            if text or images:
                entries.append(ChatTurn(item.role, text, images))
        elif isinstance(item, FunctionCallItem):
            entries.append(ToolCall(item.call_id or item.id or "", item.name, item.arguments))
        elif isinstance(item, FunctionCallOutputItem):
            entries.append(ToolResult(item.call_id, item.output))
        elif isinstance(item, McpCallItem) and (item.output is not None or item.error):
            entries.append(
                ToolCall(item.id, function_name(item.server_label, item.name), item.arguments)
            )
            error = item.error or {}
            result = item.output if item.output is not None else f"Error: {error.get('message')}"
            entries.append(ToolResult(item.id, result))
        elif isinstance(item, McpApprovalRequestItem) and item.id in declined:
            entries.append(
                ToolCall(item.id, function_name(item.server_label, item.name), item.arguments)
            )
            reason = declined[item.id]
            entries.append(
                ToolResult(
                    item.id,
                    "The user declined this call; it was not run."
                    + (f" Reason: {reason}" if reason else ""),
                )
            )
    return tuple(entries)


def build_request(
    *,
    instructions: str,
    items: list[Any],
    tools: list[Any],
    extra_functions: tuple[FunctionSpec, ...] = (),
    tool_choice: Any,
    temperature: float | None,
    max_output_tokens: int | str,
    parallel_tool_calls: bool | None,
    reasoning_effort: str | None = None,
    truncation: Any = "auto",
    context_window: int | None = None,
) -> LlmRequest:
    functions = (
        tuple(
            FunctionSpec(tool.name, tool.description, tool.parameters)
            for tool in tools
            if isinstance(tool, FunctionTool)
        )
        + extra_functions
    )
    forced = None
    choice = tool_choice if isinstance(tool_choice, str) else "required"
    if not isinstance(tool_choice, str) and tool_choice.type == "function":
        forced = tool_choice.name
    entries = context_entries(items)
    if context_window is not None and truncation != "disabled":
        fixed = tokens_for_chars(len(instructions) + sum(len(repr(f)) for f in functions))
        reserve = DEFAULT_OUTPUT_RESERVE if max_output_tokens == "inf" else int(max_output_tokens)
        entries = truncate(entries, context_window - reserve - fixed, truncation)
    return LlmRequest(
        instructions=instructions,
        context=entries,
        tools=functions,
        tool_choice=choice if functions else "none",
        forced_function=forced if functions else None,
        temperature=temperature,
        max_output_tokens=None if max_output_tokens == "inf" else int(max_output_tokens),
        parallel_tool_calls=parallel_tool_calls,
        reasoning_effort=reasoning_effort,
    )


def entry_tokens(entry: ContextEntry) -> int:
    if isinstance(entry, ChatTurn):
        pictures = sum(image_tokens(image.url, image.detail) for image in entry.images)
        return tokens_for_chars(len(entry.text)) + pictures + 4  # + the message's own framing
    if isinstance(entry, ToolCall):
        return tokens_for_chars(len(entry.name) + len(entry.arguments)) + 4
    return tokens_for_chars(len(entry.output)) + 4


def truncate(
    entries: tuple[ContextEntry, ...], limit: int, truncation: Any
) -> tuple[ContextEntry, ...]:
    """Leave out the oldest entries while the rest exceeds `limit` tokens."""
    if isinstance(truncation, RetentionRatioTruncation):
        limits = truncation.token_limits
        post_instructions = limits.post_instructions if limits is not None else None
        if post_instructions is not None:
            limit = min(limit, post_instructions)
    sizes = [entry_tokens(entry) for entry in entries]
    total = sum(sizes)
    if total <= limit:
        return entries
    target = limit
    if isinstance(truncation, RetentionRatioTruncation):
        target = int(limit * truncation.retention_ratio)
    start = 0
    while start < len(entries) and total > target:
        total -= sizes[start]
        start += 1
    # A tool result whose call was cut would reach the model as an orphan: cut it too.
    while start < len(entries) and isinstance(entries[start], ToolResult):
        start += 1
    return entries[start:]


def estimate_input(request: LlmRequest, input_audio_ms: float) -> dict[str, int]:
    """Input token estimate for usage when the backend reports no counts."""
    chars = len(request.instructions)
    images = 0
    for entry in request.context:
        if isinstance(entry, ChatTurn):
            images += sum(image_tokens(image.url, image.detail) for image in entry.images)
        chars += len(entry.text) if isinstance(entry, ChatTurn) else 0
        chars += len(entry.arguments) if isinstance(entry, ToolCall) else 0
        chars += len(entry.output) if isinstance(entry, ToolResult) else 0
    return {
        "text_tokens": tokens_for_chars(chars),
        "audio_tokens": input_audio_tokens(input_audio_ms),
        "image_tokens": images,
    }
