"""A session's MCP connections: one per server, opened on first use (the listing), reused by
its calls, dropped when a call finds it broken (the next call reconnects), closed with the
session. Runs the core's `ListMcpTools` and `RunMcpCall`; failures become results."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from ..backends.mcp.base import McpConnection, McpConnector, McpError, McpServer, McpToolInfo

log = logging.getLogger(__name__)

INVALID_PARAMS = -32602  # JSON-RPC's code for bad arguments


class McpConnections:
    def __init__(self, connector: McpConnector) -> None:
        self._connector = connector
        self._opening: dict[McpServer, asyncio.Task[McpConnection]] = {}
        self._closing: set[asyncio.Task[None]] = set()  # referenced until done

    async def _connection(self, server: McpServer) -> McpConnection:
        task = self._opening.get(server)
        if task is None or (task.done() and (task.cancelled() or task.exception() is not None)):
            task = self._opening[server] = asyncio.ensure_future(self._connector.connect(server))
        # Shielded: one caller giving up (its response cancelled) must not close it for others.
        return await asyncio.shield(task)

    def _drop(self, server: McpServer) -> None:
        task = self._opening.pop(server, None)
        if task is not None and task.done() and not task.cancelled() and not task.exception():
            closing = asyncio.ensure_future(task.result().aclose())
            self._closing.add(closing)
            closing.add_done_callback(self._closing.discard)

    async def list_tools(self, server: McpServer) -> list[McpToolInfo]:
        """Raises McpError."""
        try:
            return await (await self._connection(server)).list_tools()
        except McpError:
            self._drop(server)
            raise

    async def call(self, server: McpServer, tool: str, arguments: str) -> str:
        """The tool's output. Raises McpError."""
        try:
            parsed: Any = json.loads(arguments) if arguments.strip() else {}
        except ValueError:
            parsed = None
        if not isinstance(parsed, dict):
            raise McpError(
                "protocol_error",
                "The model gave arguments that are not a JSON object.",
                code=INVALID_PARAMS,
            )
        connection = await self._connection(server)
        try:
            return await connection.call_tool(tool, parsed)
        except McpError as exc:
            if exc.kind != "tool_execution_error":
                self._drop(server)
            raise

    async def aclose(self) -> None:
        tasks = list(self._opening.values())
        self._opening.clear()
        for task in tasks:
            if not task.done():
                task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await (await task).aclose()
