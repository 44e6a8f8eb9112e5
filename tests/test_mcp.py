"""MCP tools through the official `openai` SDK over a real socket: a real MCP server (the
`mcp` SDK's MCPServer over streamable HTTP, and SSE) on a loopback port, the scripted LLM
calling its tools, every server event validated against the SDK's types (conftest)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from conftest import API_KEY, recv_until
from core_harness import Core, only, types
from mcp.server.mcpserver import MCPServer
from mcp.types import ToolAnnotations
from prometheus_client.parser import text_string_to_metric_families
from scripted_llm import ScriptedLLM, Text, ToolCalls
from servers import ServerThread, free_port

from openrealtime.backends.llm.base import Finished, TextDelta, ToolCall, ToolCallDelta, ToolResult
from openrealtime.backends.mcp.base import McpError, McpServer, McpToolInfo
from openrealtime.backends.mcp.client import SdkConnector, checked_http_client
from openrealtime.backends.mcp.hosts import HostPolicy
from openrealtime.backends.registry import Backends
from openrealtime.config import Settings
from openrealtime.core.effects import CancelResponse, ListMcpTools, RunMcpCall
from openrealtime.core.mcp import function_name
from openrealtime.server.app import create_app


def _tools_server() -> MCPServer:
    server = MCPServer("test-tools")

    @server.tool(annotations=ToolAnnotations(read_only_hint=True))
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    @server.tool()
    def explode(reason: str) -> str:
        """Always fails."""
        raise ValueError(f"exploded: {reason}")

    return server


class HeaderRecorder:
    """ASGI middleware that keeps the headers of every HTTP request the MCP server gets."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.headers: list[dict[str, str]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            self.headers.append({k.decode(): v.decode() for k, v in scope["headers"]})
        await self.app(scope, receive, send)


@pytest.fixture(scope="module")
def mcp_http() -> Iterator[tuple[str, HeaderRecorder]]:
    recorder = HeaderRecorder(_tools_server().streamable_http_app())
    with ServerThread(recorder) as thread:
        yield thread.url + "/mcp", recorder


@pytest.fixture(scope="module")
def mcp_client(settings: Settings, backends: Backends) -> Iterator[openai.OpenAI]:
    """An openrealtime server whose operator allows MCP servers on loopback."""
    allowed = dataclasses.replace(
        backends, mcp=SdkConnector(["127.0.0.1"], call_timeout=5.0, connect_timeout=5.0)
    )
    with ServerThread(create_app(settings, allowed)) as thread:
        yield openai.OpenAI(base_url=thread.url + "/v1", api_key=API_KEY)


def _mcp_tool(url: str, **fields: Any) -> dict[str, Any]:
    return {"type": "mcp", "server_label": "calc", "server_url": url, **fields}


def _configure(conn: Any, *tools: dict[str, Any]) -> list[Any]:
    """Send the tools; receive up to the end of the (first) listing."""
    conn.session.update(
        session={"type": "realtime", "output_modalities": ["text"], "tools": list(tools)}
    )
    events = recv_until(conn, "session.updated")
    events += recv_until(conn, "conversation.item.done")
    return events


