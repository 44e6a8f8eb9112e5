"""Sideband control of a WebRTC call (`/v1/realtime?call_id=`): the official SDK's
`realtime.connect(call_id=...)` attaches from "the application server" while aiortc plays the
browser. It sees the call's events, answers the call's tool calls, and is refused without a
standard key or a live call.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator

import httpx
import openai
import pytest
import websocket
from conftest import API_KEY, close_frame
from servers import ServerThread
from webrtc_client import CallClient, serve, sideband_answers_a_tool_call

from openrealtime.backends.registry import Backends
from openrealtime.config import Settings
from openrealtime.server.secrets import new_secret


@pytest.fixture(scope="module")
def rtc_server(settings: Settings, backends: Backends) -> Iterator[ServerThread]:
    yield from serve(settings, backends)


def _ws_url(server, call_id: str) -> str:
    return server.url.replace("http", "ws", 1) + f"/v1/realtime?call_id={call_id}"


def _handshake_status(server, call_id: str, key: str) -> tuple[int, str]:
    try:
        websocket.create_connection(
            _ws_url(server, call_id), header=[f"Authorization: Bearer {key}"], timeout=10
        ).close()
    except websocket.WebSocketBadStatusException as refused:
        return refused.status_code, (refused.resp_body or b"").decode()
    return 101, ""


async def test_sideband_refusals(rtc_server) -> None:
    status, body = await asyncio.to_thread(_handshake_status, rtc_server, "rtc_unknown", API_KEY)
    assert status == 404
    assert json.loads(body)["error"]["code"] == "call_not_found"

    secret = new_secret({"type": "realtime"}, 60, time.time())
    await rtc_server.app.state.auth.secrets.put(secret)
    client = CallClient(rtc_server.url, secret.value)
    try:
        await client.connect()  # a client secret may open a call...
        assert client.call_id is not None
        status, body = await asyncio.to_thread(
            _handshake_status, rtc_server, client.call_id, secret.value
        )
        assert status == 401  # ...but not control it
        assert "standard API key" in json.loads(body)["error"]["message"]
        status, _ = await asyncio.to_thread(_handshake_status, rtc_server, client.call_id, "sk-x")
        assert status == 401
    finally:
        await client.close()


async def test_sideband_sees_the_calls_events_and_answers_its_tool_call(rtc_server, llm) -> None:
    client = CallClient(rtc_server.url, API_KEY)
    sdk = openai.AsyncOpenAI(base_url=rtc_server.url + "/v1", api_key=API_KEY)
    try:
        await sideband_answers_a_tool_call(client, sdk, llm)

        # The sideband leaving does not end the call.
        client.send(
            {"type": "session.update", "session": {"type": "realtime", "instructions": "x"}}
        )
        assert (await client.until("session.updated"))[-1].session.instructions == "x"
        assert await rtc_server.app.state.calls.get(client.call_id) is not None
    finally:
        await client.close()


async def test_sideband_is_closed_when_the_call_ends(rtc_server) -> None:
    client = CallClient(rtc_server.url, API_KEY)
    try:
        await client.connect()
        assert client.call_id is not None
        ws = await asyncio.to_thread(
            websocket.create_connection,
            _ws_url(rtc_server, client.call_id),
            header=[f"Authorization: Bearer {API_KEY}"],
            timeout=10,
        )
        assert json.loads(ws.recv())["type"] == "session.updated"
        async with httpx.AsyncClient(base_url=rtc_server.url) as http:
            hung_up = await http.post(
                f"/v1/realtime/calls/{client.call_id}/hangup",
                headers={"Authorization": f"Bearer {API_KEY}"},
            )
            assert hung_up.status_code == 200

        assert (await asyncio.to_thread(close_frame, ws))[0] == 1000
        ws.close()
        status, _ = await asyncio.to_thread(_handshake_status, rtc_server, client.call_id, API_KEY)
        assert status == 404
    finally:
        await client.close()


@pytest.mark.parametrize("beta", [False, True], ids=["ga", "beta"])
async def test_sideband_speaks_either_dialect(rtc_server, beta) -> None:
    client = CallClient(rtc_server.url, API_KEY)
    try:
        await client.connect()
        assert client.call_id is not None
        headers = [f"Authorization: Bearer {API_KEY}"]
        if beta:
            headers.append("OpenAI-Beta: realtime=v1")
        ws = await asyncio.to_thread(
            websocket.create_connection,
            _ws_url(rtc_server, client.call_id),
            header=headers,
            timeout=10,
        )
        try:
            attached = json.loads(await asyncio.to_thread(ws.recv))
            assert attached["type"] == "session.updated"
            # beta sessions name their modalities `modalities`, GA ones `output_modalities`
            assert ("modalities" in attached["session"]) == beta
        finally:
            ws.close()
    finally:
        await client.close()
