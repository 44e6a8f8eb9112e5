"""The lean HTTP/1.1 client against raw asyncio servers that misbehave on purpose."""

from __future__ import annotations

import asyncio

import pytest

from openrealtime.backends.http_client import HTTPClient, HTTPError


class RawServer:
    """Answers each request with the next scripted bytes; counts connections."""

    def __init__(self, *answers: bytes, close_after: bool = False) -> None:
        self.answers = list(answers)
        self.close_after = close_after
        self.connections = 0
        self.requests: list[bytes] = []

    async def __aenter__(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/v1"

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while self.answers:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(
                    next(
                        (
                            line.split(b":")[1]
                            for line in head.split(b"\r\n")
                            if line.lower().startswith(b"content-length")
                        ),
                        b"0",
                    )
                )
                self.requests.append(head + await reader.readexactly(length))
                writer.write(self.answers.pop(0))
                await writer.drain()
                if self.close_after:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()


def chunked(*pieces: bytes) -> bytes:
    body = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"
    return b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + body


async def test_chunked_bodies_stream_and_the_connection_is_reused() -> None:
    async with RawServer(chunked(b"data: 1\n\n", b"data: 2\n\n"), chunked(b"x")) as url:
        client = HTTPClient(url, headers={"Authorization": "Bearer k"})
        first = await client.request("POST", "/chat/completions", b'{"a":1}')
        assert first.status == 200
        assert await first.read() == b"data: 1\n\ndata: 2\n\n"
        await asyncio.sleep(0)  # let the finished response hand its connection back
        second = await client.request("GET", "/models")
        assert await second.read() == b"x"
        assert second.headers["transfer-encoding"] == "chunked"


async def test_one_connection_serves_requests_in_turn() -> None:
    server = RawServer(chunked(b"a"), chunked(b"b"), chunked(b"c"))
    async with server as url:
        client = HTTPClient(url)
        for expected in (b"a", b"b", b"c"):
            response = await client.request("GET", "/models")
            assert await response.read() == expected
            await asyncio.sleep(0)
        await client.aclose()
    assert server.connections == 1
    assert server.requests[0].startswith(b"GET /v1/models HTTP/1.1\r\n")


async def test_a_connection_the_server_closed_is_replaced_once() -> None:
    server = RawServer(chunked(b"a"), chunked(b"b"), close_after=True)
    async with server as url:
        client = HTTPClient(url)
        assert await (await client.request("GET", "/x")).read() == b"a"
        await asyncio.sleep(0.05)  # the server has closed the kept-alive connection
        assert await (await client.request("GET", "/x")).read() == b"b"
    assert server.connections == 2


async def test_closing_a_response_midway_closes_its_connection() -> None:
    never_ends = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"
    server = RawServer(never_ends, chunked(b"next"))
    async with server as url:
        client = HTTPClient(url)
        response = await client.request("POST", "/chat/completions")
        async for chunk in response.chunks():
            assert chunk == b"hello"
            break
        response.close()
        await asyncio.sleep(0.05)
        # The abandoned connection is not reused: the next request opens a new one.
        server.answers.insert(0, chunked(b"next"))
        assert await (await client.request("GET", "/x")).read() == b"next"
    assert server.connections == 2


async def test_error_statuses_and_close_delimited_bodies_are_read() -> None:
    answer = b'HTTP/1.1 404 Not Found\r\nConnection: close\r\n\r\n{"error": "no model"}'
    async with RawServer(answer, close_after=True) as url:
        response = await HTTPClient(url).request("POST", "/chat/completions")
        assert response.status == 404
        assert await response.read() == b'{"error": "no model"}'


async def test_refused_connections_and_garbage_raise_http_errors() -> None:
    async with RawServer(b"this is not http\r\n\r\n", close_after=True) as url:
        with pytest.raises(HTTPError):
            await HTTPClient(url).request("GET", "/x")
    with pytest.raises(HTTPError):
        await HTTPClient(url).request("GET", "/x")  # the server is gone: refused
