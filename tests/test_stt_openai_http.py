"""OpenAI-compatible HTTP transcription, against a scripted server on a real loopback socket."""

from __future__ import annotations

import asyncio
import email.parser
import email.policy
import io
import socket
import threading
import time
import wave
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from openrealtime.backends.errors import BackendError
from openrealtime.backends.stt.base import (
    TranscriptDelta,
    TranscriptDone,
    TranscriptEvent,
    TranscriptionOptions,
)
from openrealtime.backends.stt.openai_http import OpenAITranscriber

RATE = 16000


@dataclass
class Part:
    data: bytes
    filename: str | None = None
    content_type: str | None = None


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    parts: dict[str, Part]

    def field(self, name: str) -> str:
        return self.parts[name].data.decode()


@dataclass
class Script:
    """What the fake server answers next, and what it was sent."""

    status: int = 200
    body: bytes = b'{"text": " Hello there. "}'
    delay: float = 0.0
    requests: list[Recorded] = field(default_factory=list)


def parse_multipart(content_type: str, body: bytes) -> dict[str, Part]:
    # The stdlib MIME parser, so the test needs no multipart package.
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body
    )
    assert message.is_multipart()
    parts = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        parts[str(name)] = Part(
            part.get_payload(decode=True),
            part.get_filename(),
            part.get_content_type() if part.get("content-type") else None,
        )
    return parts


class ScriptedServer:
    def __init__(self) -> None:
        self.script = Script()
        app = Starlette(routes=[Route("/v1/audio/transcriptions", self.handle, methods=["POST"])])
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.base_url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/v1"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]})

    async def handle(self, request: Request) -> Response:
        body = await request.body()
        script = self.script
        script.requests.append(
            Recorded(
                request.url.path,
                dict(request.headers),
                parse_multipart(request.headers["content-type"], body),
            )
        )
        await asyncio.sleep(script.delay)
        return Response(script.body, script.status, media_type="application/json")

    def __enter__(self) -> ScriptedServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "scripted server did not start"
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()


@pytest.fixture(scope="module")
def server() -> Iterator[ScriptedServer]:
    with ScriptedServer() as s:
        yield s


@pytest.fixture
def script(server: ScriptedServer) -> Script:
    server.script = Script()
    return server.script


def tone(seconds: float) -> bytes:
    t = np.arange(int(seconds * RATE)) / RATE
    return (np.sin(2 * np.pi * 440 * t) * 8000).astype("<i2").tobytes()


async def collect(t: OpenAITranscriber, pcm: bytes, options: TranscriptionOptions) -> list:
    try:
        events: list[TranscriptEvent] = [e async for e in t.transcribe(pcm, options)]
        return events
    finally:
        await t.aclose()


async def test_posts_a_wav_and_fields_and_returns_the_text(
    server: ScriptedServer, script: Script
) -> None:
    t = OpenAITranscriber(server.base_url, api_key="sk-test", model="whisper-large-v3")
    pcm = tone(0.5)
    options = TranscriptionOptions(model="gpt-4o-transcribe", language="en", prompt="Greetings.")

    events = await collect(t, pcm, options)

    assert events == [TranscriptDelta("Hello there."), TranscriptDone("Hello there.", 0.5)]
    (request,) = script.requests
    assert request.path == "/v1/audio/transcriptions"
    assert request.headers["authorization"] == "Bearer sk-test"
    assert request.field("model") == "whisper-large-v3"  # the operator's choice wins
    assert request.field("language") == "en"
    assert request.field("prompt") == "Greetings."
    assert request.field("response_format") == "json"

    upload = request.parts["file"]
    assert upload.filename == "audio.wav"
    assert upload.content_type == "audio/wav"
    assert len(upload.data) == 44 + len(pcm)  # the canonical 44-byte header
    with wave.open(io.BytesIO(upload.data)) as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, RATE)
        assert wav.readframes(wav.getnframes()) == pcm


async def test_client_model_used_when_none_configured(
    server: ScriptedServer, script: Script
) -> None:
    options = TranscriptionOptions(model="whisper-1")
    await collect(OpenAITranscriber(server.base_url), tone(0.2), options)
    await collect(OpenAITranscriber(server.base_url), tone(0.2), TranscriptionOptions())

    with_model, without = script.requests
    assert with_model.field("model") == "whisper-1"
    assert "model" not in without.parts
    assert "language" not in without.parts and "prompt" not in without.parts
    assert "authorization" not in without.headers


