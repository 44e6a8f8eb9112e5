"""Production limits over real sockets: a session's maximum length, concurrent sessions per
process and per key (HTTP 429), events too large, and a client that stops reading.

Each test runs its own server with small limits. It shares the session's speech backends but
gets its own LLM client: the shared one's connections belong to the main server's loop.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import resource
import socket
import struct
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import orjson
import pytest
import websocket
from conftest import API_KEY, validated
from scripted_llm import Text
from servers import ServerThread
from webrtc_client import CallClient

from openrealtime.backends.llm.openai_chat import OpenAIChatModel
from openrealtime.backends.registry import Backends
from openrealtime.cli import parse_settings
from openrealtime.config import Settings
from openrealtime.server.app import create_app
from openrealtime.server.lifecycle import duration_phrase
from openrealtime.transports.websocket import MAX_EVENT_CHARS

OTHER_KEY = "sk-other-key"
TEXT_ONLY = {"type": "realtime", "output_modalities": ["text"]}


@contextmanager
def limited(settings: Settings, backends: Backends, **limits: Any) -> Iterator[ServerThread]:
    """A server with these limits (and both test keys unless `api_keys` is given)."""
    own = Settings(
        **{
            "api_keys": [API_KEY, OTHER_KEY],
            "llm_base_url": settings.llm_base_url,
            "llm_model": settings.llm_model,
            **limits,
        }
    )
    llm = OpenAIChatModel(settings.llm_base_url, settings.llm_model, None)
    app = create_app(own, dataclasses.replace(backends, llm=llm))
    with ServerThread(app) as thread:
        thread.app = app  # type: ignore[attr-defined]
        yield thread


def _connect(server: ServerThread, key: str | None = API_KEY, **options: Any) -> Any:
    header = [f"Authorization: Bearer {key}"] if key is not None else []
    ws = websocket.create_connection(
        server.url.replace("http", "ws", 1) + "/v1/realtime?model=gpt-realtime",
        header=header,
        timeout=10,
        **options,
    )
    assert validated(ws.recv()).type == "session.created"
    return ws


def _send(ws: Any, event: dict[str, Any]) -> None:
    ws.send(orjson.dumps(event).decode())


def _asking(text: str) -> list[dict[str, Any]]:
    """A text-only session update, a user message, and a response request."""
    item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}
    return [
        {"type": "session.update", "session": TEXT_ONLY},
        {"type": "conversation.item.create", "item": item},
        {"type": "response.create"},
    ]


def _ask(ws: Any, text: str) -> None:
    for event in _asking(text):
        _send(ws, event)


def _until_close(ws: Any, limit: int = 5000) -> tuple[list[Any], int, str]:
    """Every event (validated) up to the server's close frame, and its code and reason."""
    events = []
    for _ in range(limit):
        opcode, data = ws.recv_data(control_frame=True)
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            return events, struct.unpack("!H", data[:2])[0], data[2:].decode()
        if opcode == websocket.ABNF.OPCODE_TEXT:
            events.append(validated(data))
    raise AssertionError(f"no close within {limit} frames: {[e.type for e in events[-5:]]}")


def _until(ws: Any, event_type: str, limit: int = 5000) -> list[Any]:
    events = []
    for _ in range(limit):
        events.append(validated(ws.recv()))
        if events[-1].type == event_type:
            return events
    raise AssertionError(f"no {event_type} within {limit} events")


def _refused(server: ServerThread, key: str | None = API_KEY) -> tuple[int, dict[str, Any]]:
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        _connect(server, key)
    return refused.value.status_code, orjson.loads(refused.value.resp_body)["error"]


def _wait_for(condition: Any, timeout: float = 10, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what or condition}"
        time.sleep(0.02)


def _active(server: ServerThread) -> int:
    return int(server.app.state.limiter.active)  # type: ignore[attr-defined]


# --- flags -----------------------------------------------------------------------------------


def test_limit_flags_reach_the_settings(monkeypatch) -> None:
    for name in ("MAX_SESSIONS", "STT_TIMEOUT"):
        monkeypatch.delenv(f"OPENREALTIME_{name}", raising=False)
    settings = parse_settings(
        [
            "serve",
            "--max-session-minutes",
            "0.5",
            "--max-sessions",
            "7",
            "--max-sessions-per-key",
            "3",
            "--shutdown-grace-seconds",
            "2.5",
            "--send-queue-limit",
            "100",
            "--send-queue-bytes",
            "65536",
            "--stt-timeout",
            "4",
            "--tts-timeout",
            "5",
        ]
    )
    assert (settings.max_session_minutes, settings.max_sessions) == (0.5, 7)
    assert (settings.max_sessions_per_key, settings.shutdown_grace_seconds) == (3, 2.5)
    assert (settings.send_queue_limit, settings.send_queue_bytes) == (100, 65536)
    assert (settings.stt_timeout, settings.tts_timeout) == (4.0, 5.0)


