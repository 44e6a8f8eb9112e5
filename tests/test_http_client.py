"""The backends' HTTP (aiohttp) against raw loopback servers that misbehave on purpose: a POST
is never sent twice, timeouts bound the connection and each wait, proxies come from the
environment, connections are reused."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
from raw_http import RawHTTPServer, chat_answer, chunk, chunked, chunked_head, delta, sse
from yarl import URL

from openrealtime.backends.errors import BackendError
from openrealtime.backends.http_client import env_proxy
from openrealtime.backends.llm.base import ChatTurn, Finished, LlmEvent, LlmRequest, TextDelta
from openrealtime.backends.llm.openai_chat import OpenAIChatModel
from openrealtime.backends.stt.base import TranscriptionOptions
from openrealtime.backends.stt.openai_http import OpenAITranscriber
from openrealtime.backends.tts.openai_http import OpenAISpeechSynthesizer

REQUEST = LlmRequest(instructions="", context=(ChatTurn("user", "Hi"),))


async def events(model: OpenAIChatModel) -> list[LlmEvent]:
    return [event async for event in model.stream(REQUEST)]


# Each HTTP backend: how to make one, one call of it, and an answer it takes as a success.
async def use_llm(model: OpenAIChatModel) -> None:
    assert (await events(model))[-1] == Finished("stop", None)


async def use_stt(stt: OpenAITranscriber) -> None:
    _ = [e async for e in stt.transcribe(b"\0\0" * 1600, TranscriptionOptions())]


async def use_tts(tts: OpenAISpeechSynthesizer) -> None:
    _ = [chunk async for chunk in tts.synthesize("Hi.", "alloy")]


BACKENDS: dict[str, tuple[Callable[[str], Any], Callable[[Any], Awaitable[None]], bytes]] = {
    "llm": (lambda url: OpenAIChatModel(url, "m", None), use_llm, chat_answer("Hello")),
    "stt": (
        OpenAITranscriber,
        use_stt,
        chunked(b'{"text": "Hi."}', content_type="application/json"),
    ),
    "tts": (OpenAISpeechSynthesizer, use_tts, chunked(b"\0\0" * 100, content_type="audio/pcm")),
}


async def call(backend: str, url: str, times: int = 1) -> None:
    """`times` calls of one backend object, so that later calls reuse the pooled connection."""
    make, use, _ = BACKENDS[backend]
    instance = make(url + "/v1")
    try:
        for _ in range(times):
            await use(instance)
            await asyncio.sleep(0.05)  # the answer's connection is back in the pool
    finally:
        await instance.aclose()


# --- never twice ---------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_post_into_a_reused_connection_that_dies_is_not_sent_again(
    backend: str,
) -> None:
    # The first request is answered on a keep-alive connection; the second arrives on that
    # same connection, and the server closes it without answering.
    async with RawHTTPServer([BACKENDS[backend][2], None]) as server:
        with pytest.raises(BackendError) as caught:
            await call(backend, server.url, times=2)
        await asyncio.sleep(0.1)  # time for a late retry to show
    assert len(server.requests) == 2 and server.connections == 1
    assert caught.value.code == f"{backend}_interrupted"
    assert caught.value.message.endswith("broke off before its answer was complete; try again.")


async def test_a_finished_stream_leaves_its_connection_for_the_next_request() -> None:
    async def done_then_end_of_body(writer: asyncio.StreamWriter) -> None:
        writer.write(chunked_head() + b"".join(map(chunk, sse(delta("a", "stop"), "[DONE]"))))
        await asyncio.sleep(0.05)  # the end of the chunked body comes later than [DONE]
        writer.write(b"0\r\n\r\n")

    async with RawHTTPServer([done_then_end_of_body, chat_answer("b")]) as server:
        model = OpenAIChatModel(server.url + "/v1", "m", None)
        try:
            assert await events(model) == [TextDelta("a"), Finished("stop", None)]
            assert await events(model) == [TextDelta("b"), Finished("stop", None)]
        finally:
            await model.aclose()
    assert server.connections == 1
    assert [r.line for r in server.requests] == ["POST /v1/chat/completions HTTP/1.1"] * 2


# --- timeouts ------------------------------------------------------------------------------


@pytest.fixture
def unanswered_port() -> Iterator[int]:
    """A port whose listen backlog is full: a connection attempt there waits, unanswered."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        filler = socket.create_connection(("127.0.0.1", port))
        try:
            yield port
        finally:
            filler.close()