def _ask(conn: Any, text: str) -> None:
    conn.conversation.item.create(
        item={"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}
    )
    conn.response.create()


def _tool_messages(request: dict[str, Any]) -> list[dict[str, Any]]:
    return [m for m in request["messages"] if m["role"] == "tool" or m.get("tool_calls")]


def test_function_names_map_mcp_tools_without_unsafe_characters() -> None:
    assert function_name("calc", "add") == "calc__add"
    assert function_name("my server", "files.read") == "my_server__files_read"
    assert len(function_name("s" * 50, "t" * 50)) == 64


def test_lists_tools_then_runs_a_call_and_continues_the_same_response(
    mcp_client, mcp_http, llm: ScriptedLLM
) -> None:
    url, recorder = mcp_http
    recorder.headers.clear()
    llm.script(
        ToolCalls([("call_1", "calc__add", '{"a": 2, "b": 3}')]),
        Text(["The sum ", "is 5."]),
    )
    with mcp_client.realtime.connect(model="gpt-realtime") as conn:
        recv_until(conn, "session.created")
        tool = _mcp_tool(
            url, require_approval="never", headers={"X-Tenant": "t1"}, authorization="tok-1"
        )
        events = _configure(conn, tool)
        types = [e.type for e in events]
        assert types[-4:] == [
            "conversation.item.added",
            "mcp_list_tools.in_progress",
            "mcp_list_tools.completed",
            "conversation.item.done",
        ]
        listing = events[-1].item
        assert listing.type == "mcp_list_tools" and listing.server_label == "calc"
        assert [t.name for t in listing.tools] == ["add", "explode"]
        assert events[-2].item_id == listing.id

        _ask(conn, "What is 2 + 3?")
        events = recv_until(conn, "response.done")

    types = [e.type for e in events]
    call_events = [t for t in types if "mcp_call" in t]
    assert sorted(set(call_events), key=call_events.index) == [
        "response.mcp_call_arguments.delta",
        "response.mcp_call_arguments.done",
        "response.mcp_call.in_progress",
        "response.mcp_call.completed",
    ]
    done = events[-1].response
    assert done.status == "completed"
    call, message = done.output
    assert (call.type, call.server_label, call.name) == ("mcp_call", "calc", "add")
    assert call.arguments == '{"a": 2, "b": 3}' and call.output == "5" and call.error is None
    deltas = "".join(e.delta for e in events if e.type == "response.mcp_call_arguments.delta")
    assert deltas == call.arguments
    assert message.content[0].text == "The sum is 5."
    assert len([e for e in events if e.type == "response.created"]) == 1

    first, second = llm.requests[-2], llm.requests[-1]
    offered = {t["function"]["name"]: t["function"] for t in first["tools"]}
    assert set(offered) == {"calc__add", "calc__explode"}
    assert offered["calc__add"]["parameters"]["required"] == ["a", "b"]
    assert _tool_messages(second) == [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": "calc__add", "arguments": '{"a": 2, "b": 3}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": call.id, "content": "5"},
    ]
    sent = [h for h in recorder.headers if h.get("x-tenant")]
    assert sent and all(h["authorization"] == "Bearer tok-1" for h in sent)


def test_a_failing_tool_fails_its_call_and_the_llm_reads_the_error(
    mcp_client, mcp_http, llm: ScriptedLLM
) -> None:
    url, _ = mcp_http
    llm.script(
        ToolCalls([("call_1", "calc__explode", '{"reason": "test"}')]),
        Text(["That failed."]),
    )
    with mcp_client.realtime.connect(model="gpt-realtime") as conn:
        recv_until(conn, "session.created")
        _configure(conn, _mcp_tool(url, require_approval="never"))
        _ask(conn, "Blow it up.")
        events = recv_until(conn, "response.done")
    assert "response.mcp_call.failed" in [e.type for e in events]
    done = events[-1].response
    assert done.status == "completed"
    call = done.output[0]
    assert call.output is None and call.error.type == "tool_execution_error"
    assert "explode" in call.error.message
    result = _tool_messages(llm.last_request)[-1]
    assert result["role"] == "tool" and result["content"].startswith("Error: ")
    assert done.output[1].content[0].text == "That failed."


