"""The MCP client interface: list a server's tools, call one. One connection per (session,
server), opened on first use and reused; the runtime closes it with the session."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

# How a call failed, as the `mcp_call` item's `error.type` says it.
McpErrorKind = Literal["protocol_error", "tool_execution_error", "http_error"]


@dataclass(frozen=True, slots=True)
class McpServer:
    """Where a session's MCP tool lives: what `server_url`, `headers` and `authorization` say."""

    label: str
    url: str
    headers: tuple[tuple[str, str], ...] = ()
    authorization: str | None = None

    def http_headers(self) -> dict[str, str]:
        headers = dict(self.headers)
        if self.authorization:
            headers["Authorization"] = f"Bearer {self.authorization}"
        return headers


@dataclass(frozen=True, slots=True)
class McpToolInfo:
    """One listed tool, in the shape of the `mcp_list_tools` item's `tools`."""

    name: str
    input_schema: dict[str, Any]
    description: str | None = None
    annotations: dict[str, Any] | None = None

    @property
    def read_only(self) -> bool:
        return bool((self.annotations or {}).get("readOnlyHint"))


class McpError(Exception):
    """A listing or call failed. `message` reaches the client: it never quotes internal
    addresses beyond the URL the client itself gave; `detail` is for the log."""

    def __init__(
        self, kind: McpErrorKind, message: str, *, code: int = 0, detail: str = ""
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.code = code
        self.detail = detail

    def to_wire(self) -> dict[str, Any]:
        if self.kind == "tool_execution_error":
            return {"type": self.kind, "message": self.message}
        return {"type": self.kind, "code": self.code, "message": self.message}


class McpConnection(Protocol):
    async def list_tools(self) -> list[McpToolInfo]:
        """Raises McpError."""
        ...

    async def call_tool(self, name: str, arguments: dict[str, Any]) -> str:
        """The tool's output as text. Raises McpError (`tool_execution_error` when the tool
        itself reported an error)."""
        ...

    async def aclose(self) -> None: ...


class McpConnector(Protocol):
    """Shared by every session: the operator's policy (allowed hosts, timeouts)."""

    call_timeout: float

    async def connect(self, server: McpServer) -> McpConnection:
        """Raises McpError: a refused host, an unreachable or broken server."""
        ...
