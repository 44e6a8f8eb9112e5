"""MCP tools in a session: listing each configured server's tools, and which of them the LLM
sees, under which names, and which need the client's approval. Sans-I/O: the runtime connects
and lists (`ListMcpTools`) and runs calls (`RunMcpCall`); running a call inside a response is
the lifecycle's (`lifecycle.py`, `responses.py`).

Rules:
- Only `server_url` servers, http(s): `connector_id` (OpenAI's hosted connectors) and other
  URLs are refused with an `error`, and the configuration is not applied. Which hosts may be
  reached is the operator's rule, checked by the runtime when it connects.
- A server is listed when a `session.update` (or the session's initial configuration) adds it
  or changes its URL, headers, authorization or `allowed_tools`: an `mcp_list_tools` item is
  added to the conversation, then `mcp_list_tools.in_progress` → `.completed` (the item done,
  with the tools) or `.failed` (with an `error` event that says why).
- `allowed_tools` keeps the listed tools by name (a list, or `tool_names`), and by the tool's
  `readOnlyHint` (`read_only`).
- The LLM sees each listed tool as a function named `{server_label}__{tool}`, each part with
  characters other than letters, digits, `_` and `-` replaced by `_`, cut to 64 characters. A
  name that would collide with a function tool or with another MCP tool is left out, never
  renamed, so a name always maps back to the same tool.
- A response sees the MCP servers its tools name (the session's, or `response.tools`) that the
  session has listed: a server only in `response.tools` is not listed, so not offered.
- `require_approval`: `never`; `always` (the default, as OpenAI's); or a filter: a tool that
  `always` matches needs approval, one that `never` matches does not, any other needs it
  unless only `always` was given.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..backends.llm.base import FunctionSpec
from ..backends.mcp.base import McpServer, McpToolInfo
from ..ids import new_id
from ..protocol import errors
from ..protocol import mcp as mev
from ..protocol import server_events as ev
from ..protocol.errors import ProtocolError
from ..protocol.items import dump_item
from ..protocol.mcp import McpListedTool, McpListToolsItem
from ..protocol.session import FunctionTool, McpTool
from .conversation import Conversation
from .effects import ListMcpTools

SEPARATOR = "__"
MAX_TOOL_ROUNDS = 8  # times one response calls the LLM again with MCP results
MCP_LIST_FAILED = "mcp_list_tools_failed"
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def function_name(server_label: str, tool: str) -> str:
    """The name the LLM calls an MCP tool by (the rule at the top of this module)."""
    return (_UNSAFE.sub("_", server_label) + SEPARATOR + _UNSAFE.sub("_", tool))[:64]


@dataclass(frozen=True, slots=True)
class McpTarget:
    """What a function name the LLM may call maps back to."""

    server: McpServer
    tool: str
    needs_approval: bool


def check_tools(tools: list[Any], param: str) -> None:
    """Refuse MCP tools openrealtime cannot reach; raises ProtocolError."""
    labels: set[str] = set()
    for index, tool in enumerate(tools):
        if not isinstance(tool, McpTool):
            continue
        where = f"{param}[{index}]"
        if tool.connector_id is not None or tool.tunnel_id is not None:
            raise ProtocolError(
                "openrealtime supports only MCP servers given by `server_url`; hosted "
                "connectors (`connector_id`) and tunnels (`tunnel_id`) are not available. "
                "Run an MCP server for it and give its URL.",
                errors.NOT_SUPPORTED,
                f"{where}.connector_id" if tool.connector_id else f"{where}.tunnel_id",
            )
        url = tool.server_url or ""
        if not re.match(r"^https?://[^/?#]+", url, re.IGNORECASE):
            raise ProtocolError(
                "An MCP tool needs a `server_url` with an http:// or https:// URL.",
                errors.INVALID_VALUE,
                f"{where}.server_url",
            )
        if tool.server_label in labels:
            raise ProtocolError(
                f"Two MCP tools have the server_label {tool.server_label!r}; labels must differ.",
                errors.INVALID_VALUE,
                f"{where}.server_label",
            )
        labels.add(tool.server_label)


def server_of(tool: McpTool) -> McpServer:
    return McpServer(
        label=tool.server_label,
        url=tool.server_url or "",
        headers=tuple(sorted((tool.headers or {}).items())),
        authorization=tool.authorization,
    )


def _filter_matches(spec: Any, tool: McpToolInfo) -> bool:
    if not isinstance(spec, dict):
        return False
    names, read_only = spec.get("tool_names"), spec.get("read_only")
    if names is None and read_only is None:
        return False
    return (names is None or tool.name in names) and (
        read_only is None or tool.read_only == read_only
    )


def allowed(config: McpTool, tool: McpToolInfo) -> bool:
    rule = config.allowed_tools
    if rule is None:
        return True
    if isinstance(rule, list):
        return tool.name in rule
    names, read_only = rule.get("tool_names"), rule.get("read_only")
    return (names is None or tool.name in names) and (
        read_only is None or tool.read_only == read_only
    )


def needs_approval(config: McpTool, tool: McpToolInfo) -> bool:
    rule = config.require_approval
    if rule is None or rule == "always":
        return True
    if rule == "never":
        return False
    if not isinstance(rule, dict):
        return True
    if _filter_matches(rule.get("always"), tool):
        return True
    if _filter_matches(rule.get("never"), tool):
        return False
    return not ("always" in rule and "never" not in rule)


@dataclass(slots=True)
class _Listing:
    server: McpServer
    config: McpTool
    item: McpListToolsItem
    previous_id: str | None  # the item before it in the conversation, for its done event
    tools: list[McpToolInfo] | None = None  # None until listed


class McpServers:
    """The session's MCP servers and their listed tools, by server label."""

    def __init__(self, emit: Callable[[Any], None], conversation: Conversation) -> None:
        self._emit = emit
        self._conversation = conversation
        self._listings: dict[str, _Listing] = {}

    def configure(self, tools: list[Any]) -> None:
        """The session's tools changed: list the MCP servers that are new or changed."""
        configs = {tool.server_label: tool for tool in tools if isinstance(tool, McpTool)}
        for label in list(self._listings):
            if label not in configs:
                del self._listings[label]
        for label, config in configs.items():
            server = server_of(config)
            listing = self._listings.get(label)
            if (
                listing is not None
                and listing.server == server
                and listing.config.allowed_tools == config.allowed_tools
            ):
                listing.config = config  # require_approval and the rest apply at once
                continue
            item = McpListToolsItem(id=new_id("mcpl"), server_label=label, tools=[])
            previous_id = self._conversation.insert(item)
            self._listings[label] = _Listing(server, config, item, previous_id)
            self._emit(ev.conversation_item_added(dump_item(item), previous_id))
            self._emit(mev.mcp_list_tools_in_progress(item.id))
            self._emit(ListMcpTools(item.id, server))

    def _current(self, item_id: str) -> _Listing | None:
        return next((x for x in self._listings.values() if x.item.id == item_id), None)

    def listed(self, item_id: str, tools: list[McpToolInfo]) -> None:
        listing = self._current(item_id)
        if listing is None:
            return  # reconfigured since: a newer listing is on its way
        kept = [tool for tool in tools if allowed(listing.config, tool)]
        listing.tools = kept
        listing.item.tools = [
            McpListedTool(
                name=tool.name,
                input_schema=tool.input_schema,
                description=tool.description,
                annotations=tool.annotations,
            )
            for tool in kept
        ]
        self._emit(mev.mcp_list_tools_completed(item_id))
        self._item_done(listing)

    def list_failed(self, item_id: str, message: str) -> None:
        listing = self._current(item_id)
        if listing is None:
            return
        listing.tools = []
        self._emit(mev.mcp_list_tools_failed(item_id))
        self._emit(
            ev.error(
                ProtocolError(
                    f"Listing the tools of MCP server {listing.server.label!r} failed: {message}",
                    MCP_LIST_FAILED,
                    type=errors.SERVER_ERROR,
                ).as_error()
            )
        )
        self._item_done(listing)

    def _item_done(self, listing: _Listing) -> None:
        if listing.item.id in self._conversation:  # the client may have deleted it
            self._emit(ev.conversation_item_done(dump_item(listing.item), listing.previous_id))

    def offered(self, tools: list[Any]) -> tuple[tuple[FunctionSpec, ...], dict[str, McpTarget]]:
        """The functions the LLM sees for the MCP tools in `tools`, and what each maps to."""
        taken = {tool.name for tool in tools if isinstance(tool, FunctionTool)}
        specs: list[FunctionSpec] = []
        targets: dict[str, McpTarget] = {}
        for config in tools:
            if not isinstance(config, McpTool):
                continue
            listing = self._listings.get(config.server_label)
            if listing is None or not listing.tools:
                continue
            for tool in listing.tools:
                name = function_name(config.server_label, tool.name)
                if name in taken:
                    continue
                taken.add(name)
                specs.append(FunctionSpec(name, tool.description, tool.input_schema))
                targets[name] = McpTarget(listing.server, tool.name, needs_approval(config, tool))
        return tuple(specs), targets