@pytest.mark.parametrize("approve", [True, False])
def test_a_call_that_needs_approval_waits_for_the_clients_answer(
    mcp_client, mcp_http, llm: ScriptedLLM, approve: bool
) -> None:
    url, _ = mcp_http
    llm.script(
        ToolCalls([("call_1", "calc__add", '{"a": 1, "b": 1}')]),
        Text(["Done."]),
    )
    with mcp_client.realtime.connect(model="gpt-realtime") as conn:
        recv_until(conn, "session.created")
        _configure(conn, _mcp_tool(url))  # require_approval defaults to always
        _ask(conn, "Add one and one.")
        events = recv_until(conn, "response.output_item.done")
        request = events[-1].item
        assert request.type == "mcp_approval_request"
        assert (request.server_label, request.name, request.arguments) == (
            "calc",
            "add",
            '{"a": 1, "b": 1}',
        )
        assert "response.done" not in [e.type for e in events]
        recv_until(conn, "conversation.item.done")
        assert len(llm.requests) == 1  # nothing runs until the client answers

        conn.conversation.item.create(
            item={
                "type": "mcp_approval_response",
                "approval_request_id": request.id,
                "approve": approve,
                **({} if approve else {"reason": "not today"}),
            }
        )
        events = recv_until(conn, "response.done")

    done = events[-1].response
    assert done.status == "completed"
    assert done.output[0].id == request.id
    calls = [item for item in done.output if item.type == "mcp_call"]
    results = [m for m in _tool_messages(llm.last_request) if m["role"] == "tool"]
    if approve:
        assert len(calls) == 1 and calls[0].approval_request_id == request.id
        assert calls[0].output == "2"
        assert results == [{"role": "tool", "tool_call_id": calls[0].id, "content": "2"}]
    else:
        assert calls == [] and "response.mcp_call.in_progress" not in [e.type for e in events]
        assert len(results) == 1 and results[0]["tool_call_id"] == request.id
        assert "declined" in results[0]["content"] and "not today" in results[0]["content"]
    assert done.output[-1].content[0].text == "Done."


@pytest.mark.parametrize(
    ("allowed_tools", "expected"),
    [
        (["explode"], ["explode"]),
        ({"tool_names": ["add"]}, ["add"]),
        ({"read_only": True}, ["add"]),
    ],
)
def test_allowed_tools_filters_the_listing_and_what_the_llm_sees(
    mcp_client, mcp_http, llm: ScriptedLLM, allowed_tools: Any, expected: list[str]
) -> None:
    url, _ = mcp_http
    llm.script(Text(["Hi."]))
    with mcp_client.realtime.connect(model="gpt-realtime") as conn:
        recv_until(conn, "session.created")
        events = _configure(conn, _mcp_tool(url, allowed_tools=allowed_tools))
        assert [t.name for t in events[-1].item.tools] == expected
        _ask(conn, "Hello")
        recv_until(conn, "response.done")
    offered = [t["function"]["name"] for t in llm.last_request["tools"]]
    assert offered == [f"calc__{name}" for name in expected]


def test_an_unreachable_server_fails_the_listing_and_the_session_goes_on(
    mcp_client, llm: ScriptedLLM
) -> None:
    dead = f"http://127.0.0.1:{free_port()}/mcp"
    llm.script(Text(["Still here."]))
    with mcp_client.realtime.connect(model="gpt-realtime") as conn:
        recv_until(conn, "session.created")
        events = _configure(conn, _mcp_tool(dead))
        types = [e.type for e in events]
        assert "mcp_list_tools.failed" in types and "mcp_list_tools.completed" not in types
        error = next(e for e in events if e.type == "error").error
        assert error.code == "mcp_list_tools_failed" and "Could not reach" in error.message
        _ask(conn, "Hello?")
        events = recv_until(conn, "response.done")
    assert events[-1].response.output[0].content[0].text == "Still here."
    assert "tools" not in llm.last_request  # a failed server offers nothing


def test_a_server_that_dies_fails_the_call_cleanly(mcp_client, llm: ScriptedLLM) -> None:
    llm.script(
        ToolCalls([("call_1", "calc__add", '{"a": 1, "b": 2}')]),
        Text(["The tool is down."]),
    )
    with mcp_client.realtime.connect(model="gpt-realtime") as conn:
        recv_until(conn, "session.created")
        # Its open event stream would hold a graceful shutdown: stop it at once.
        app = _tools_server().streamable_http_app()
        with ServerThread(app, timeout_graceful_shutdown=0.1) as thread:
            _configure(conn, _mcp_tool(thread.url + "/mcp", require_approval="never"))
        _ask(conn, "Add.")
        events = recv_until(conn, "response.done")
    assert "response.mcp_call.failed" in [e.type for e in events]
    done = events[-1].response
    assert done.status == "completed"
    assert done.output[0].error.type in ("http_error", "protocol_error")
    assert done.output[1].content[0].text == "The tool is down."


