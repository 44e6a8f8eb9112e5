"""A loopback HTTP/1.1 server that answers byte for byte what a test scripts, misbehaviour
included; it records every request and counts connections."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import orjson

# What the server does with the next request: send these bytes and keep the connection for the
# next request; call this (to stall, or to send part of an answer); None: close the connection
# without answering.
Answer = bytes | Callable[[asyncio.StreamWriter], Awaitable[None]] | None


@dataclass
class Request:
    line: str  # "POST /v1/chat/completions HTTP/1.1"
    headers: dict[str, str]  # names lower-cased
    body: bytes


@dataclass
class RawHTTPServer:
    answers: list[Answer] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)
    connections: int = 0
    url: str = ""  # "http://127.0.0.1:PORT"

    async def __aenter__(self) -> RawHTTPServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while self.answers:
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
                line, *rest = head.split("\r\n")
                headers = {
                    name.strip().lower(): value.strip()
                    for name, value in (h.split(":", 1) for h in rest if h)
                }
                body = await reader.readexactly(int(headers.get("content-length", 0)))
                self.requests.append(Request(line, headers, body))
                answer = self.answers.pop(0)
                if answer is None:
                    break
                if isinstance(answer, bytes):
                    writer.write(answer)
                    await writer.drain()
                else:
                    await answer(writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()


def chunked(*pieces: bytes, content_type: str = "text/event-stream") -> bytes:
    """A complete 200 answer with a chunked body, one HTTP chunk per piece."""
    return chunked_head(content_type) + b"".join(map(chunk, pieces)) + b"0\r\n\r\n"


def chunked_head(content_type: str = "text/event-stream") -> bytes:
    return (
        f"HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\n"
        "Transfer-Encoding: chunked\r\n\r\n".encode()
    )


def chunk(piece: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(piece), piece)


def sse(*events: dict[str, object] | str) -> list[bytes]:
    """Server-sent events, one per item: a dict is sent as JSON, a string as it is."""
    return [
        b"data: " + (event.encode() if isinstance(event, str) else orjson.dumps(event)) + b"\n\n"
        for event in events
    ]


def delta(text: str, finish_reason: str | None = None) -> dict[str, object]:
    """A Chat Completions chunk with some text (and possibly the reason it ends)."""
    choice = {"index": 0, "delta": {"content": text}, "finish_reason": finish_reason}
    return {"object": "chat.completion.chunk", "choices": [choice]}


def chat_answer(*texts: str) -> bytes:
    """A whole, well-formed streamed chat completion."""
    return chunked(*sse(*(delta(t) for t in texts), delta("", "stop"), "[DONE]"))
