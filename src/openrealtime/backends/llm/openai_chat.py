"""Any OpenAI-compatible Chat Completions endpoint: Ollama, vLLM, llama.cpp server, OpenAI.

Streams over aiohttp (see `http_client`) and reads the chunks as plain JSON with orjson: the
request is on the critical path of every turn, and the `openai` SDK spends milliseconds of CPU
per request building and validating models.

An answer is complete only when the stream says so: `[DONE]`, or at least a `finish_reason`
before the body ends. A body that stops short (the connection dropped, a chunked body aborted)
is a failed response, never a finished one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

import orjson
from yarl import URL

from ..base import Capabilities
from ..errors import BackendError
from ..http_client import HTTPSessions, interrupted, request_failed, status_failed, timeouts
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

if TYPE_CHECKING:
    import aiohttp

log = logging.getLogger(__name__)

SERVICE = "The language model backend"
_HEADERS = {"Content-Type": "application/json", "Accept": "text/event-stream"}
_MAX_LINE = 4 << 20  # bytes of one SSE line not yet ended: more is not Chat Completions
_TAIL_SECONDS = 1.0

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
            messages.append({"role": entry.role, "content": _content(entry)})
    answer_pending()
    return messages


def _content(turn: ChatTurn) -> str | list[dict[str, Any]]:
    """A plain string, or with images the Chat Completions parts: the text, then each image."""
    if not turn.images:
        return turn.text
    parts: list[dict[str, Any]] = [{"type": "text", "text": turn.text}] if turn.text else []
    for image in turn.images:
        url: dict[str, Any] = {"url": image.url}
        if image.detail is not None:
            url["detail"] = image.detail
        parts.append({"type": "image_url", "image_url": url})
    return parts


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
    if request.reasoning_effort is not None:
        args["reasoning_effort"] = request.reasoning_effort
    if request.max_output_tokens is not None:
        # Reasoning models refuse the older `max_tokens`; servers that predate them (Ollama,
        # llama.cpp) read only `max_tokens`, so it stays the default.
        key = "max_completion_tokens" if request.reasoning_effort else "max_tokens"
        args[key] = request.max_output_tokens
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
        vision: bool = True,
    ) -> None:
        # vision: the served model reads images (`--llm-vision`); the endpoint cannot tell us.
        self.capabilities = Capabilities(streaming=True, vision=vision)
        self.base_url = base_url
        self.model = model
        self.context_window = context_window
        self._timeout = timeout
        self._http = HTTPSessions(base_url, api_key, timeouts(timeout))
        self._url = self._http.url("/chat/completions")

    async def stream(self, request: LlmRequest) -> AsyncIterator[LlmEvent]:
        import aiohttp  # imported with the first request, not at start (issue 9)

        body = orjson.dumps(chat_arguments(request, self.model))
        try:
            response = await self._http.session().post(self._url, data=body, headers=_HEADERS)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise self._failed(exc) from None
        try:
            if response.status != 200:
                raise self._status_error(response.status, await response.read())
            async for event in _chat_events(response.content.readany, self._url):
                yield event
            await _finish_reading(response)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise self._failed(exc) from None
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
            raise _not_chat_completions(self._url, repr(exc)) from None
        finally:
            # Unread to the end (cancelled, failed): the connection is closed, not reused, which
            # is also how a generation is stopped on the server's side.
            response.close()

    def _failed(self, exc: Exception) -> BackendError:
        error = request_failed("llm", SERVICE, self._url, exc, self._timeout)
        if error.code == "llm_unreachable":
            error.detail += (
                "; start it, or point --llm-base-url (OPENREALTIME_LLM_BASE_URL) at a running "
                "OpenAI-compatible server"
            )
        elif error.code == "llm_timeout":
            error.detail += "; raise --llm-timeout or check that the server is not overloaded"
        return error

    def _status_error(self, status: int, body: bytes) -> BackendError:
        hint = (
            f"check --llm-model (now '{self.model}')"
            if status in (400, 404)
            else "check --llm-api-key"
            if status in (401, 403)
            else ""
        )
        return status_failed("llm", SERVICE, self._url, status, body, hint)

    async def check(self) -> str | None:
        """None if the endpoint answers; otherwise why not (for the start-up warning)."""
        import aiohttp

        try:
            async with self._http.session().get(
                self._http.url("/models"), timeout=aiohttp.ClientTimeout(total=3.0)
            ) as response:
                await response.read()
        except TimeoutError:
            return "no answer within 3 s"
        except Exception as exc:  # whatever it is, start-up reports it and goes on
            return str(exc) or repr(exc)
        return None

    async def aclose(self) -> None:
        await self._http.aclose()


def _not_chat_completions(url: URL, what: str) -> BackendError:
    return BackendError(
        "llm",
        f"{SERVICE} sent an answer that is not a Chat Completions stream.",
        code="llm_bad_response",
        detail=f"{url}: {what}",
    )


async def _finish_reading(response: aiohttp.ClientResponse) -> None:
    """After `[DONE]`, read the end of the body (it may still be on its way) so that the
    connection goes back to the pool; the answer is complete whatever happens here."""
    import aiohttp

    try:
        async with asyncio.timeout(_TAIL_SECONDS):
            while await response.content.readany():
                pass
    except (aiohttp.ClientError, TimeoutError):
        pass


async def _chat_events(read: Callable[[], Awaitable[bytes]], url: URL) -> AsyncIterator[LlmEvent]:
    """Chat Completions chunks from the SSE body (`read` returns the next bytes, b"" at the
    end), parsed line by line from the bytes as they arrive."""
    finish_reason: str | None = None
    usage: Usage | None = None
    pending = b""
    while data := await read():
        lines = (pending + data).split(b"\n")
        pending = lines.pop()
        if len(pending) > _MAX_LINE:
            raise _not_chat_completions(url, f"a line longer than {_MAX_LINE} bytes")
        for line in lines:
            if not line.startswith(b"data:"):
                continue  # blank separators, comments, `event:` and `id:` fields
            payload = line[5:].strip()
            if payload == b"[DONE]":
                yield Finished(finish_reason or "stop", usage)
                return
            chunk = orjson.loads(payload)
            if error := chunk.get("error"):  # some servers report mid-stream failures this way
                raise BackendError(
                    "llm",
                    f"{SERVICE} failed while answering; try again.",
                    code="llm_error",
                    detail=f"{url} sent an error mid-stream: {error!r}",
                )
            if reported := chunk.get("usage"):
                details = reported.get("prompt_tokens_details") or {}
                usage = Usage(
                    reported.get("prompt_tokens") or 0,
                    reported.get("completion_tokens") or 0,
                    details.get("cached_tokens") or 0,
                    details.get("image_tokens"),  # reported by some servers, not OpenAI's
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
    # The body ended without [DONE]. Servers that leave it out still say why the answer ended;
    # with neither, the stream was cut (a body delimited by the connection's close).
    if finish_reason is None:
        raise interrupted("llm", SERVICE, f"{url}: the stream ended without [DONE]")
    yield Finished(finish_reason, usage)