def test_the_default_policy_refuses_loopback_servers(client, mcp_http) -> None:
    url, _ = mcp_http
    with client.realtime.connect(model="gpt-realtime") as conn:
        recv_until(conn, "session.created")
        events = _configure(conn, _mcp_tool(url))
    assert "mcp_list_tools.failed" in [e.type for e in events]
    error = next(e for e in events if e.type == "error").error
    assert "not allowed" in error.message and "--mcp-allow-hosts" in error.message


@pytest.mark.parametrize(
    ("fields", "param", "code"),
    [
        ({"connector_id": "connector_gmail"}, "session.tools[0].connector_id", "not_supported"),
        ({"server_url": "file:///etc/passwd"}, "session.tools[0].server_url", "invalid_value"),
    ],
)
def test_refused_mcp_tools_get_a_clear_error(
    mcp_client, fields: dict[str, Any], param: str, code: str
) -> None:
    tool = {"type": "mcp", "server_label": "x", **fields}
    with mcp_client.realtime.connect(model="gpt-realtime") as conn:
        recv_until(conn, "session.created")
        conn.session.update(session={"type": "realtime", "tools": [tool]})
        error = recv_until(conn, "error")[-1].error
        assert (error.code, error.param) == (code, param)
        if "connector_id" in fields:
            assert "server_url" in error.message
        conn.session.update(session={"type": "realtime", "instructions": "Still alive."})
        assert recv_until(conn, "session.updated")[-1].session.tools == []


def test_lists_an_older_server_over_sse(mcp_client) -> None:
    with (
        ServerThread(_tools_server().sse_app()) as thread,
        mcp_client.realtime.connect(model="gpt-realtime") as conn,
    ):
        recv_until(conn, "session.created")
        events = _configure(conn, _mcp_tool(thread.url + "/sse"))
    assert "mcp_list_tools.completed" in [e.type for e in events]
    assert [t.name for t in events[-1].item.tools] == ["add", "explode"]


def test_arguments_that_are_not_json_fail_the_call(mcp_client, mcp_http, llm) -> None:
    url, _ = mcp_http
    llm.script(ToolCalls([("call_1", "calc__add", "{not json")]), Text(["Oops."]))
    with mcp_client.realtime.connect(model="gpt-realtime") as conn:
        recv_until(conn, "session.created")
        _configure(conn, _mcp_tool(url, require_approval="never"))
        _ask(conn, "Add.")
        done = recv_until(conn, "response.done")[-1].response
    error = done.output[0].error
    assert (error.type, error.code) == ("protocol_error", -32602)
    assert json.loads(json.dumps(done.output[0].arguments)) == "{not json"


# --- the core, driven directly (sans-I/O): the paths the socket tests do not reach ------------

SPEC = {"type": "mcp", "server_label": "calc", "server_url": "https://mcp.example.com/mcp"}
ADD = McpToolInfo("add", {"type": "object", "properties": {"a": {"type": "integer"}}})


def _listed_core(**session: Any) -> Core:
    core = Core()
    out = core.send(
        {"type": "session.update", "session": {"type": "realtime", "tools": [SPEC], **session}}
    )
    listing = only(out, "ListMcpTools")
    assert isinstance(listing, ListMcpTools) and listing.server.url == SPEC["server_url"]
    core.session.on_mcp_tools_listed(listing.item_id, [ADD])
    assert types(core.drain()) == ["mcp_list_tools.completed", "conversation.item.done"]
    return core