def test_http_speech_backends_get_their_timeouts() -> None:
    from openrealtime.backends.registry import create_backends

    built = create_backends(
        Settings(
            stt="openai",
            stt_base_url="http://127.0.0.1:9/v1",
            stt_timeout=4,
            tts="openai",
            tts_base_url="http://127.0.0.1:9/v1",
            tts_timeout=5,
        )
    )
    assert built.stt._timeout == 4  # type: ignore[attr-defined]
    assert built.tts._timeout == 5  # type: ignore[attr-defined]


# --- session length --------------------------------------------------------------------------


def test_the_expiry_message_is_openais_for_the_default() -> None:
    assert duration_phrase(60) == "60 minutes"
    assert duration_phrase(1) == "1 minute"
    assert duration_phrase(0.02) == "0.02 minutes"


def test_an_idle_session_expires_with_an_error_then_a_normal_close(settings, backends) -> None:
    with limited(settings, backends, max_session_minutes=0.02) as server:  # 1.2 s
        started = time.monotonic()
        ws = _connect(server)
        try:
            events, code, reason = _until_close(ws)
        finally:
            ws.close()
        took = time.monotonic() - started
        assert [e.type for e in events] == ["error"]
        assert events[0].error.code == "session_expired"
        assert events[0].error.message == ("Your session hit the maximum duration of 0.02 minutes.")
        assert events[0].error.type == "invalid_request_error"
        assert (code, reason) == (1000, "session expired")
        assert 1.1 < took < 5, took
        _wait_for(lambda: _active(server) == 0, what="the slot to be given back")


def test_expiry_cancels_the_active_response_first(settings, backends, llm) -> None:
    llm.script(Text(["w "] * 1000, delay=0.01))  # 10 s
    with limited(settings, backends, max_session_minutes=0.03) as server:  # 1.8 s
        ws = _connect(server)
        try:
            _ask(ws, "Talk for a long time.")
            events, code, _ = _until_close(ws)
        finally:
            ws.close()
        types = [e.type for e in events]
        assert "response.output_text.delta" in types
        done = next(e for e in events if e.type == "response.done")
        assert done.response.status == "cancelled"
        assert done.response.status_details.reason is None  # the error says why
        assert types[-1] == "error" and events[-1].error.code == "session_expired"
        assert types.index("response.done") < types.index("error")
        assert code == 1000
        _wait_for(lambda: llm.cancelled == 1, what="the LLM request to be cancelled")


async def test_a_webrtc_call_expires_with_an_error_then_hangs_up(settings, backends) -> None:
    with limited(settings, backends, max_session_minutes=0.03) as server:
        client = CallClient(server.url, API_KEY, audio=False)
        try:
            await client.connect(session=TEXT_ONLY)
            assert (await client.recv()).type == "session.created"
            error = await client.recv(timeout=10)
            assert error.type == "error" and error.error.code == "session_expired"
            deadline = time.monotonic() + 10
            while client.pc.connectionState not in ("closed", "failed"):
                assert time.monotonic() < deadline, client.pc.connectionState
                await asyncio.sleep(0.05)
        finally:
            await client.close()
        deadline = time.monotonic() + 5
        while server.app.state.calls._calls or _active(server):  # type: ignore[attr-defined]
            assert time.monotonic() < deadline, "the call was not freed"
            await asyncio.sleep(0.05)


# --- concurrent sessions ---------------------------------------------------------------------


def test_the_per_process_limit_refuses_with_429_and_frees_slots(settings, backends) -> None:
    with limited(settings, backends, max_sessions=2, max_sessions_per_key=10) as server:
        first, second = _connect(server), _connect(server, OTHER_KEY)
        try:
            status, error = _refused(server)
            assert status == 429
            assert "--max-sessions" in error["message"] and "2" in error["message"]
            assert "--max-sessions-per-key" not in error["message"]
            assert error["code"] == "rate_limit_exceeded"
            assert set(error) == {"message", "type", "param", "code"}
            # A WebRTC offer is refused alike.
            calls = httpx.post(
                server.url + "/v1/realtime/calls",
                content=b"v=0\r\n",
                headers={"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/sdp"},
            )
            assert calls.status_code == 429
            assert "--max-sessions" in calls.json()["error"]["message"]
        finally:
            first.close()
        _wait_for(lambda: _active(server) == 1, what="the closed session's slot")
        third = _connect(server)
        third.close()
        second.close()
        _wait_for(lambda: _active(server) == 0, what="every slot")


