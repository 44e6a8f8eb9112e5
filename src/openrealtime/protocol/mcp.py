"""MCP's wire shapes: the items a session with MCP tools holds (listings, calls, approval
requests; the approval response is a client item, in `items.py`) and their server events."""

from __future__ import annotations

from typing import Any, Literal

from ..ids import new_event_id
from .base import WireModel
from .server_events import ServerEvent


class McpListedTool(WireModel):
    name: str
    input_schema: dict[str, Any]
    description: str | None = None
    annotations: dict[str, Any] | None = None


class McpListToolsItem(WireModel):
    type: Literal["mcp_list_tools"] = "mcp_list_tools"
    id: str
    server_label: str
    tools: list[McpListedTool]


class McpCallItem(WireModel):
    type: Literal["mcp_call"] = "mcp_call"
    id: str
    server_label: str
    name: str
    arguments: str
    approval_request_id: str | None = None
    output: str | None = None
    error: dict[str, Any] | None = None


class McpApprovalRequestItem(WireModel):
    type: Literal["mcp_approval_request"] = "mcp_approval_request"
    id: str
    server_label: str
    name: str
    arguments: str


def _event(type_: str, **fields: Any) -> ServerEvent:
    return {"type": type_, "event_id": new_event_id(), **fields}


def mcp_list_tools_in_progress(item_id: str) -> ServerEvent:
    return _event("mcp_list_tools.in_progress", item_id=item_id)


def mcp_list_tools_completed(item_id: str) -> ServerEvent:
    return _event("mcp_list_tools.completed", item_id=item_id)


def mcp_list_tools_failed(item_id: str) -> ServerEvent:
    return _event("mcp_list_tools.failed", item_id=item_id)


def response_mcp_call_arguments_delta(
    response_id: str, item_id: str, output_index: int, delta: str
) -> ServerEvent:
    return _event(
        "response.mcp_call_arguments.delta",
        response_id=response_id,
        item_id=item_id,
        output_index=output_index,
        delta=delta,
    )


def response_mcp_call_arguments_done(
    response_id: str, item_id: str, output_index: int, arguments: str
) -> ServerEvent:
    return _event(
        "response.mcp_call_arguments.done",
        response_id=response_id,
        item_id=item_id,
        output_index=output_index,
        arguments=arguments,
    )


def response_mcp_call(
    status: Literal["in_progress", "completed", "failed"], item_id: str, output_index: int
) -> ServerEvent:
    """`response.mcp_call.in_progress`, `.completed` or `.failed`."""
    return _event(f"response.mcp_call.{status}", item_id=item_id, output_index=output_index)
