"""The Chat Completions backend over real sockets: an answer is complete only when the stream
says so, and a failure tells the client what happened without naming internal hosts or quoting
the upstream answer, which go to the server log instead."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from conftest import recv, recv_until
from raw_http import RawHTTPServer, chunk, chunked, chunked_head, delta, sse
from scripted_llm import Dropped, Fail, ScriptedLLM, Text

from openrealtime.backends.errors import BackendError
from openrealtime.backends.llm.base import ChatTurn, Finished, LlmEvent, LlmRequest, TextDelta
from openrealtime.backends.llm.openai_chat import OpenAIChatModel

REQUEST = LlmRequest(instructions="", context=(ChatTurn("user", "Hi"),))
THREE = ["The answer", " is", " forty"]


async def stream(url: str) -> tuple[list[LlmEvent], BackendError | None]:
    """What the backend yields from the server at `url`, and the error it ends with, if any."""
    model = OpenAIChatModel(url + "/v1", "m", None)
    received: list[LlmEvent] = []
    try:
        async for event in model.stream(REQUEST):
            received.append(event)
    except BackendError as error:
        return received, error
    finally:
        await model.aclose()
    return received, None


def close_delimited(*events: dict[str, Any] | str) -> bytes:
    """A 200 answer whose body ends when the connection closes (no length, not chunked)."""
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"
    return head + b"".join(sse(*events))


# --- backend: when an answer is complete -----------------------------------------------------


async def test_a_chunked_body_cut_short_is_interrupted_not_finished() -> None:
    async def three_deltas_then_close(writer: asyncio.StreamWriter) -> None:
        writer.write(chunked_head() + b"".join(chunk(p) for p in sse(*map(delta, THREE))))
        await writer.drain()  # and the server closes the connection: no end of the body

    async with RawHTTPServer([three_deltas_then_close]) as server:
        received, error = await stream(server.url)
    assert received == [TextDelta(t) for t in THREE]
    assert error is not None and error.code == "llm_interrupted"
    assert error.message == (
        "The language model backend broke off before its answer was complete; try again."
    )


async def test_a_body_that_ends_without_done_or_finish_reason_is_interrupted() -> None:
    async with RawHTTPServer([close_delimited(*map(delta, THREE))]) as server:
        received, error = await stream(server.url)
    assert received == [TextDelta(t) for t in THREE]
    assert error is not None and error.code == "llm_interrupted"
    assert "without [DONE]" in str(error)


async def test_a_finish_reason_without_done_is_a_finished_answer() -> None:
    async with RawHTTPServer([close_delimited(delta("Hi"), delta("", "length"))]) as server:
        received, error = await stream(server.url)
    assert error is None
    assert received == [TextDelta("Hi"), Finished("length", None)]


async def test_events_split_across_reads_are_put_back_together() -> None:
    body = b"".join(sse(delta("Hel"), delta("lo"), delta("", "stop"), "[DONE]"))
    pieces = [body[i : i + 7] for i in range(0, len(body), 7)]  # lines cut anywhere

    async def in_pieces(writer: asyncio.StreamWriter) -> None:
        writer.write(chunked_head())
        for piece in pieces:
            writer.write(chunk(piece))
            await writer.drain()
            await asyncio.sleep(0.001)
        writer.write(b"0\r\n\r\n")

    async with RawHTTPServer([in_pieces]) as server:
        received, error = await stream(server.url)
    assert error is None
    assert received == [TextDelta("Hel"), TextDelta("lo"), Finished("stop", None)]


# --- backend: what a failure says, and to whom -----------------------------------------------

UPSTREAM_SECRET = "model llama-internal on gpu-node-7 is not loaded"


def assert_private(error: BackendError, url: str, upstream: str) -> None:
    """Clients get no URL, host, port or upstream text; the server log (`str`) gets them."""
    host, port = url.removeprefix("http://").split(":")
    for private in ("http", host, port, upstream):
        assert private not in error.message
    assert url in str(error) and upstream in str(error)


@pytest.mark.parametrize(
    ("status", "message"),
    [
        (400, "The language model backend refused the request (HTTP 400)."),
        (503, "The language model backend failed (HTTP 503); try again."),
    ],
)
async def test_an_error_status_names_the_status_not_the_upstream_body(
    status: int, message: str
) -> None:
    answer = f"HTTP/1.1 {status} Oops\r\nContent-Length: {len(UPSTREAM_SECRET)}\r\n\r\n"
    async with RawHTTPServer([answer.encode() + UPSTREAM_SECRET.encode()]) as server:
        _, error = await stream(server.url)
    assert error is not None and (error.code, error.message) == ("llm_error", message)
    assert_private(error, server.url, UPSTREAM_SECRET)


async def test_an_error_reported_mid_stream_stays_in_the_log() -> None:
    answer = chunked(*sse(delta("Hi"), {"error": {"message": UPSTREAM_SECRET}}))
    async with RawHTTPServer([answer]) as server:
        received, error = await stream(server.url)
    assert received == [TextDelta("Hi")]
    assert error is not None and error.code == "llm_error"
    assert_private(error, server.url, UPSTREAM_SECRET)


async def test_an_unreachable_backend_names_no_address() -> None:
    async with RawHTTPServer() as server:
        url = server.url
    _, error = await stream(url)  # the server is gone: refused
    assert error is not None and error.code == "llm_unreachable"
    assert error.message == "The language model backend cannot be reached."
    assert_private(error, url, "--llm-base-url")


# --- through the server, with the official SDK -----------------------------------------------


def _text_turn(conn: Any) -> list[Any]:
    recv(conn)
    conn.session.update(session={"type": "realtime", "output_modalities": ["text"]})
    conn.conversation.item.create(
        item={"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Hi"}]}
    )
    conn.response.create()
    return recv_until(conn, "response.done")


def test_a_dropped_llm_stream_fails_the_response_and_leaves_the_item_incomplete(
    client: Any, llm: ScriptedLLM
) -> None:
    llm.script(Dropped(THREE), Text(["Recovered."]))
    with client.realtime.connect(model="gpt-realtime") as conn:
        events = _text_turn(conn)
        deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
        assert deltas == THREE  # the client saw the partial answer stream
        done = events[-1].response
        assert done.status == "failed"
        assert done.status_details.error.type == "server_error"
        assert done.status_details.error.code == "llm_interrupted"
        [item] = done.output
        assert item.status == "incomplete"
        conn.conversation.item.retrieve(item_id=item.id)
        retrieved = recv_until(conn, "conversation.item.retrieved")[-1].item
        assert retrieved.id == item.id and retrieved.status == "incomplete"
        # The session goes on.
        conn.response.create()
        assert recv_until(conn, "response.done")[-1].response.status == "completed"


def test_a_refused_request_tells_the_client_the_status_and_the_log_the_rest(
    client: Any, llm: ScriptedLLM, settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    llm.script(Fail(400, f'{{"error": {{"message": "{UPSTREAM_SECRET}"}}}}'))
    with (
        caplog.at_level(logging.WARNING, logger="openrealtime"),
        client.realtime.connect(model="gpt-realtime") as conn,
    ):
        done = _text_turn(conn)[-1].response
    error = done.status_details.error
    assert (done.status, error.code) == ("failed", "llm_error")
    assert error.message == "The language model backend refused the request (HTTP 400)."
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert settings.llm_base_url in logged and UPSTREAM_SECRET in logged
