"""Image input through the official `openai` SDK over a real socket: what the LLM receives,
the errors for images it could not take, and a server whose LLM reads no images."""

from __future__ import annotations

import base64
import struct
import zlib
from collections.abc import Iterator

import openai
import pytest
from conftest import API_KEY, recv, recv_until
from raw_http import RawHTTPServer, delta, sse
from scripted_llm import ScriptedLLM, Text
from servers import ServerThread

from openrealtime.backends.llm.base import ChatTurn, Finished, LlmRequest, Usage
from openrealtime.backends.llm.openai_chat import OpenAIChatModel
from openrealtime.backends.registry import Backends
from openrealtime.cli import parse_settings
from openrealtime.config import Settings
from openrealtime.core.images import MAX_IMAGE_BYTES, check_image_url, image_size, image_tokens
from openrealtime.server.app import create_app


def png(width: int, height: int) -> bytes:
    """A real (red) PNG, built by hand so the test needs no imaging library."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    rows = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def data_url(raw: bytes, media_type: str = "image/png") -> str:
    return f"data:{media_type};base64,{base64.b64encode(raw).decode()}"


def image_message(
    url: str | None, text: str = "What is in this picture?", detail: str = "low"
) -> dict:
    return {
        "type": "message",
        "role": "user",
        "content": [
            {"type": "input_text", "text": text},
            {"type": "input_image", "image_url": url, "detail": detail},
        ],
    }


def _text_session(conn) -> None:
    recv_until(conn, "session.created")
    conn.session.update(session={"type": "realtime", "output_modalities": ["text"]})
    recv_until(conn, "session.updated")


def _error(conn) -> object:
    event = recv(conn)
    assert event.type == "error", event
    return event.error


def test_image_turn_reaches_the_llm_as_image_url_parts(client, llm) -> None:
    url = data_url(png(4, 3))
    # The backend reports only a prompt total: the image's estimate (85 at detail low) is
    # counted as image tokens within it.
    llm.script(Text(["A red ", "square."], usage=(300, 4)))
    with client.realtime.connect(model="gpt-realtime") as conn:
        _text_session(conn)
        conn.conversation.item.create(item=image_message(url))
        added = recv_until(conn, "conversation.item.done")[0]
        assert added.item.content[1].type == "input_image"
        conn.response.create()
        done = recv_until(conn, "response.done")[-1].response
    assert done.status == "completed"
    assert done.output[0].content[0].text == "A red square."
    assert done.usage.input_token_details.image_tokens == 85
    assert done.usage.input_token_details.text_tokens == 215
    assert done.usage.input_tokens == 300
    user = llm.last_request["messages"][-1]
    assert user == {
        "role": "user",
        "content": [
            {"type": "text", "text": "What is in this picture?"},
            {"type": "image_url", "image_url": {"url": url, "detail": "low"}},
        ],
    }


def test_image_only_message_and_estimated_usage(client, llm) -> None:
    """No text beside the picture, and a backend that reports no usage: the estimate follows
    OpenAI's tile rule (1024x1024 at high detail: 765 tokens)."""
    url = data_url(png(1024, 1024))
    llm.script(Text(["Red."], usage=None))
    with client.realtime.connect(model="gpt-realtime") as conn:
        _text_session(conn)
        item = {
            "type": "message",
            "role": "user",
            "content": [{"type": "input_image", "image_url": url, "detail": "high"}],
        }
        conn.response.create(response={"conversation": "none", "input": [item]})
        done = recv_until(conn, "response.done")[-1].response
    assert done.usage.input_token_details.image_tokens == 765
    assert llm.last_request["messages"][-1]["content"] == [
        {"type": "image_url", "image_url": {"url": url, "detail": "high"}}
    ]


@pytest.mark.parametrize(
    ("url", "code", "says"),
    [
        (data_url(b"GIF89a not a png"), "invalid_image", "not a readable PNG"),
        ("data:image/png;base64,@@not base64@@", "invalid_image", "does not decode"),
        (data_url(png(2, 2), "image/gif"), "invalid_image", "PNG or JPEG"),
        ("https://example.com/cat.png", "invalid_image", "data URL"),
        (None, "missing_required_parameter", "needs 'image_url'"),
    ],
    ids=["not_an_image", "bad_base64", "unsupported_type", "remote_url", "no_url"],
)
def test_unreadable_image_is_refused_and_nothing_is_stored(client, llm, url, code, says) -> None:
    with client.realtime.connect(model="gpt-realtime") as conn:
        _text_session(conn)
        conn.conversation.item.create(item={**image_message(url), "id": "item_img"})
        error = _error(conn)
        assert (error.code, error.param) == (code, "item.content[1].image_url")
        assert says in error.message
        conn.conversation.item.retrieve(item_id="item_img")
        assert _error(conn).code == "item_not_found"
    assert llm.requests == []