def test_the_per_key_limit_counts_each_key_and_client_secret(settings, backends) -> None:
    with limited(settings, backends, max_sessions=10, max_sessions_per_key=1) as server:
        ws = _connect(server)
        try:
            status, error = _refused(server)
            assert status == 429 and "--max-sessions-per-key" in error["message"]
            _connect(server, OTHER_KEY).close()  # another key has its own count
            minted = httpx.post(
                server.url + "/v1/realtime/client_secrets",
                json={"session": {"type": "realtime"}},
                headers={"Authorization": f"Bearer {API_KEY}"},
            ).json()["value"]
            by_secret = _connect(server, minted)  # a client secret counts as itself
            try:
                status, _ = _refused(server, minted)
                assert status == 429
            finally:
                by_secret.close()
        finally:
            ws.close()
        _wait_for(lambda: _active(server) == 0, what="every slot")
        metrics = httpx.get(server.url + "/metrics").text
        assert 'openrealtime_sessions_refused_total{reason="max_sessions_per_key"} 2.0' in metrics


def test_open_mode_counts_each_key_as_sent_and_no_key_as_one(settings, backends) -> None:
    with limited(settings, backends, api_keys=[], max_sessions_per_key=1) as server:
        anonymous = _connect(server, None)
        a = _connect(server, "sk-a")
        b = _connect(server, "sk-b")
        try:
            assert _refused(server, None)[0] == 429
            assert _refused(server, "sk-a")[0] == 429
        finally:
            for ws in (anonymous, a, b):
                ws.close()


async def test_a_sideband_is_not_a_session(settings, backends) -> None:
    with limited(settings, backends, max_sessions=1) as server:
        client = CallClient(server.url, API_KEY, audio=False)
        try:
            await client.connect(session=TEXT_ONLY)
            assert _active(server) == 1
            url = server.url.replace("http", "ws", 1) + f"/v1/realtime?call_id={client.call_id}"
            sideband = await asyncio.to_thread(
                websocket.create_connection,
                url,
                header=[f"Authorization: Bearer {API_KEY}"],
                timeout=10,
            )
            try:
                attached = validated(await asyncio.to_thread(sideband.recv))
                assert attached.type == "session.updated"
                assert _active(server) == 1
            finally:
                sideband.close()
        finally:
            await client.close()
        deadline = time.monotonic() + 10
        while _active(server):
            assert time.monotonic() < deadline, "the call's slot was not given back"
            await asyncio.sleep(0.05)


def test_slots_come_back_after_an_abrupt_disconnect_and_a_refused_offer(settings, backends) -> None:
    with limited(settings, backends, max_sessions=1) as server:
        ws = _connect(server)
        ws.shutdown()  # no close frame
        _wait_for(lambda: _active(server) == 0, what="the dropped session's slot")
        # An offer that is SDP to the eye but that aiortc cannot answer: 400, slot given back.
        bad = httpx.post(
            server.url + "/v1/realtime/calls",
            content=b"v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio\r\n",
            headers={"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/sdp"},
        )
        assert bad.status_code == 400
        assert _active(server) == 0
        _connect(server).close()


# --- message size ----------------------------------------------------------------------------


def test_an_event_too_large_is_refused_and_the_session_goes_on(server, llm) -> None:
    ws = _connect(server)
    try:
        padding = "A" * (MAX_EVENT_CHARS + 1024)
        ws.send('{"type": "input_audio_buffer.append", "audio": "' + padding + '"}')
        error = validated(ws.recv())
        assert error.type == "error" and error.error.code == "message_too_large"
        assert "21 MiB" in error.error.message and str(MAX_EVENT_CHARS) in error.error.message
        # Under the event limit but over 15 MiB of decoded audio: the core's own error.
        audio = base64.b64encode(bytes(15 * 1024 * 1024 + 4096)).decode()
        assert len(audio) < MAX_EVENT_CHARS
        _send(ws, {"type": "input_audio_buffer.append", "audio": audio})
        error = validated(ws.recv())
        assert error.type == "error" and error.error.code == "invalid_audio"
        # Still the same session, still answering.
        _ask(ws, "Still there?")
        done = _until(ws, "response.done")[-1]
        assert done.response.status == "completed"
    finally:
        ws.close()


# --- a client that stops reading -------------------------------------------------------------

# ~10 s of 2 KB text deltas, if nobody stopped it: 20 MB, well past what the kernel's
# loopback buffers absorb (the server's send buffer autotunes to ~4 MB) before the server's
# own queue starts to fill.
FLOOD = Text(["w " * 1000] * 10000, delay=0.001)


