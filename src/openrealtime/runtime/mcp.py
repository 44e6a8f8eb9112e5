"""A session's MCP connections: one per server, opened on first use (the listing), reused by
its calls, dropped when a call finds it broken (the next call reconnects), closed with the
session. Runs the core's `ListMcpTools` and `RunMcpCall`; failures become results. Counts
each listing and call by outcome (`metrics.MCP_OUTCOMES`)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import Counter

from ..backends.mcp.base import McpConnection, McpConnector, McpError, McpServer, McpToolInfo
from .metrics import Metrics

log = logging.getLogger(__name__)

INVALID_PARAMS = -32602  # JSON-RPC's code for bad arguments


@contextlib.contextmanager
def _counted(by_outcome: Callable[[str], Counter]) -> Iterator[None]:
    try:
        yield
    except McpError as exc:
        by_outcome(exc.kind).inc()
        raise
    except asyncio.CancelledError:
        by_outcome("cancelled").inc()
        raise
    except Exception:
        by_outcome("server_error").inc()
        raise
    by_outcome("completed").inc()


class McpConnections:
    def __init__(self, connector: McpConnector, metrics: Metrics) -> None:
        self._connector = connector
        self._metrics = metrics
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
        with _counted(self._metrics.mcp_lists_by_outcome):
            try:
                return await (await self._connection(server)).list_tools()
            except McpError:
                self._drop(server)
                raise

    async def call(self, server: McpServer, tool: str, arguments: str) -> str:
        """The tool's output. Raises McpError."""
        with _counted(self._metrics.mcp_calls_by_outcome):
            return await self._call(server, tool, arguments)

    async def _call(self, server: McpServer, tool: str, arguments: str) -> str:
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
