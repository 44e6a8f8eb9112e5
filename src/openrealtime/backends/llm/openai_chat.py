"""Any OpenAI-compatible Chat Completions endpoint: Ollama, vLLM, llama.cpp server, OpenAI."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import openai
from openai import AsyncOpenAI

from ..errors import BackendError
from .base import (
    ChatTurn,
    Finished,
    LlmEvent,
    LlmRequest,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    ToolResult,
    Usage,
)

log = logging.getLogger(__name__)

# A tool call the client never answered still needs a tool message, or the endpoint refuses
# the whole request; this placeholder says what happened.
NO_RESULT = "No result was provided for this call."


def chat_messages(request: LlmRequest) -> list[dict[str, Any]]:
    """The conversation as Chat Completions messages, tool calls and results kept in order."""
    messages: list[dict[str, Any]] = []
    if request.instructions:
        messages.append({"role": "system", "content": request.instructions})
    pending: dict[str, dict[str, Any]] = {}  # call_id -> the assistant message that made it

    def answer_pending() -> None:
        for call_id in list(pending):
            messages.append({"role": "tool", "tool_call_id": call_id, "content": NO_RESULT})
        pending.clear()

    for entry in request.context:
        if isinstance(entry, ToolCall):
            call = {
                "id": entry.call_id,
                "type": "function",
                "function": {"name": entry.name, "arguments": entry.arguments or "{}"},
            }
            last = messages[-1] if messages else None
            if (
                last is not None
                and last["role"] == "assistant"
                and (not pending or "tool_calls" in last)
            ):
                last.setdefault("tool_calls", []).append(call)
            else:
                answer_pending()
                last = {"role": "assistant", "content": None, "tool_calls": [call]}
                messages.append(last)
            pending[entry.call_id] = last
        elif isinstance(entry, ToolResult):
            if pending.pop(entry.call_id, None) is not None:
                messages.append(
                    {"role": "tool", "tool_call_id": entry.call_id, "content": entry.output}
                )
            else:
                # A result with no matching call in the context: endpoints refuse an orphan tool
                # message, so the model still gets the information as a user turn.
                answer_pending()
                messages.append(
                    {
                        "role": "user",
                        "content": f"Result of tool call {entry.call_id}: {entry.output}",
                    }
                )
        elif isinstance(entry, ChatTurn):
            answer_pending()
            messages.append({"role": entry.role, "content": entry.text})
    answer_pending()
    return messages


def chat_arguments(request: LlmRequest, model: str) -> dict[str, Any]:
    args: dict[str, Any] = {
        "model": model,
        "messages": chat_messages(request),
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if request.tools and request.tool_choice != "none":
        args["tools"] = [
            {
                "type": "function",
                "function": {
                    "name": tool.name,
                    **({"description": tool.description} if tool.description else {}),
                    "parameters": tool.parameters or {"type": "object", "properties": {}},
                },
            }
            for tool in request.tools
        ]
        args["tool_choice"] = (
            {"type": "function", "function": {"name": request.forced_function}}
            if request.forced_function
            else request.tool_choice
        )
        if request.parallel_tool_calls is not None:
            args["parallel_tool_calls"] = request.parallel_tool_calls
    if request.temperature is not None:
        args["temperature"] = request.temperature
    if request.max_output_tokens is not None:
        args["max_tokens"] = request.max_output_tokens
    return args


class OpenAIChatModel:
    name = "openai-chat"

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None,
        timeout: float = 60.0,
        context_window: int | None = None,
    ) -> None:
        self.base_url = base_url
        self.model = model
        self.context_window = context_window
        self._client = AsyncOpenAI(
            base_url=base_url, api_key=api_key or "not-needed", timeout=timeout, max_retries=0
        )

    async def stream(self, request: LlmRequest) -> AsyncIterator[LlmEvent]:
        finish_reason = "stop"
        usage: Usage | None = None
        try:
            chunks = await self._client.chat.completions.create(
                **chat_arguments(request, self.model)
            )
            async for chunk in chunks:
                if chunk.usage is not None:
                    cached = getattr(chunk.usage.prompt_tokens_details, "cached_tokens", None) or 0
                    usage = Usage(chunk.usage.prompt_tokens, chunk.usage.completion_tokens, cached)
                for choice in chunk.choices:
                    delta = choice.delta
                    if delta.content:
                        yield TextDelta(delta.content)
                    for call in delta.tool_calls or ():
                        function = call.function
                        yield ToolCallDelta(
                            index=call.index,
                            call_id=call.id,
                            name=function.name if function else None,
                            arguments=(function.arguments or "") if function else "",
                        )
                    if choice.finish_reason:
                        finish_reason = choice.finish_reason
        except openai.APITimeoutError:
            raise BackendError(
                "llm",
                f"the LLM at {self.base_url} did not answer in time; raise --llm-timeout or check "
                "that the server is not overloaded",
                code="llm_timeout",
            ) from None
        except openai.APIConnectionError as exc:
            raise BackendError(
                "llm",
                f"cannot reach the LLM at {self.base_url} ({exc.__cause__ or exc}); start it, or "
                "point --llm-base-url (OPENREALTIME_LLM_BASE_URL) at a running "
                "OpenAI-compatible server",
                code="llm_unreachable",
            ) from None
        except openai.APIStatusError as exc:
            hint = (
                f"; check --llm-model (now '{self.model}')"
                if exc.status_code in (400, 404)
                else "; check --llm-api-key"
                if exc.status_code in (401, 403)
                else ""
            )
            raise BackendError(
                "llm",
                f"the LLM at {self.base_url} answered HTTP {exc.status_code}: "
                f"{_excerpt(exc.response.text)}{hint}",
                code="llm_error",
            ) from None
        except openai.OpenAIError as exc:
            raise BackendError(
                "llm", f"the LLM at {self.base_url} failed: {exc}", code="llm_error"
            ) from None
        yield Finished(finish_reason, usage)

    async def check(self) -> str | None:
        """None if the endpoint answers; otherwise why not (for the start-up warning)."""
        try:
            await self._client.models.list(timeout=3.0)
        except openai.APIConnectionError as exc:
            return str(exc.__cause__ or exc)
        except openai.APIStatusError:
            return None  # it answers; some servers just don't list models
        except Exception as exc:  # whatever it is, start-up reports it and goes on
            return str(exc) or repr(exc)
        return None

    async def aclose(self) -> None:
        await self._client.close()


def _excerpt(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "…"