async def test_connect_timeout(unanswered_port: int) -> None:
    model = OpenAIChatModel(f"http://127.0.0.1:{unanswered_port}/v1", "m", None, timeout=0.3)
    started = time.monotonic()
    with pytest.raises(BackendError) as caught:
        await events(model)
    await model.aclose()
    assert 0.25 < time.monotonic() - started < 2
    assert caught.value.code == "llm_timeout"
    assert caught.value.message == "The language model backend did not answer in time (0.3 s)."


async def silent(writer: asyncio.StreamWriter) -> None:
    await asyncio.sleep(5)


async def test_read_timeout_before_the_answer() -> None:
    async with RawHTTPServer([silent]) as server:
        model = OpenAIChatModel(server.url + "/v1", "m", None, timeout=0.3)
        started = time.monotonic()
        with pytest.raises(BackendError) as caught:
            await events(model)
        await model.aclose()
    assert 0.25 < time.monotonic() - started < 2
    assert caught.value.code == "llm_timeout"


async def test_read_timeout_mid_stream() -> None:
    async def one_delta_then_stall(writer: asyncio.StreamWriter) -> None:
        writer.write(chunked_head() + chunk(sse(delta("Hello"))[0]))
        await asyncio.sleep(5)

    async with RawHTTPServer([one_delta_then_stall]) as server:
        model = OpenAIChatModel(server.url + "/v1", "m", None, timeout=0.3)
        received: list[LlmEvent] = []
        with pytest.raises(BackendError) as caught:
            async for event in model.stream(REQUEST):
                received.append(event)
        await model.aclose()
    assert received == [TextDelta("Hello")]
    assert caught.value.code == "llm_timeout"


async def test_a_slow_consumer_is_not_a_slow_server() -> None:
    # The whole answer is there at once; the consumer takes longer than the timeout over each
    # event. The timeout measures the server, so nothing fails, in the consumer's code or here.
    async with RawHTTPServer([chat_answer("a", "b", "c")]) as server:
        model = OpenAIChatModel(server.url + "/v1", "m", None, timeout=0.2)
        received: list[LlmEvent] = []
        try:
            async for event in model.stream(REQUEST):
                received.append(event)
                await asyncio.sleep(0.3)
        finally:
            await model.aclose()
    assert received == [TextDelta("a"), TextDelta("b"), TextDelta("c"), Finished("stop", None)]


# --- proxies -------------------------------------------------------------------------------


@pytest.fixture
async def proxy(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[RawHTTPServer]:
    """A forward proxy (it answers itself) named by HTTP_PROXY."""
    async with RawHTTPServer() as server:
        for name in ("HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HTTP_PROXY", server.url)
        yield server


async def test_requests_go_through_the_proxy_in_the_environment(proxy: RawHTTPServer) -> None:
    proxy.answers = [chat_answer("via the proxy")]
    model = OpenAIChatModel("http://llm.internal.example/v1", "m", None)
    try:
        assert (await events(model))[0] == TextDelta("via the proxy")
    finally:
        await model.aclose()
    [request] = proxy.requests
    assert request.line == "POST http://llm.internal.example/v1/chat/completions HTTP/1.1"


async def test_no_proxy_is_honoured(proxy: RawHTTPServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    async with RawHTTPServer([chat_answer("direct")]) as server:
        await call("llm", server.url)
    assert len(server.requests) == 1 and proxy.requests == []


@pytest.mark.parametrize(
    ("url", "no_proxy", "expected"),
    [
        ("https://api.example.com/v1", "", "http://secure-proxy:3128"),
        ("http://llm.internal/v1", "", "http://user:pw@plain-proxy:8080"),
        ("https://api.example.com/v1", "example.com", None),
        ("http://10.0.0.5:8000/v1", "10.0.0.5", None),
    ],
)
def test_the_proxy_is_chosen_by_scheme_and_no_proxy(
    monkeypatch: pytest.MonkeyPatch, url: str, no_proxy: str, expected: str | None
) -> None:
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", "http://secure-proxy:3128")
    monkeypatch.setenv("HTTP_PROXY", "http://user:pw@plain-proxy:8080")
    monkeypatch.setenv("NO_PROXY", no_proxy)
    assert env_proxy(URL(url)) == expected