def test_a_spoken_response_calls_the_llm_again_only_once_its_audio_has_played_out() -> None:
    core = _listed_core(tools=[{**SPEC, "require_approval": "never"}])
    response_id = only(core.send({"type": "response.create"}), "GenerateResponse").response_id
    core.session.on_llm_event(response_id, TextDelta("Let me check."))
    core.session.on_llm_event(response_id, ToolCallDelta(0, "call_1", "calc__add", '{"a": 1}'))
    core.session.on_llm_event(response_id, Finished("tool_calls"))
    run = only(core.drain(), "RunMcpCall")
    assert isinstance(run, RunMcpCall) and (run.tool, run.arguments) == ("add", '{"a": 1}')
    assert core.session.responses[response_id].phase == "calling_tools"

    core.session.on_response_audio(response_id, b"\0" * 4800, 100.0)  # the text still speaks
    core.session.on_mcp_call_done(response_id, run.item_id, "1", None)
    out = core.drain()
    assert "GenerateResponse" not in types(out) and "response.mcp_call.completed" in types(out)

    core.session.on_response_audio_done(response_id)
    again = only(core.drain(), "GenerateResponse")
    assert again.response_id == response_id
    assert ToolResult(run.item_id, "1") in again.request.context
    core.session.on_llm_event(response_id, TextDelta("It is one."))
    core.session.on_llm_event(response_id, Finished())
    core.session.on_response_audio_done(response_id)
    done = only(core.drain(), "response.done")["response"]
    assert done["status"] == "completed"
    assert [item["type"] for item in done["output"]] == ["message", "mcp_call", "message"]
    assert done["output"][2]["content"][0]["transcript"] == "It is one."


def test_cancelling_a_response_stops_its_calls_and_drops_late_results() -> None:
    core = _listed_core(tools=[{**SPEC, "require_approval": "never"}], output_modalities=["text"])
    response_id = only(core.send({"type": "response.create"}), "GenerateResponse").response_id
    core.session.on_llm_event(response_id, ToolCallDelta(0, "call_1", "calc__add", "{}"))
    core.session.on_llm_event(response_id, Finished("tool_calls"))
    run = only(core.drain(), "RunMcpCall")
    out = core.send({"type": "response.cancel"})
    assert out[0] == CancelResponse(response_id)
    assert only(out, "response.done")["response"]["status"] == "cancelled"
    core.session.on_mcp_call_done(response_id, run.item_id, "late", None)
    assert core.drain() == []


def test_an_out_of_band_response_calls_the_llm_again_with_its_own_items() -> None:
    core = _listed_core(tools=[{**SPEC, "require_approval": "never"}], output_modalities=["text"])
    out = core.send({"type": "response.create", "response": {"conversation": "none"}})
    response_id = only(out, "GenerateResponse").response_id
    core.session.on_llm_event(response_id, ToolCallDelta(0, "call_1", "calc__add", "{}"))
    core.session.on_llm_event(response_id, Finished("tool_calls"))
    run = only(core.drain(), "RunMcpCall")
    core.session.on_mcp_call_done(
        response_id, run.item_id, None, {"type": "http_error", "code": 502, "message": "down"}
    )
    again = only(core.drain(), "GenerateResponse")
    assert again.request.context[-2:] == (
        ToolCall(run.item_id, "calc__add", "{}"),
        ToolResult(run.item_id, "Error: down"),
    )
    assert all(item.type != "mcp_call" for item in core.session.conversation.items())


def test_a_listing_answered_after_a_reconfiguration_is_dropped() -> None:
    core = Core()
    first = only(
        core.send({"type": "session.update", "session": {"type": "realtime", "tools": [SPEC]}}),
        "ListMcpTools",
    )
    moved = {**SPEC, "server_url": "https://other.example.com/mcp"}
    second = only(
        core.send({"type": "session.update", "session": {"type": "realtime", "tools": [moved]}}),
        "ListMcpTools",
    )
    core.session.on_mcp_tools_listed(first.item_id, [ADD])
    assert core.drain() == []
    core.session.on_mcp_list_failed(second.item_id, "unreachable")
    assert types(core.drain()) == ["mcp_list_tools.failed", "error", "conversation.item.done"]


# --- the client backend: timeouts and the host policy ---------------------------------------