async def test_empty_text_gives_only_done(server: ScriptedServer, script: Script) -> None:
    script.body = b'{"text": ""}'
    events = await collect(OpenAITranscriber(server.base_url), tone(0.2), TranscriptionOptions())
    assert events == [TranscriptDone("", 0.2)]


async def test_empty_audio_sends_nothing(server: ScriptedServer, script: Script) -> None:
    events = await collect(OpenAITranscriber(server.base_url), b"", TranscriptionOptions())
    assert events == [TranscriptDone("", 0.0)]
    assert script.requests == []


async def test_shared_client_serves_concurrent_requests(
    server: ScriptedServer, script: Script
) -> None:
    script.delay = 0.5
    t = OpenAITranscriber(server.base_url, model="m")

    async def one() -> list[TranscriptEvent]:
        return [e async for e in t.transcribe(tone(0.1), TranscriptionOptions())]

    started = time.perf_counter()
    results = await asyncio.gather(*(one() for _ in range(4)))
    elapsed = time.perf_counter() - started
    await t.aclose()
    assert all(r[-1] == TranscriptDone("Hello there.", 0.1) for r in results)
    assert len(script.requests) == 4
    assert elapsed < 1.5, "requests were serialised"  # 2 s one after another


# Failures ---------------------------------------------------------------------------------


async def expect_error(t: OpenAITranscriber, code: str) -> BackendError:
    """The failure as clients see it (a code; a message with no internal URL, host or port),
    and as the server log does (`str(error)`: the URL and what to check)."""
    with pytest.raises(BackendError) as info:
        await collect(t, tone(0.2), TranscriptionOptions())
    error = info.value
    assert (error.backend, error.code) == ("stt", code)
    assert error.message.startswith("The speech-to-text backend ")
    host, port = t.url.split("//")[1].split("/")[0].split(":")
    assert "http" not in error.message and host not in error.message and port not in error.message
    assert t.url in str(error)
    assert "--stt-base-url" in str(error) and "--stt-model" in str(error)
    return error


async def test_server_error(server: ScriptedServer, script: Script) -> None:
    script.status = 500
    script.body = b'{"error": {"message": "CUDA out of memory"}}'
    error = await expect_error(OpenAITranscriber(server.base_url, model="big-model"), "stt_error")
    assert error.message == "The speech-to-text backend failed (HTTP 500); try again."
    assert "CUDA out of memory" in str(error) and "big-model" in str(error)  # for the log


async def test_long_error_body_is_cut(server: ScriptedServer, script: Script) -> None:
    script.status = 404
    script.body = b"x" * 10_000
    error = await expect_error(OpenAITranscriber(server.base_url), "stt_error")
    assert error.message == "The speech-to-text backend refused the request (HTTP 404)."
    assert "xxxx" in str(error) and len(str(error)) < 600


@pytest.mark.parametrize(
    "body", [b"<html>not json</html>", b'{"txt": "typo"}', b"[1, 2]", b'{"text": 42}']
)
async def test_garbage_json(server: ScriptedServer, script: Script, body: bytes) -> None:
    script.body = body
    error = await expect_error(OpenAITranscriber(server.base_url), "stt_bad_response")
    assert body.decode()[:10] not in error.message
    assert body.decode()[:10] in str(error)


async def test_timeout(server: ScriptedServer, script: Script) -> None:
    script.delay = 1.0
    error = await expect_error(OpenAITranscriber(server.base_url, timeout=0.2), "stt_timeout")
    assert error.message == "The speech-to-text backend did not answer in time (0.2 s)."


async def test_closed_port() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # Nothing listens there now.
    error = await expect_error(OpenAITranscriber(f"http://127.0.0.1:{port}/v1/"), "stt_unreachable")
    assert error.message == "The speech-to-text backend cannot be reached."
    assert "Connect call failed" in str(error)
    assert f"http://127.0.0.1:{port}/v1/audio/transcriptions" in str(error)
