"""OpenAISpeechSynthesizer against a scripted /v1/audio/speech server on a real loopback socket."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from openrealtime.backends.errors import BackendError
from openrealtime.backends.tts.openai_http import OpenAISpeechSynthesizer

PCM = bytes(range(256)) * 40  # 10,240 bytes of recognisable "audio"


@dataclass
class SpeechServer:
    """An HTTP/1.1 responder: records each request, answers with `status` and `chunks`."""

    status: int = 200
    chunks: list[bytes] = field(default_factory=list)
    # Set before the last chunk is sent, so a test can prove audio arrived before the end.
    hold_last: asyncio.Event | None = None
    silent: bool = False  # read the request and never answer
    cut_short: bool = False  # close the connection without ending the chunked body
    requests: list[tuple[dict[str, str], dict[str, object]]] = field(default_factory=list)
    base_url: str = ""

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await self.answer(reader, writer)
        finally:
            writer.close()

    async def answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode()
        lines = head.split("\r\n")
        headers = {k.lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:] if ln)}
        body = json.loads(await reader.readexactly(int(headers["content-length"])))
        self.requests.append(({"request-line": lines[0], **headers}, body))
        if self.silent:
            await reader.read()  # until the client gives up and closes
            return
        reason = {200: "OK", 500: "Internal Server Error"}[self.status]
        writer.write(
            f"HTTP/1.1 {self.status} {reason}\r\nContent-Type: audio/pcm\r\n"
            "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n".encode()
        )
        for i, chunk in enumerate(self.chunks):
            if self.hold_last is not None and i == len(self.chunks) - 1:
                await self.hold_last.wait()
            writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            await writer.drain()
            await asyncio.sleep(0.005)  # let each chunk reach the client on its own
        if self.cut_short:
            return
        writer.write(b"0\r\n\r\n")
        await writer.drain()


@pytest.fixture
async def server() -> AsyncIterator[SpeechServer]:
    scripted = SpeechServer()
    tcp = await asyncio.start_server(scripted.handle, "127.0.0.1", 0)
    port = tcp.sockets[0].getsockname()[1]
    scripted.base_url = f"http://127.0.0.1:{port}/v1"
    async with tcp:
        yield scripted
        tcp.close()


@pytest.fixture
async def synth(server: SpeechServer) -> AsyncIterator[OpenAISpeechSynthesizer]:
    tts = OpenAISpeechSynthesizer(server.base_url + "/", "sk-test", "kokoro", timeout=2.0)
    yield tts
    await tts.aclose()


async def collect(synth: OpenAISpeechSynthesizer, text: str = "Hello there.") -> list[bytes]:
    return [chunk async for chunk in synth.synthesize(text, "af_heart", 1.25)]


async def test_request_carries_the_openai_fields(
    server: SpeechServer, synth: OpenAISpeechSynthesizer
) -> None:
    server.chunks = [PCM]
    await collect(synth, "Hi, how can I help?")
    [(headers, body)] = server.requests
    assert headers["request-line"] == "POST /v1/audio/speech HTTP/1.1"
    assert headers["authorization"] == "Bearer sk-test"
    assert body == {
        "model": "kokoro",
        "input": "Hi, how can I help?",
        "voice": "af_heart",
        "response_format": "pcm",
        "speed": 1.25,
    }


async def test_chunks_stream_and_reassemble(
    server: SpeechServer, synth: OpenAISpeechSynthesizer
) -> None:
    server.chunks = [PCM[:4096], PCM[4096:8192], PCM[8192:]]
    server.hold_last = asyncio.Event()
    received: list[bytes] = []
    async for chunk in synth.synthesize("Hello.", "alloy"):
        received.append(chunk)
        server.hold_last.set()  # the server sends its last chunk only after we have the first
    assert len(received) >= 2
    assert b"".join(received) == PCM


async def test_odd_chunk_boundaries_keep_samples_whole(
    server: SpeechServer, synth: OpenAISpeechSynthesizer
) -> None:
    server.chunks = [PCM[:1001], PCM[1001:1002], PCM[1002:5003], PCM[5003:]]
    received = await collect(synth)
    assert all(len(chunk) % 2 == 0 for chunk in received)
    assert b"".join(received) == PCM


async def test_server_error_gives_the_status_and_logs_url_and_body(
    server: SpeechServer, synth: OpenAISpeechSynthesizer
) -> None:
    server.status = 500
    server.chunks = [b'{"error": "model kokoro not loaded"}']
    with pytest.raises(BackendError) as caught:
        await collect(synth)
    error = caught.value
    assert (error.backend, error.code) == ("tts", "tts_error")
    # What clients see: no internal URL, no upstream body.
    assert error.message == "The text-to-speech backend failed (HTTP 500); try again."
    # What the server log shows.
    logged = str(error)
    assert f"{server.base_url}/audio/speech" in logged
    assert "500" in logged and "model kokoro not loaded" in logged and "--tts-base-url" in logged


async def test_refused_connection_raises_backend_error() -> None:
    with socket.socket() as s:  # a port that was free a moment ago and has no listener
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    tts = OpenAISpeechSynthesizer(f"http://127.0.0.1:{port}/v1", None, "tts-1", timeout=2.0)
    try:
        with pytest.raises(BackendError) as caught:
            await collect(tts)
    finally:
        await tts.aclose()
    assert caught.value.code == "tts_unreachable"
    assert caught.value.message == "The text-to-speech backend cannot be reached."
    assert f"127.0.0.1:{port}/v1/audio/speech" in str(caught.value)


async def test_silent_server_times_out(server: SpeechServer) -> None:
    server.silent = True
    tts = OpenAISpeechSynthesizer(server.base_url, None, "tts-1", timeout=0.2)
    try:
        with pytest.raises(BackendError) as caught:
            await collect(tts)
    finally:
        await tts.aclose()
    assert caught.value.code == "tts_timeout"
    assert caught.value.message == "The text-to-speech backend did not answer in time (0.2 s)."
    assert "--tts-model" in str(caught.value)


async def test_a_clip_cut_short_is_an_error(server: SpeechServer) -> None:
    # The server sends some audio, then closes the connection inside the chunked body.
    server.chunks = [PCM[:4096]]
    server.cut_short = True
    tts = OpenAISpeechSynthesizer(server.base_url, None, "tts-1", timeout=2.0)
    received: list[bytes] = []
    try:
        with pytest.raises(BackendError) as caught:
            async for chunk in tts.synthesize("Hello.", "alloy"):
                received.append(chunk)
    finally:
        await tts.aclose()
    assert b"".join(received) == PCM[:4096]
    assert caught.value.code == "tts_interrupted"


def test_any_non_empty_voice_passes_through() -> None:
    tts = OpenAISpeechSynthesizer("http://127.0.0.1:9/v1")
    assert tts.sample_rate == 24000
    assert tts.resolve_voice("af_heart") == "af_heart"
    assert tts.resolve_voice("  ") is None