async def test_a_call_slower_than_the_timeout_fails_as_a_protocol_error() -> None:
    server = MCPServer("slow")

    @server.tool()
    async def wait(seconds: float) -> str:
        """Sleep, then answer."""
        await asyncio.sleep(seconds)
        return "woke"

    app = server.streamable_http_app()
    with ServerThread(app, timeout_graceful_shutdown=0.1) as thread:
        connector = SdkConnector(["127.0.0.1"], call_timeout=0.5)
        connection = await connector.connect(McpServer("slow", thread.url + "/mcp"))
        try:
            assert await connection.call_tool("wait", {"seconds": 0}) == "woke"
            with pytest.raises(McpError) as failed:
                await connection.call_tool("wait", {"seconds": 5})
        finally:
            await connection.aclose()
    assert (failed.value.kind, failed.value.code) == ("protocol_error", -32001)


@pytest.mark.parametrize(
    ("allowed", "url", "ok"),
    [
        ([], "https://8.8.8.8/mcp", True),
        ([], "http://127.0.0.1:9000/mcp", False),
        ([], "http://[::1]/mcp", False),
        ([], "http://[::ffff:127.0.0.1]/mcp", False),  # loopback spelled as IPv6
        ([], "http://169.254.169.254/latest", False),  # a cloud metadata service
        ([], "http://10.1.2.3/mcp", False),
        ([], "http://localhost:9000/mcp", False),  # a name that resolves to loopback
        (["10.0.0.0/8"], "http://10.1.2.3/mcp", True),
        (["localhost"], "http://localhost:9000/mcp", True),
        (["*"], "http://127.0.0.1/mcp", True),
        (["*"], "ftp://example.com/mcp", False),
    ],
)
async def test_the_host_policy(allowed: list[str], url: str, ok: bool) -> None:
    policy = HostPolicy(allowed)
    if ok:
        await policy.check(url)
    else:
        with pytest.raises(McpError):
            await policy.check(url)


async def test_every_connection_is_checked_not_only_the_url(mcp_http) -> None:
    """What a DNS answer that changes after the URL's check would reach is checked again at
    connect time, on the address actually connected to."""
    url, _ = mcp_http
    async with checked_http_client(HostPolicy([])) as http:
        with pytest.raises(McpError, match="not allowed"):
            await http.post(url, json={})
    async with checked_http_client(HostPolicy(["127.0.0.1"])) as http:
        assert (await http.get(url)).status_code < 500  # allowed: the request reaches it


def test_with_a_client_function_called_too_the_response_ends_after_the_mcp_call() -> None:
    weather = {"type": "function", "name": "get_weather", "parameters": {"type": "object"}}
    core = _listed_core(
        tools=[{**SPEC, "require_approval": "never"}, weather], output_modalities=["text"]
    )
    response_id = only(core.send({"type": "response.create"}), "GenerateResponse").response_id
    core.session.on_llm_event(response_id, ToolCallDelta(0, "call_1", "calc__add", "{}"))
    core.session.on_llm_event(response_id, ToolCallDelta(1, "call_2", "get_weather", "{}"))
    core.session.on_llm_event(response_id, Finished("tool_calls"))
    run = only(core.drain(), "RunMcpCall")
    core.session.on_mcp_call_done(response_id, run.item_id, "0", None)
    out = core.drain()
    assert "GenerateResponse" not in types(out)  # the function's output is the client's
    done = only(out, "response.done")["response"]
    assert done["status"] == "completed"
    assert [item["type"] for item in done["output"]] == ["mcp_call", "function_call"]


def test_a_client_secrets_mcp_tools_are_listed_when_the_session_opens(mcp_client, mcp_http) -> None:
    url, _ = mcp_http
    minted = mcp_client.realtime.client_secrets.create(
        session={"type": "realtime", "tools": [_mcp_tool(url)]}
    )
    browser = openai.OpenAI(
        base_url=str(mcp_client.base_url).rstrip("/"),
        websocket_base_url=str(mcp_client.base_url).rstrip("/").replace("http://", "ws://"),
        api_key=minted.value,
    )
    with browser.realtime.connect(model="gpt-realtime") as conn:
        events = recv_until(conn, "conversation.item.done")
    assert [e.type for e in events] == [
        "session.created",
        "conversation.item.added",
        "mcp_list_tools.in_progress",
        "mcp_list_tools.completed",
        "conversation.item.done",
    ]
    assert [t.name for t in events[-1].item.tools] == ["add", "explode"]


