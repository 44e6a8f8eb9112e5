"""Graceful shutdown of `python -m openrealtime serve` on SIGTERM: new sessions are refused
(503) at once, active responses may finish within `--shutdown-grace-seconds`, then every
client is told (`server_shutting_down`) and let go (close 1001; a WebRTC call hangs up), and
the process exits 0. The model is the scripted LLM, streaming slowly.
"""

from __future__ import annotations

import asyncio
import os
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson
import websocket
from conftest import API_KEY, validated
from scripted_llm import Text
from servers import free_port
from webrtc_client import CallClient

from openrealtime.config import Settings

TEXT_ONLY = {"type": "realtime", "output_modalities": ["text"]}


@contextmanager
def serving(tmp_path: Path, settings: Settings, *flags: str) -> Iterator[tuple[Any, int, Path]]:
    """The server as an operator runs it, in its own process: (process, port, its log)."""
    port = free_port()
    log = tmp_path / "stderr.txt"
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENREALTIME_")}
    with log.open("wb") as stderr:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "openrealtime",
                "serve",
                "--port",
                str(port),
                "--api-key",
                API_KEY,
                "--llm-base-url",
                settings.llm_base_url,
                "--llm-model",
                settings.llm_model,
                *flags,
            ],
            env=env | {"PYTHONUNBUFFERED": "1"},
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, f"server exited:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"server never became healthy:\n{log.read_text()}"
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                # Shutdown waits for a start-up warm-up in hand: these tests are not about it.
                if health.status_code == 200 and health.json()["models"] != "loading":
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        yield process, port, log
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _connect(port: int) -> Any:
    ws = websocket.create_connection(
        f"ws://127.0.0.1:{port}/v1/realtime?model=gpt-realtime",
        header=[f"Authorization: Bearer {API_KEY}"],
        timeout=10,
    )
    assert validated(ws.recv()).type == "session.created"
    return ws


def _ask(ws: Any, text: str) -> None:
    for event in (
        {"type": "session.update", "session": TEXT_ONLY},
        {
            "type": "conversation.item.create",
            "item": {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": text}],
            },
        },
        {"type": "response.create"},
    ):
        ws.send(orjson.dumps(event).decode())


def _until(ws: Any, event_type: str, limit: int = 1000) -> list[Any]:
    events = []
    for _ in range(limit):
        events.append(validated(ws.recv()))
        if events[-1].type == event_type:
            return events
    raise AssertionError(f"no {event_type} within {limit} events")


def _until_close(ws: Any, limit: int = 5000) -> tuple[list[Any], int]:
    events = []
    for _ in range(limit):
        opcode, data = ws.recv_data(control_frame=True)
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            return events, struct.unpack("!H", data[:2])[0]
        if opcode == websocket.ABNF.OPCODE_TEXT:
            events.append(validated(data))
    raise AssertionError(f"no close within {limit} frames")


def _refused_while_shutting_down(port: int) -> None:
    """Once the server has heard the signal: a handshake and an offer get 503, /healthz too."""
    deadline = time.monotonic() + 5
    while True:  # the server notices the signal within ~0.1 s
        try:
            _connect(port).close()  # still accepted: the signal is not seen yet
        except websocket.WebSocketBadStatusException as refused:
            assert refused.status_code == 503
            error = orjson.loads(refused.resp_body)["error"]
            assert error["code"] == "server_shutting_down"
            break
        assert time.monotonic() < deadline, "new sessions were never refused"
        time.sleep(0.05)
    offer = httpx.post(
        f"http://127.0.0.1:{port}/v1/realtime/calls",
        content=b"v=0\r\n",
        headers={"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/sdp"},
    )
    assert offer.status_code == 503
    assert offer.json()["error"]["code"] == "server_shutting_down"
    health = httpx.get(f"http://127.0.0.1:{port}/healthz")
    assert (health.status_code, health.json()) == (503, {"status": "shutting_down"})


