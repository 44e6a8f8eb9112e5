"""MCP servers over HTTP, with the official `mcp` SDK: streamable HTTP, or SSE for older
servers: a `server_url` whose path ends in `/sse`, or one that refuses the streamable HTTP
`initialize` (the fallback the MCP specification describes).

The SDK's transports are async context managers that must be entered and left in one task,
while a session's calls come from other tasks: each connection has an owner task that opens
it, waits until it is closed, then leaves it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any
from urllib.parse import urlsplit

from .base import McpError, McpServer, McpToolInfo
from .hosts import CheckedNetwork, HostPolicy

log = logging.getLogger(__name__)

REQUEST_TIMEOUT = -32001  # MCP's JSON-RPC code for a request that timed out


def _refused_streamable(error: McpError) -> bool:
    """The server answered the streamable HTTP `initialize`, but not as one: an HTTP 4xx
    (which the SDK reports as a JSON-RPC error, without the status) or a JSON-RPC error."""
    if error.kind == "http_error":
        return error.code in (400, 404, 405)
    return error.kind == "protocol_error" and error.code != REQUEST_TIMEOUT


def _leaf(error: BaseException) -> BaseException:
    """The one cause inside the task groups' exception groups."""
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]
    return error


def as_mcp_error(error: BaseException, server: McpServer) -> McpError:
    """What went wrong, in words for the client; the exception itself goes to `detail`."""
    import httpx2
    from mcp.shared.exceptions import MCPError

    error = _leaf(error)
    if isinstance(error, McpError):
        return error
    detail = f"{type(error).__name__}: {error}"
    if isinstance(error, MCPError):
        return McpError("protocol_error", error.message, code=error.code, detail=detail)
    if isinstance(error, httpx2.HTTPStatusError):
        status = error.response.status_code
        return McpError(
            "http_error",
            f"The MCP server {server.label!r} answered HTTP {status}.",
            code=status,
            detail=detail,
        )
    if isinstance(error, TimeoutError):
        return McpError(
            "protocol_error",
            f"The MCP server {server.label!r} did not answer in time.",
            code=REQUEST_TIMEOUT,
            detail=detail,
        )
    if isinstance(error, httpx2.HTTPError | OSError):  # (after TimeoutError, an OSError)
        return McpError(
            "http_error",
            f"Could not reach the MCP server {server.label!r} at its server_url.",
            detail=detail,
        )
    return McpError(
        "protocol_error",
        f"The MCP server {server.label!r} failed: it does not speak MCP as expected.",
        code=-32603,
        detail=detail,
    )


def _output_text(result: Any) -> str:
    """A call's content as text: its text parts, else its structured content as JSON."""
    texts = [block.text for block in result.content if getattr(block, "type", "") == "text"]
    if texts:
        return "\n".join(texts)
    if result.structured_content is not None:
        return json.dumps(result.structured_content)
    return json.dumps([block.model_dump(mode="json") for block in result.content])


def checked_http_client(
    policy: HostPolicy,
    headers: dict[str, str] | None = None,
    timeout: Any = None,
    auth: Any = None,
) -> Any:
    """The SDK's HTTP client, whose every connection `policy` checks (hosts.py); with a proxy
    from the environment, the SDK's own."""
    import httpx2
    from mcp.shared._httpx_utils import create_mcp_http_client

    client = create_mcp_http_client(headers=headers, timeout=timeout, auth=auth)
    assert isinstance(client, httpx2.AsyncClient)
    pool = getattr(client._transport, "_pool", None)  # no public hook for the network layer
    if type(pool).__name__ == "AsyncConnectionPool":  # not a proxy, which connects itself
        pool._network_backend = CheckedNetwork(pool._network_backend, policy)  # type: ignore[union-attr]
    return client


