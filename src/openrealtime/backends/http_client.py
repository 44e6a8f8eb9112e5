"""A small HTTP/1.1 client for streaming JSON APIs: keep-alive connections, httptools parsing.

The Chat Completions request is on the critical path of every turn. The `openai` SDK spends
~6 ms of CPU per request (and more as the conversation grows) building and validating models;
this client spends a fraction of a millisecond, which is most of openrealtime's own overhead.
No proxies, no redirects, no HTTP/2: an OpenAI-compatible endpoint needs none of them.
"""

from __future__ import annotations

import asyncio
import ssl
import weakref
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httptools

_Idle = tuple[asyncio.StreamReader, asyncio.StreamWriter, float]

_READ_SIZE = 65536
# Idle connections older than this are not reused: servers close them (uvicorn after 5 s), and
# a request sent into one that is closing fails. Nor are more than _MAX_IDLE kept.
_IDLE_SECONDS = 4.0
_MAX_IDLE = 32


class HTTPError(Exception):
    """The request could not be made or did not complete (connect, reset, malformed)."""


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    _body: asyncio.Queue[bytes | None] = field(default_factory=asyncio.Queue)
    _pump: asyncio.Task[None] | None = None

    async def chunks(self) -> AsyncIterator[bytes]:
        while (chunk := await self._body.get()) is not None:
            yield chunk
        pump = self._pump
        if pump is not None and pump.done() and not pump.cancelled() and pump.exception():
            error = pump.exception()
            raise HTTPError(str(error) or type(error).__name__)

    async def read(self) -> bytes:
        return b"".join([chunk async for chunk in self.chunks()])

    def close(self) -> None:
        """Stop reading early: the connection is closed, not reused (which is how a streamed
        generation is cancelled on the server's side)."""
        if self._pump is not None and not self._pump.done():
            self._pump.cancel()


class _Parsing:
    """httptools callbacks, filling a Response as bytes arrive."""

    def __init__(self) -> None:
        self.headers: dict[str, str] = {}
        self.headers_done = asyncio.Event()
        self.body: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.complete = False
        self.keep_alive = False
        self.parser = httptools.HttpResponseParser(self)

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self.headers_done.set()

    def on_body(self, body: bytes) -> None:
        self.body.put_nowait(body)

    def on_message_complete(self) -> None:
        # llhttp answers should_keep_alive() only inside its callbacks; afterwards, False.
        self.keep_alive = self.parser.should_keep_alive()
        self.complete = True
        self.body.put_nowait(None)


class HTTPClient:
    """One base URL, a pool of idle keep-alive connections to it."""

    def __init__(self, base_url: str, *, headers: dict[str, str] | None = None) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https"):
            raise ValueError(f"unsupported URL scheme in {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self._host = parts.hostname or "localhost"
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._ssl = ssl.create_default_context() if parts.scheme == "https" else None
        self._prefix = parts.path.rstrip("/")
        host_header = self._host if parts.port is None else f"{self._host}:{self._port}"
        self._base_headers = {"Host": host_header, "User-Agent": "openrealtime", **(headers or {})}
        # Per event loop (a connection belongs to the loop that opened it): (reader, writer,
        # loop time it went idle), newest last.
        self._pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, list[_Idle]] = (
            weakref.WeakKeyDictionary()
        )

    @property
    def _idle(self) -> list[_Idle]:
        return self._pools.setdefault(asyncio.get_running_loop(), [])

    def _request_bytes(self, method: str, path: str, body: bytes, headers: dict[str, str]) -> bytes:
        lines = [f"{method} {self._prefix}{path} HTTP/1.1"]
        for name, value in {**self._base_headers, **headers}.items():
            lines.append(f"{name}: {value}")
        lines.append(f"Content-Length: {len(body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body

    async def request(
        self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> Response:
        """Send a request; the Response's body streams as it arrives."""
        data = self._request_bytes(method, path, body, headers or {})
        # A pooled connection the server has since closed fails at once: retry on a new one.
        for attempt in (0, 1):
            pooled = self._take_idle() if attempt == 0 else None
            reused = pooled is not None
            reader, writer = pooled if pooled is not None else await self._connect()
            parsing = _Parsing()
            try:
                writer.write(data)
                pump = asyncio.get_running_loop().create_task(self._pump(reader, writer, parsing))
                headers_done = asyncio.ensure_future(parsing.headers_done.wait())
                await asyncio.wait([pump, headers_done], return_when=asyncio.FIRST_COMPLETED)
                if not parsing.headers_done.is_set():
                    headers_done.cancel()
                    pump.result()  # raises what the pump met
                    raise HTTPError("the connection closed before a response")
            except (OSError, HTTPError, httptools.HttpParserError) as exc:
                writer.close()
                if reused:
                    continue
                raise HTTPError(str(exc) or type(exc).__name__) from exc
            return Response(parsing.parser.get_status_code(), parsing.headers, parsing.body, pump)
        raise HTTPError("unreachable")

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        try:
            return await asyncio.open_connection(self._host, self._port, ssl=self._ssl)
        except OSError as exc:
            raise HTTPError(str(exc) or type(exc).__name__) from exc

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        parsing: _Parsing,
    ) -> None:
        """Read one response into `parsing`; then pool the connection, or close it."""
        reusable = False
        try:
            while not parsing.complete:
                data = await reader.read(_READ_SIZE)
                if not data:
                    parsing.body.put_nowait(None)
                    if parsing.headers_done.is_set():
                        return  # a body delimited by the close
                    raise HTTPError("the server closed the connection")
                parsing.parser.feed_data(data)
            reusable = parsing.keep_alive
        finally:
            if reusable and len(self._idle) < _MAX_IDLE:
                self._idle.append((reader, writer, asyncio.get_running_loop().time()))
            else:
                writer.close()

    def _take_idle(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        now = asyncio.get_running_loop().time()
        while self._idle:
            reader, writer, since = self._idle.pop()
            if now - since < _IDLE_SECONDS and not reader.at_eof() and not writer.is_closing():
                return reader, writer
            writer.close()
        return None

    async def aclose(self) -> None:
        for _, writer, _ in self._idle:
            writer.close()
        self._idle.clear()