def _goodbye(events: list[Any]) -> None:
    assert events[-1].type == "error"
    assert events[-1].error.code == "server_shutting_down"
    assert events[-1].error.type == "server_error"


def test_sigterm_lets_a_response_finish_then_closes_with_1001_and_exits_0(
    tmp_path, settings, llm
) -> None:
    llm.script(Text(["w "] * 30, delay=0.05))  # 1.5 s
    with serving(tmp_path, settings, "--shutdown-grace-seconds", "8") as (process, port, log):
        ws = _connect(port)
        try:
            _ask(ws, "Say a few words.")
            _until(ws, "response.output_text.delta")
            process.send_signal(signal.SIGTERM)
            signalled = time.monotonic()
            _refused_while_shutting_down(port)
            events, code = _until_close(ws)
        finally:
            ws.close()
        done = next(e for e in events if e.type == "response.done")
        assert done.response.status == "completed"
        assert (
            "".join(e.delta for e in events if e.type == "response.output_text.delta").count("w")
            == 29
        )  # every delta after the first one read above
        _goodbye(events)
        assert code == 1001
        assert time.monotonic() - signalled < 5  # not the whole grace: it ended when done
        assert process.wait(timeout=20) == 0
    output = log.read_text()
    assert "Traceback" not in output, output
    assert "Application shutdown complete." in output


def test_a_response_longer_than_the_grace_is_cancelled_at_the_deadline(
    tmp_path, settings, llm
) -> None:
    llm.script(Text(["w "] * 1000, delay=0.02))  # 20 s
    with serving(tmp_path, settings, "--shutdown-grace-seconds", "1") as (process, port, log):
        ws = _connect(port)
        try:
            _ask(ws, "Talk for a long time.")
            _until(ws, "response.output_text.delta")
            process.send_signal(signal.SIGTERM)
            signalled = time.monotonic()
            events, code = _until_close(ws)
            took = time.monotonic() - signalled
        finally:
            ws.close()
        done = next(e for e in events if e.type == "response.done")
        assert done.response.status == "cancelled"
        _goodbye(events)
        assert code == 1001
        assert 0.9 < took < 4, took
        assert process.wait(timeout=20) == 0
    deadline = time.monotonic() + 5
    while llm.cancelled != 1:  # the LLM request was stopped, not left to run
        assert time.monotonic() < deadline, llm.cancelled
        time.sleep(0.05)
    assert "Traceback" not in log.read_text()


async def test_a_webrtc_call_is_told_and_hung_up(tmp_path, settings) -> None:
    with serving(tmp_path, settings, "--shutdown-grace-seconds", "5") as (process, port, log):
        client = CallClient(f"http://127.0.0.1:{port}", API_KEY, audio=False)
        try:
            await client.connect(session=TEXT_ONLY)
            assert (await client.recv()).type == "session.created"
            process.send_signal(signal.SIGTERM)
            error = await client.recv(timeout=10)
            assert error.type == "error" and error.error.code == "server_shutting_down"
            deadline = time.monotonic() + 10
            while client.pc.connectionState not in ("closed", "failed"):
                assert time.monotonic() < deadline, client.pc.connectionState
                await asyncio.sleep(0.05)
        finally:
            await client.close()
        assert await asyncio.to_thread(process.wait, 20) == 0
    assert "Traceback" not in log.read_text()


def test_an_idle_session_is_let_go_at_once(tmp_path, settings) -> None:
    with serving(tmp_path, settings, "--shutdown-grace-seconds", "30") as (process, port, _):
        ws = _connect(port)
        try:
            process.send_signal(signal.SIGTERM)
            signalled = time.monotonic()
            events, code = _until_close(ws)
        finally:
            ws.close()
        _goodbye(events)
        assert code == 1001
        assert process.wait(timeout=20) == 0
        assert time.monotonic() - signalled < 5  # no response to wait for: not the grace