class SdkConnection:
    def __init__(
        self,
        server: McpServer,
        policy: HostPolicy,
        *,
        sse: bool,
        call_timeout: float,
        connect_timeout: float,
    ) -> None:
        self.server = server
        self.policy = policy
        self.sse = sse
        self.call_timeout = call_timeout
        self.connect_timeout = connect_timeout
        self._session: Any = None
        self._closing = asyncio.Event()
        self._owner: asyncio.Task[None] | None = None

    async def open(self) -> None:
        ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._owner = asyncio.create_task(self._own(ready))
        try:
            await asyncio.wait_for(asyncio.shield(ready), self.connect_timeout)
        except asyncio.CancelledError:
            await self.aclose()
            raise
        except Exception as exc:
            await self.aclose()
            raise as_mcp_error(exc, self.server) from None

    async def _own(self, ready: asyncio.Future[None]) -> None:
        from mcp.client.session import ClientSession
        from mcp.client.sse import sse_client
        from mcp.client.streamable_http import streamable_http_client

        server, policy = self.server, self.policy

        def client(
            headers: dict[str, str] | None = None, timeout: Any = None, auth: Any = None
        ) -> Any:
            return checked_http_client(policy, headers, timeout, auth)

        try:
            async with contextlib.AsyncExitStack() as stack:
                if self.sse:
                    streams = await stack.enter_async_context(
                        sse_client(
                            server.url, headers=server.http_headers(), httpx_client_factory=client
                        )
                    )
                else:
                    http = await stack.enter_async_context(client(headers=server.http_headers()))
                    streams = await stack.enter_async_context(
                        streamable_http_client(server.url, http_client=http)
                    )
                read, write = streams[0], streams[1]
                session = await stack.enter_async_context(ClientSession(read, write))
                await session.initialize()
                self._session = session
                ready.set_result(None)
                await self._closing.wait()
        except BaseException as exc:  # the SDK's task groups raise groups; open() maps them
            if not ready.done():
                if isinstance(exc, Exception):
                    ready.set_exception(exc)
                else:  # cancelled while connecting: open() has given up already
                    ready.cancel()
            elif not isinstance(exc, asyncio.CancelledError):
                log.info("MCP connection to %s ended: %s", server.label, _leaf(exc))
        finally:
            self._session = None

    def _live(self) -> Any:
        if self._session is None:
            raise McpError(
                "http_error", f"The connection to the MCP server {self.server.label!r} was lost."
            )
        return self._session

    async def list_tools(self) -> list[McpToolInfo]:
        tools: list[McpToolInfo] = []
        cursor: str | None = None
        try:
            from mcp.types import PaginatedRequestParams

            for _ in range(100):  # a server that pages forever cannot hang the session
                params = PaginatedRequestParams(cursor=cursor) if cursor else None
                result = await asyncio.wait_for(
                    self._live().list_tools(params=params), self.call_timeout
                )
                for tool in result.tools:
                    annotations = tool.annotations
                    tools.append(
                        McpToolInfo(
                            name=tool.name,
                            input_schema=dict(tool.input_schema),
                            description=tool.description,
                            annotations=annotations.model_dump(by_alias=True, exclude_none=True)
                            if annotations is not None
                            else None,
                        )
                    )
                cursor = result.next_cursor
                if not cursor:
                    break
        except Exception as exc:
            raise as_mcp_error(exc, self.server) from None
        return tools

    async def call_tool(self, name: str, arguments: dict[str, Any]) -> str:
        try:
            result = await asyncio.wait_for(
                self._live().call_tool(name, arguments), self.call_timeout
            )
        except Exception as exc:
            raise as_mcp_error(exc, self.server) from None
        if result.is_error:
            raise McpError("tool_execution_error", _output_text(result))
        return _output_text(result)

    async def aclose(self) -> None:
        self._closing.set()
        owner = self._owner
        if owner is None or owner.done():
            return
        try:  # leaving the session sends its DELETE; a dead server must not hold us up
            await asyncio.wait_for(asyncio.shield(owner), 5.0)
        except BaseException:
            owner.cancel()
            with contextlib.suppress(BaseException):
                await owner


class SdkConnector:
    """Connections to MCP servers, refused for hosts the operator does not allow."""

    def __init__(
        self,
        allow_hosts: list[str] | None = None,
        *,
        call_timeout: float = 30.0,
        connect_timeout: float = 10.0,
    ) -> None:
        self.policy = HostPolicy(allow_hosts or [])
        self.call_timeout = call_timeout
        self.connect_timeout = connect_timeout

    async def connect(self, server: McpServer) -> SdkConnection:
        await self.policy.check(server.url)
        sse = urlsplit(server.url).path.rstrip("/").endswith("/sse")
        try:
            return await self._open(server, sse)
        except McpError as exc:
            if sse or not _refused_streamable(exc):
                raise
            try:
                return await self._open(server, True)  # an older server: SSE at that URL
            except McpError:
                raise exc from None  # not SSE either: the first answer says more

    async def _open(self, server: McpServer, sse: bool) -> SdkConnection:
        connection = SdkConnection(
            server,
            self.policy,
            sse=sse,
            call_timeout=self.call_timeout,
            connect_timeout=self.connect_timeout,
        )
        await connection.open()
        return connection
