"""A scripted OpenAI-compatible Chat Completions server: the model boundary in tests.

It streams what the test scripts, in the exact SSE chunk format of the real API, and records
every request so tests can assert what reached the model.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse


@dataclass
class Text:
    chunks: list[str]
    delay: float = 0.0  # seconds between chunks
    finish_reason: str = "stop"
    usage: tuple[int, int] | None = (11, 7)


@dataclass
class ToolCalls:
    calls: list[tuple[str, str, str]]  # (call_id, name, arguments json)
    text_before: str = ""


@dataclass
class Fail:
    status: int = 500
    body: str = '{"error": {"message": "model exploded"}}'


@dataclass
class Garbage:
    """A 200 stream that is not Chat Completions at all."""

    body: str = "data: this is not json\n\n"


@dataclass
class Dropped:
    """A 200 stream that stops mid-body: the chunks, then the connection closes with no end of
    the chunked body, no `finish_reason` and no `[DONE]` (an LLM server that crashed)."""

    chunks: list[str]


class _DropConnection(Exception):
    """Raised mid-stream: the ASGI server then closes the socket, the only way an ASGI app
    can cut a response short."""


class _QuietDrops(logging.Filter):
    """uvicorn logs an app's exception with a traceback; a scripted drop is no error."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
            error = error.exceptions[0]
        return not isinstance(error, _DropConnection)


Reply = Text | ToolCalls | Fail | Garbage | Dropped


_QUIET_DROPS = _QuietDrops()


@dataclass
class ScriptedLLM:
    replies: deque[Reply] = field(default_factory=deque)
    requests: list[dict[str, Any]] = field(default_factory=list)
    default: Reply = field(
        default_factory=lambda: Text(["Hello", " from", " the", " scripted", " model."])
    )
    cancelled: int = 0  # streams the client abandoned before the end
    lock: threading.Lock = field(default_factory=threading.Lock)

    def script(self, *replies: Reply) -> None:
        with self.lock:
            self.replies.extend(replies)

    def reset(self) -> None:
        with self.lock:
            self.replies.clear()
            self.requests.clear()
            self.cancelled = 0

    def next_reply(self, body: dict[str, Any]) -> Reply:
        with self.lock:
            self.requests.append(body)
            return self.replies.popleft() if self.replies else self.default

    @property
    def last_request(self) -> dict[str, Any]:
        return self.requests[-1]

    def app(self) -> FastAPI:
        app = FastAPI()
        logging.getLogger("uvicorn.error").addFilter(_QUIET_DROPS)  # idempotent

        @app.get("/v1/models")
        async def models() -> dict[str, Any]:
            return {"object": "list", "data": [{"id": "scripted", "object": "model"}]}

        @app.post("/v1/chat/completions")
        async def completions(request: Request) -> Any:
            body = await request.json()
            reply = self.next_reply(body)
            if isinstance(reply, Fail):
                return JSONResponse(
                    json.loads(reply.body) if reply.body.startswith("{") else reply.body,
                    status_code=reply.status,
                )
            return StreamingResponse(
                self._stream(reply, body["model"]), media_type="text/event-stream"
            )

        return app

    async def _stream(self, reply: Reply, model: str) -> Any:
        created = int(time.time())

        def chunk(delta: dict[str, Any], finish: str | None = None, usage: Any = None) -> str:
            payload = {
                "id": "chatcmpl-scripted",
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]
                if usage is None
                else [],
            }
            if usage is not None:
                payload["usage"] = usage
            return f"data: {json.dumps(payload)}\n\n"

        try:
            if isinstance(reply, Garbage):
                yield reply.body
                return
            yield chunk({"role": "assistant", "content": ""})
            if isinstance(reply, Dropped):
                for piece in reply.chunks:
                    yield chunk({"content": piece})
                await asyncio.sleep(0.05)  # the chunks reach the client before the close
                raise _DropConnection
            if isinstance(reply, Text):
                for piece in reply.chunks:
                    if reply.delay:
                        await asyncio.sleep(reply.delay)
                    yield chunk({"content": piece})
                yield chunk({}, reply.finish_reason)
                if reply.usage:
                    prompt, completion = reply.usage
                    yield chunk(
                        {},
                        usage={
                            "prompt_tokens": prompt,
                            "completion_tokens": completion,
                            "total_tokens": prompt + completion,
                        },
                    )
            else:
                if reply.text_before:
                    yield chunk({"content": reply.text_before})
                for index, (call_id, name, arguments) in enumerate(reply.calls):
                    yield chunk(
                        {
                            "tool_calls": [
                                {
                                    "index": index,
                                    "id": call_id,
                                    "type": "function",
                                    "function": {"name": name, "arguments": ""},
                                }
                            ]
                        }
                    )
                    half = len(arguments) // 2
                    for part in (arguments[:half], arguments[half:]):
                        yield chunk(
                            {"tool_calls": [{"index": index, "function": {"arguments": part}}]}
                        )
                yield chunk({}, "tool_calls")
            yield "data: [DONE]\n\n"
        except asyncio.CancelledError:
            with self.lock:
                self.cancelled += 1
            raise