def test_oversized_image_is_refused(client, llm) -> None:
    # A PNG header, then padding: past the limit by one byte.
    raw = png(2, 2)
    url = data_url(raw + b"\x00" * (MAX_IMAGE_BYTES + 1 - len(raw)))
    with client.realtime.connect(model="gpt-realtime") as conn:
        _text_session(conn)
        conn.conversation.item.create(item=image_message(url))
        error = _error(conn)
        assert (error.code, error.param) == ("image_too_large", "item.content[1].image_url")
        assert "10 MiB" in error.message
        # The session goes on: the same picture, smaller, is taken.
        conn.conversation.item.create(item=image_message(data_url(raw)))
        assert recv(conn).type == "conversation.item.added"


class _OwnLlmOnly(Backends):
    """The session's speech backends, shared with the other tests: this server closes only
    the LLM it owns."""

    def load(self) -> None:
        pass

    async def aclose(self) -> None:
        await self.llm.aclose()


@pytest.fixture(scope="module")
def blind_server(
    scripted_llm_server: tuple[ScriptedLLM, ServerThread], backends: Backends
) -> Iterator[ServerThread]:
    _, llm_thread = scripted_llm_server
    blind = OpenAIChatModel(llm_thread.url + "/v1", "scripted-model", None, vision=False)
    shared = _OwnLlmOnly(llm=blind, stt=backends.stt, tts=backends.tts, vad=backends.vad)
    settings = Settings(api_keys=[API_KEY], llm_vision=False)
    with ServerThread(create_app(settings, shared)) as thread:
        yield thread


def test_llm_without_vision_refuses_image_items(blind_server, llm) -> None:
    client = openai.OpenAI(base_url=blind_server.url + "/v1", api_key=API_KEY)
    url = data_url(png(2, 2))
    with client.realtime.connect(model="gpt-realtime") as conn:
        _text_session(conn)
        conn.conversation.item.create(item=image_message(url))
        error = _error(conn)
        assert (error.code, error.param) == (
            "image_input_not_supported",
            "item.content[1].image_url",
        )
        assert "--llm-vision false" in error.message
        conn.response.create(response={"conversation": "none", "input": [image_message(url)]})
        error = _error(conn)
        assert (error.code, error.param) == (
            "image_input_not_supported",
            "response.input[0].content[1].image_url",
        )
        # Text still works on this server.
        llm.script(Text(["Fine."]))
        conn.conversation.item.create(
            item={
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "Hi"}],
            }
        )
        conn.response.create()
        assert recv_until(conn, "response.done")[-1].response.status == "completed"
    assert len(llm.requests) == 1


def jpeg_header(width: int, height: int) -> bytes:
    """The start of a baseline JPEG: SOI, an APP0 (JFIF) segment, then the frame header."""
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    sof0 = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, height, width, 1) + b"\x01\x11\x00"
    return b"\xff\xd8" + app0 + sof0


def test_image_size_reads_png_and_jpeg_headers() -> None:
    assert image_size(png(7, 5)) == (7, 5)
    assert image_size(jpeg_header(640, 480)) == (640, 480)
    assert image_size(b"\xff\xd8\xff\xe0\x00") is None  # cut before the frame header
    assert image_size(b"GIF89a") is None
    url = data_url(jpeg_header(640, 480), "image/jpeg")
    assert check_image_url(url, "p") == (640, 480)
    # 640x480 at high detail: already within both bounds (pictures are only scaled down),
    # so 2x1 tiles of 512.
    assert image_tokens(url, "high") == 85 + 2 * 170
    assert image_tokens(url, "low") == 85


def test_cli_llm_vision_flag() -> None:
    assert parse_settings(["serve", "--llm-vision", "false"]).llm_vision is False
    assert parse_settings(["serve"]).llm_vision is True
    with pytest.raises(SystemExit):
        parse_settings(["serve", "--llm-vision", "maybe"])


async def test_image_tokens_the_backend_reports_are_read() -> None:
    usage = {
        "choices": [],
        "usage": {
            "prompt_tokens": 900,
            "completion_tokens": 3,
            "prompt_tokens_details": {"cached_tokens": 0, "image_tokens": 765},
        },
    }
    body = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"
    body += b"".join(sse(delta("Red."), delta("", "stop"), usage, "[DONE]"))
    async with RawHTTPServer([body]) as server:
        model = OpenAIChatModel(server.url + "/v1", "m", None)
        request = LlmRequest(instructions="", context=(ChatTurn("user", "Hi"),))
        try:
            events = [event async for event in model.stream(request)]
        finally:
            await model.aclose()
    assert events[-1] == Finished("stop", Usage(900, 3, 0, 765))