def test_response_tools_choose_the_mcp_servers_and_their_approval_rule() -> None:
    core = _listed_core(output_modalities=["text"])  # the session's rule: always approve
    out = core.send(
        {
            "type": "response.create",
            "response": {"conversation": "none", "tools": [{**SPEC, "require_approval": "never"}]},
        }
    )
    generate = only(out, "GenerateResponse")
    assert [f.name for f in generate.request.tools] == ["calc__add"]
    core.session.on_llm_event(generate.response_id, ToolCallDelta(0, "c", "calc__add", "{}"))
    core.session.on_llm_event(generate.response_id, Finished("tool_calls"))
    assert isinstance(only(core.drain(), "RunMcpCall"), RunMcpCall)  # no approval asked

    out = core.send({"type": "response.create", "response": {"conversation": "none", "tools": []}})
    assert only(out, "GenerateResponse").request.tools == ()


async def test_a_server_that_refuses_streamable_http_is_reached_over_sse() -> None:
    app = _tools_server().sse_app(sse_path="/events")
    with ServerThread(app, timeout_graceful_shutdown=0.1) as thread:
        connector = SdkConnector(["127.0.0.1"])
        connection = await connector.connect(McpServer("old", thread.url + "/events"))
        try:
            assert [tool.name for tool in await connection.list_tools()] == ["add", "explode"]
            assert await connection.call_tool("add", {"a": 2, "b": 2}) == "4"
        finally:
            await connection.aclose()


# --- tool_choice of type "mcp" ---------------------------------------------------------------

OTHER = {"type": "mcp", "server_label": "notes", "server_url": "https://notes.example.com/mcp"}
WEATHER = {"type": "function", "name": "get_weather", "parameters": {"type": "object"}}


def _two_servers_core(tool_choice: Any) -> Core:
    never = {"require_approval": "never"}
    core = Core()
    out = core.send(
        {
            "type": "session.update",
            "session": {
                "type": "realtime",
                "output_modalities": ["text"],
                "tools": [{**SPEC, **never}, {**OTHER, **never}, WEATHER],
                "tool_choice": tool_choice,
            },
        }
    )
    listings = [effect for effect in out if isinstance(effect, ListMcpTools)]
    for listing in listings:
        tools = [ADD, McpToolInfo("sub", {"type": "object"})]
        if listing.server.label == "notes":
            tools = [
                McpToolInfo("add", {"type": "object"}),
                McpToolInfo("read", {"type": "object"}),
            ]
        core.session.on_mcp_tools_listed(listing.item_id, tools)
    core.drain()
    return core


def test_an_mcp_tool_choice_with_a_name_forces_that_tool_of_that_server() -> None:
    core = _two_servers_core({"type": "mcp", "server_label": "notes", "name": "add"})
    request = only(core.send({"type": "response.create"}), "GenerateResponse").request
    assert [f.name for f in request.tools] == ["notes__add"]
    assert request.forced_function == "notes__add"


def test_an_mcp_tool_choice_with_only_a_label_requires_one_of_that_servers_tools() -> None:
    core = _two_servers_core({"type": "mcp", "server_label": "calc"})
    request = only(core.send({"type": "response.create"}), "GenerateResponse").request
    assert [f.name for f in request.tools] == ["calc__add", "calc__sub"]
    assert (request.tool_choice, request.forced_function) == ("required", None)


def test_an_mcp_tool_choice_naming_a_tool_not_listed_leaves_the_llm_no_tools() -> None:
    core = _two_servers_core({"type": "mcp", "server_label": "calc", "name": "missing"})
    request = only(core.send({"type": "response.create"}), "GenerateResponse").request
    assert (request.tools, request.tool_choice) == ((), "none")


