"""Any OpenAI-compatible Chat Completions endpoint: Ollama, vLLM, llama.cpp server, OpenAI.

Streams with a lean HTTP client and reads the chunks as plain JSON: see `http_client`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import orjson

from ..base import Capabilities
from ..errors import BackendError
from ..http_client import HTTPClient, HTTPError
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
    capabilities = Capabilities(streaming=True)

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
        self._timeout = timeout
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = HTTPClient(base_url, headers=headers)

    async def stream(self, request: LlmRequest) -> AsyncIterator[LlmEvent]:
        body = orjson.dumps(chat_arguments(request, self.model))
        headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
        response = None
        try:
            async with asyncio.timeout(self._timeout) as deadline:
                response = await self._http.request("POST", "/chat/completions", body, headers)
                if response.status != 200:
                    raise self._status_error(response.status, await response.read())
                events = _sse_events(response.chunks())
                async for event in _chat_events(events):
                    yield event
                    # The timeout bounds the wait for each piece, not the whole answer.
                    deadline.reschedule(asyncio.get_running_loop().time() + self._timeout)
        except TimeoutError:
            raise BackendError(
                "llm",
                f"the LLM at {self.base_url} did not answer in time; raise --llm-timeout or check "
                "that the server is not overloaded",
                code="llm_timeout",
            ) from None
        except HTTPError as exc:
            raise BackendError(
                "llm",
                f"cannot reach the LLM at {self.base_url} ({exc}); start it, or point "
                "--llm-base-url (OPENREALTIME_LLM_BASE_URL) at a running OpenAI-compatible server",
                code="llm_unreachable",
            ) from None
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
            raise BackendError(
                "llm",
                f"the LLM at {self.base_url} sent a stream that is not Chat Completions ({exc!r})",
                code="llm_bad_response",
            ) from None
        finally:
            if response is not None:
                response.close()  # a no-op after the end; cancels a generation mid-stream

    def _status_error(self, status: int, body: bytes) -> BackendError:
        hint = (
            f"; check --llm-model (now '{self.model}')"
            if status in (400, 404)
            else "; check --llm-api-key"
            if status in (401, 403)
            else ""
        )
        return BackendError(
            "llm",
            f"the LLM at {self.base_url} answered HTTP {status}: "
            f"{_excerpt(body.decode('utf-8', 'replace'))}{hint}",
            code="llm_error",
        )

    async def check(self) -> str | None:
        """None if the endpoint answers; otherwise why not (for the start-up warning)."""
        try:
            async with asyncio.timeout(3.0):
                response = await self._http.request("GET", "/models")
                await response.read()
        except TimeoutError:
            return "no answer within 3 s"
        except Exception as exc:  # whatever it is, start-up reports it and goes on
            return str(exc) or repr(exc)
        return None

    async def aclose(self) -> None:
        await self._http.aclose()


async def _sse_events(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The `data:` payloads of a server-sent event stream."""
    pending = b""
    async for chunk in chunks:
        pending += chunk
        while True:
            end = pending.find(b"\n")
            if end < 0:
                break
            line, pending = pending[:end].rstrip(b"\r"), pending[end + 1 :]
            if line.startswith(b"data:"):
                yield line[5:].strip()


async def _chat_events(payloads: AsyncIterator[bytes]) -> AsyncIterator[LlmEvent]:
    finish_reason = "stop"
    usage: Usage | None = None
    async for payload in payloads:
        if payload == b"[DONE]":
            break
        chunk = orjson.loads(payload)
        if error := chunk.get("error"):  # some servers report mid-stream failures this way
            message = error.get("message") if isinstance(error, dict) else error
            raise BackendError("llm", f"the LLM reported an error: {message}", code="llm_error")
        if reported := chunk.get("usage"):
            details = reported.get("prompt_tokens_details") or {}
            usage = Usage(
                reported.get("prompt_tokens") or 0,
                reported.get("completion_tokens") or 0,
                details.get("cached_tokens") or 0,
            )
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") or {}
            if content := delta.get("content"):
                yield TextDelta(content)
            for call in delta.get("tool_calls") or ():
                function = call.get("function") or {}
                yield ToolCallDelta(
                    index=call.get("index", 0),
                    call_id=call.get("id"),
                    name=function.get("name"),
                    arguments=function.get("arguments") or "",
                )
            if reason := choice.get("finish_reason"):
                finish_reason = reason
    yield Finished(finish_reason, usage)


def _excerpt(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "…"
