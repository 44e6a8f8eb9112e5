"""The model boundary of the benchmarks: an OpenAI-compatible Chat Completions server that
answers at once (or paced like a fast model), and an instant transcription endpoint.

Replies stream in the SSE chunk format of the real API. A text reply is `chunks` pieces of
REPLY, `delay` seconds apart; a request that offers tools and whose last message is a user
message containing TOOL_MARKER gets a call of its first tool instead. Each chat and
transcription request is numbered, and the number goes back in the reply — a text reply's
usage `prompt_tokens`, a tool call's id `call_<n>`, a transcript "scripted transcript <n>" —
so the client can tell when the backend had each of its requests.

What it saw, for the benchmark (`time.monotonic()`: CLOCK_MONOTONIC is one clock for every
process on Linux):
  GET  /bench/log       when each chat request's body had been read, with the body
  POST /bench/reset     empties that log
  GET  /bench/arrivals  when each chat and transcription request had been read, by number
  GET  /bench/streams   per chat stream: the request's system message (a benchmark's tag),
                        its start and end, and whether it ran to its end or was abandoned
  GET  /bench/stats     counts of requests, replies, and streams started, completed, abandoned
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, deque
from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from .payloads import TOOL_MARKER

REPLY = "Hello from the scripted model."
TOOL_ARGUMENTS = '{"city": "Paris", "unit": "c"}'
# Bounds on what is kept, so a long load run cannot grow the server without end.
LOG_BODIES = 10_000
KEPT = 1_000_000


def pieces(text: str, count: int | None) -> list[str]:
    """`text` as streamed word by word (each piece after the first with its leading space),
    cycled or cut to `count` pieces."""
    words = text.split(" ")
    words = [words[0], *(" " + w for w in words[1:])]
    if count is None:
        return words
    return [words[i % len(words)] for i in range(count)]


class FakeLLM:
    def __init__(self, chunks: int | None = None, delay: float = 0.0) -> None:
        self.text = pieces(REPLY, chunks)
        self.delay = delay
        self.stats: Counter[str] = Counter()
        self.log: deque[tuple[float, dict[str, Any]]] = deque(maxlen=LOG_BODIES)
        self.arrivals: dict[str, dict[int, float]] = {"chat": {}, "stt": {}}
        self.streams: list[dict[str, Any]] = []
        self._speech: bytes | None = None

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/v1/models", self.models),
                Route("/v1/chat/completions", self.completions, methods=["POST"]),
                Route("/v1/audio/transcriptions", self.transcriptions, methods=["POST"]),
                Route("/v1/audio/speech", self.speech, methods=["POST"]),
                Route("/bench/log", self.bench_log),
                Route("/bench/reset", self.bench_reset, methods=["POST"]),
                Route("/bench/arrivals", self.bench_arrivals),
                Route("/bench/streams", self.bench_streams),
                Route("/bench/stats", self.bench_stats),
            ]
        )

    def _arrived(self, kind: str, counter: str) -> int:
        self.stats[counter] += 1
        n = self.stats[counter]
        if len(self.arrivals[kind]) < KEPT:
            self.arrivals[kind][n] = time.monotonic()
        return n

    async def models(self, request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [{"id": "scripted", "object": "model"}]})

    async def completions(self, request: Request) -> Response:
        body = orjson.loads(await request.body())
        n = self._arrived("chat", "requests")
        self.log.append((self.arrivals["chat"].get(n, time.monotonic()), body))
        messages = body.get("messages") or []
        last = messages[-1] if messages else {}
        content = last.get("content")
        tools = body.get("tools")
        wants_tool = last.get("role") == "user" and isinstance(content, str)
        if tools and wants_tool and TOOL_MARKER in content:
            self.stats["tool_call_replies"] += 1
            deltas = self._tool_call(f"call_{n}", tools[0]["function"]["name"])
            finish = "tool_calls"
        else:
            self.stats["text_replies"] += 1
            deltas = self._text()
            finish = "stop"
        system = messages[0].get("content") if messages else None
        tag = system if isinstance(system, str) else ""
        usage = {"prompt_tokens": n, "completion_tokens": 7, "total_tokens": n + 7}
        stream = self._stream(deltas, finish, usage, body["model"], tag)
        return StreamingResponse(stream, media_type="text/event-stream")

    async def _text(self) -> AsyncIterator[dict[str, Any]]:
        for piece in self.text:
            if self.delay:
                await asyncio.sleep(self.delay)
            yield {"content": piece}

    async def _tool_call(self, call_id: str, name: str) -> AsyncIterator[dict[str, Any]]:
        function = {"name": name, "arguments": ""}
        yield {
            "tool_calls": [{"index": 0, "id": call_id, "type": "function", "function": function}]
        }
        half = len(TOOL_ARGUMENTS) // 2
        for part in (TOOL_ARGUMENTS[:half], TOOL_ARGUMENTS[half:]):
            yield {"tool_calls": [{"index": 0, "function": {"arguments": part}}]}

    async def _stream(
        self,
        deltas: AsyncIterator[dict[str, Any]],
        finish: str,
        usage: dict[str, int],
        model: str,
        tag: str,
    ) -> AsyncIterator[bytes]:
        created = int(time.time())

        def chunk(delta: dict[str, Any] | None, finish: str | None = None, **extra: Any) -> bytes:
            choices = (
                [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
            )
            payload = {
                "id": "chatcmpl-scripted",
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": choices,
                **extra,
            }
            return b"data: " + orjson.dumps(payload) + b"\n\n"

        self.stats["streams_started"] += 1
        record: dict[str, Any] = {"tag": tag, "start": time.monotonic()}
        if len(self.streams) < KEPT:
            self.streams.append(record)
        finished = False
        try:
            yield chunk({"role": "assistant", "content": ""})
            async for delta in deltas:
                yield chunk(delta)
            yield chunk({}, finish)
            yield chunk(None, usage=usage)
            yield b"data: [DONE]\n\n"
            finished = True
        finally:
            # Reached when the client abandons the stream too (the generator is cancelled).
            record["end"] = time.monotonic()
            record["completed"] = finished
            self.stats["streams_completed" if finished else "streams_abandoned"] += 1

    async def transcriptions(self, request: Request) -> Response:
        await request.body()
        n = self._arrived("stt", "transcriptions")
        return JSONResponse({"text": f"scripted transcript {n}"})

    async def speech(self, request: Request) -> Response:
        """Instant speech (`--tts scripted`): whatever the text, the reply spoken once by
        espeak at start-up, as the raw 24 kHz PCM16 that `response_format: pcm` asks for."""
        await request.body()
        self.stats["speech"] += 1
        if self._speech is None:
            from .speech import speak  # espeak only for the runs that use it

            self._speech = speak(REPLY, 24000).tobytes()
        return Response(self._speech, media_type="audio/pcm")

    async def bench_log(self, request: Request) -> Response:
        return JSONResponse({"requests": [[t, body] for t, body in self.log]})

    async def bench_reset(self, request: Request) -> Response:
        self.log.clear()
        return JSONResponse({"ok": True})

    async def bench_arrivals(self, request: Request) -> Response:
        return JSONResponse(self.arrivals)

    async def bench_streams(self, request: Request) -> Response:
        return JSONResponse({"streams": self.streams})

    async def bench_stats(self, request: Request) -> Response:
        return JSONResponse(dict(self.stats))