def test_after_the_forced_mcp_call_the_answer_goes_on_with_auto() -> None:
    core = _two_servers_core("auto")
    out = core.send(
        {
            "type": "response.create",
            "response": {"tool_choice": {"type": "mcp", "server_label": "calc", "name": "sub"}},
        }
    )
    generate = only(out, "GenerateResponse")
    assert generate.request.forced_function == "calc__sub"
    response_id = generate.response_id
    core.session.on_llm_event(response_id, ToolCallDelta(0, "c1", "calc__sub", "{}"))
    core.session.on_llm_event(response_id, Finished("tool_calls"))
    run = only(core.drain(), "RunMcpCall")
    core.session.on_mcp_call_done(response_id, run.item_id, "0", None)
    again = only(core.drain(), "GenerateResponse").request
    assert (again.tool_choice, again.forced_function) == ("auto", None)
    assert {f.name for f in again.tools} == {
        "calc__add",
        "calc__sub",
        "notes__add",
        "notes__read",
        "get_weather",
    }


def test_an_mcp_tool_choice_reaches_the_llm_as_a_named_function(
    mcp_client, mcp_http, llm: ScriptedLLM
) -> None:
    url, _ = mcp_http
    llm.script(ToolCalls([("call_1", "calc__add", '{"a": 1, "b": 1}')]), Text(["Two."]))
    with mcp_client.realtime.connect(model="gpt-realtime") as conn:
        recv_until(conn, "session.created")
        _configure(conn, _mcp_tool(url, require_approval="never"))
        conn.response.create(
            response={"tool_choice": {"type": "mcp", "server_label": "calc", "name": "add"}}
        )
        done = recv_until(conn, "response.done")[-1]
    assert done.response.status == "completed"
    first, second = llm.requests[-2:]
    assert first["tool_choice"] == {"type": "function", "function": {"name": "calc__add"}}
    assert [tool["function"]["name"] for tool in first["tools"]] == ["calc__add"]
    assert second["tool_choice"] == "auto"


# --- metrics ---------------------------------------------------------------------------------


def _mcp_counts(client: openai.OpenAI) -> dict[tuple[str, str], float]:
    """`/metrics` of the server behind `client`: MCP listings and calls by outcome."""
    root = str(client.base_url).rstrip("/").removesuffix("/v1")
    text = httpx.get(root + "/metrics").text
    return {
        (sample.name, sample.labels["outcome"]): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name in ("openrealtime_mcp_list_tools_total", "openrealtime_mcp_calls_total")
    }


def test_metrics_count_listings_and_calls_by_outcome(
    mcp_client, mcp_http, llm: ScriptedLLM
) -> None:
    url, _ = mcp_http
    before = _mcp_counts(mcp_client)
    llm.script(
        ToolCalls(
            [
                ("call_1", "calc__add", '{"a": 1, "b": 2}'),
                ("call_2", "calc__explode", '{"reason": "metrics"}'),
                ("call_3", "calc__add", "not json"),
            ]
        ),
        Text(["Done."]),
    )
    with mcp_client.realtime.connect(model="gpt-realtime") as conn:
        recv_until(conn, "session.created")
        _configure(conn, _mcp_tool(url, require_approval="never"))
        _ask(conn, "Add, explode, and garble.")
        assert recv_until(conn, "response.done")[-1].response.status == "completed"
    with mcp_client.realtime.connect(model="gpt-realtime") as conn:
        recv_until(conn, "session.created")
        _configure(conn, _mcp_tool(f"http://127.0.0.1:{free_port()}/mcp"))
    after = _mcp_counts(mcp_client)
    grew = {key: after[key] - before.get(key, 0.0) for key in after}
    assert {key: n for key, n in grew.items() if n} == {
        ("openrealtime_mcp_list_tools_total", "completed"): 1,
        ("openrealtime_mcp_list_tools_total", "http_error"): 1,
        ("openrealtime_mcp_calls_total", "completed"): 1,
        ("openrealtime_mcp_calls_total", "tool_execution_error"): 1,
        ("openrealtime_mcp_calls_total", "protocol_error"): 1,
    }