def _stalled(server: ServerThread) -> Any:
    """A connection whose receive window is as small as the kernel allows."""
    return _connect(server, sockopt=((socket.SOL_SOCKET, socket.SO_RCVBUF, 4096),))


def test_a_client_that_stops_reading_is_told_why_and_closed(settings, backends, llm) -> None:
    llm.script(FLOOD)
    with limited(settings, backends, send_queue_limit=64) as server:
        ws = _stalled(server)
        try:
            _ask(ws, "Flood me.")
            # Not reading. The queue fills, the session ends: its backend request stops...
            _wait_for(lambda: llm.cancelled == 1, timeout=20, what="the flood to be cancelled")
            # ...and a client that reads again in time finds the reason, then the close.
            events, code, reason = _until_close(ws, limit=200_000)
        finally:
            ws.close()
        assert events[-1].type == "error" and events[-1].error.code == "send_queue_full"
        assert "not reading" in events[-1].error.message
        assert (code, reason) == (1008, "client is not reading its events")
        _wait_for(lambda: _active(server) == 0, what="the slot")


def _rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def test_a_client_that_never_reads_is_dropped_and_others_go_on(settings, backends, llm) -> None:
    llm.script(FLOOD)
    with limited(settings, backends, send_queue_limit=64) as server:
        rss_before = _rss_mb()
        stalled = _stalled(server)
        started = time.monotonic()
        try:
            _ask(stalled, "Flood me.")
            # Meanwhile another session is served as usual.
            normal = _connect(server, OTHER_KEY)
            try:
                asked = time.monotonic()
                _ask(normal, "Hello?")
                done = _until(normal, "response.done")[-1]
                assert done.response.status == "completed"
                assert time.monotonic() - asked < 2.0
            finally:
                normal.close()
            # The stalled one is cut off (no close frame can reach a client that does not
            # read): its connection is aborted, so its socket is reset, within a bounded time.
            _wait_for(lambda: llm.cancelled == 1, timeout=20, what="the flood to be cancelled")
            _wait_for(lambda: _active(server) == 0, timeout=10, what="the stalled session")
            connections = server.server.server_state.connections
            _wait_for(lambda: not connections, timeout=5, what="uvicorn to let go")
            stalled.sock.settimeout(5)
            with pytest.raises(ConnectionResetError):
                for _ in range(100_000):  # the reset discards what the socket still held
                    assert stalled.sock.recv(65536), "closed, not aborted: it lingered"
        finally:
            stalled.shutdown()
        assert time.monotonic() - started < 10
        assert _rss_mb() - rss_before < 100, "the server's memory grew for a stalled client"
        assert len(llm.requests) == 2


def _handshake(server: ServerThread) -> socket.socket:
    """A raw WebSocket connection: the upgrade by hand, then nothing is ever read again."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    key = base64.b64encode(bytes(16)).decode()
    sock.sendall(
        (
            "GET /v1/realtime?model=gpt-realtime HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{server.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"Authorization: Bearer {API_KEY}\r\n\r\n"
        ).encode()
    )
    assert sock.recv(4096).startswith(b"HTTP/1.1 101"), "the upgrade was refused"
    return sock


def _masked(text: str) -> bytes:
    """One client text frame (clients must mask; a zero mask keeps the payload as is)."""
    payload = text.encode()
    assert len(payload) < 65536
    header = bytes([0x81, 0xFE]) + struct.pack("!H", len(payload))
    return header + bytes(4) + payload


def test_a_stalled_client_is_dropped_in_time_when_the_event_bound_trips(
    settings, backends, llm
) -> None:
    """Was: past --send-queue-limit with the socket buffer still empty, the close frame went
    into that buffer, the 2 s abort never fired and uvicorn's own close timeout (10 s) let go."""
    llm.script(Text(["w "] * 200))
    with limited(settings, backends, send_queue_limit=4) as server:
        sock = _handshake(server)
        try:
            for event in _asking("Hi"):
                sock.sendall(_masked(orjson.dumps(event).decode()))
            started = time.monotonic()
            # Nothing is read: the session's burst of events trips the bound at once.
            connections = server.server.server_state.connections
            _wait_for(lambda: not connections, timeout=15, what="the server to drop it")
            held = time.monotonic() - started
            assert held < 5, f"a stalled client was held {held:.1f} s"
            assert _active(server) == 0
            with pytest.raises(ConnectionResetError):  # aborted, as documented
                while sock.recv(65536):
                    pass
        finally:
            sock.close()
