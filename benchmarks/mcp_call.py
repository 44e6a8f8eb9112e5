"""What openrealtime adds to an MCP tool call made inside a response.

Run: python -m benchmarks.mcp_call [--turns 100]
Prints a table and writes benchmarks/results/mcp_call.json. Takes about half a minute.

Three processes and a thread: the fake LLM (`benchmarks/lib/fake_llm.py`: a user message with
TOOL_MARKER gets a call of the first tool offered, a tool result gets text), openrealtime as
`openrealtime serve` runs it (with --mcp-allow-hosts 127.0.0.1), this client, and an
MCP server (the `mcp` SDK's MCPServer over streamable HTTP, in a thread of this client) with one
instant tool. Each turn: a user message with the marker, `response.create`, then, as the client
receives them:

  (a) `response.mcp_call.in_progress` → `response.mcp_call.completed`: the call as openrealtime
      runs it (its connection to the MCP server is warm, opened by the listing)
  (b) the same call made directly by this client with the SDK's ClientSession, warm
  (c) `response.mcp_call.completed` → the first text delta: calling the LLM again with the result
      in the same response (building the request, the LLM's first token)

(a) - (b) is openrealtime's own cost on the call. The turn's items are deleted after it, so every
turn sends the LLM the same messages.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import threading
import time
from typing import Any

import orjson
import uvicorn

from benchmarks.lib.clients import open_session, recv_until, run
from benchmarks.lib.machine import add_common_arguments, apply_common_arguments
from benchmarks.lib.payloads import (
    RESPONSE_CREATE,
    TOOL_MARKER,
    item_delete,
    session_update,
    user_message,
)
from benchmarks.lib.processes import OpenRealtimeProcess, free_port, start_llm
from benchmarks.lib.stats import print_table, summary_ms, write_json

now = time.monotonic


def mcp_server() -> tuple[uvicorn.Server, str]:
    from mcp.server.mcpserver import MCPServer

    server = MCPServer("bench", log_level="WARNING")

    @server.tool()
    def get_weather(city: str, unit: str = "c") -> str:
        """The current weather in a city."""
        return f"sunny in {city}, 21 {unit}"

    port = free_port()
    config = uvicorn.Config(
        server.streamable_http_app(),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        timeout_graceful_shutdown=1,
    )
    return uvicorn.Server(config), f"http://127.0.0.1:{port}/mcp"


async def direct_calls(url: str, turns: int) -> list[float]:
    """(b): the same call from this client, over a warm SDK session."""
    from mcp.client.session import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    times = []
    async with streamable_http_client(url) as (read, write), ClientSession(read, write) as mcp:
        await mcp.initialize()
        await mcp.call_tool("get_weather", {"city": "Paris", "unit": "c"})
        for _ in range(turns):
            start = now()
            await mcp.call_tool("get_weather", {"city": "Paris", "unit": "c"})
            times.append(now() - start)
    return times


async def turn(ws: Any, n: int) -> tuple[float, float]:
    user_id = f"item_bench_{n}"
    await ws.send(user_message(f"{TOOL_MARKER} weather in Paris?", user_id))
    await recv_until(ws, "conversation.item.done")
    await ws.send(RESPONSE_CREATE)
    started = completed = first_text = None
    while True:
        event = orjson.loads(await asyncio.wait_for(ws.recv(), 10))
        t, kind = now(), event["type"]
        if kind == "response.mcp_call.in_progress":
            started = t
        elif kind == "response.mcp_call.completed":
            completed = t
        elif kind == "response.output_text.delta" and first_text is None:
            first_text = t
        elif kind in ("response.mcp_call.failed", "error"):
            raise RuntimeError(f"the call failed: {event}")
        elif kind == "response.done":
            output = event["response"]["output"]
            break
    if started is None or completed is None or first_text is None:
        raise RuntimeError("the response had no MCP call or no text after it")
    for item_id in [user_id, *(item["id"] for item in output)]:
        await ws.send(item_delete(item_id))
    await recv_until(ws, "conversation.item.deleted", 1 + len(output))
    return completed - started, first_text - completed


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    logging.getLogger("httpx2").setLevel(logging.WARNING)  # this client's direct calls
    server, url = mcp_server()
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        with (
            start_llm() as llm,
            OpenRealtimeProcess(
                llm, args.server_log_level, mcp_allow_hosts="127.0.0.1"
            ) as realtime,
        ):
            tool = {
                "type": "mcp",
                "server_label": "weather",
                "server_url": url,
                "require_approval": "never",
            }
            ws = await open_session(realtime.ws_url, session_update("Be brief.", tools=[tool]))
            try:
                await recv_until(ws, "mcp_list_tools.completed")
                for n in range(args.warmup_turns):
                    await turn(ws, -1 - n)
                legs = [await turn(ws, n) for n in range(args.turns)]
            finally:
                await ws.close()
        direct = await direct_calls(url, args.turns)
    finally:
        server.should_exit = True
        thread.join(timeout=5)
    return {
        "call_via_openrealtime_ms": summary_ms([a for a, _ in legs]),
        "call_direct_ms": summary_ms(direct),
        "continue_to_first_text_ms": summary_ms([c for _, c in legs]),
        "load_average": os.getloadavg(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--turns", type=int, default=100, help="measured turns (default 100)")
    parser.add_argument("--warmup-turns", type=int, default=10)
    add_common_arguments(parser)
    args = parser.parse_args()
    apply_common_arguments(args)
    results = run(bench(args))
    results["settings"] = vars(args)
    qs = ("p50", "p95", "p99", "mean")
    print_table(
        ["leg", *qs],
        [
            [
                "(a) MCP call via openrealtime",
                *(results["call_via_openrealtime_ms"][q] for q in qs),
            ],
            ["(b) the same call, direct", *(results["call_direct_ms"][q] for q in qs)],
            [
                "(c) result → first text delta",
                *(results["continue_to_first_text_ms"][q] for q in qs),
            ],
        ],
        title=f"MCP call inside a response, ms (load average {results['load_average'][0]:.2f})",
    )
    print(f"wrote {write_json('mcp_call.json', results)}")


if __name__ == "__main__":
    main()
