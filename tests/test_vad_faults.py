"""Faults stay in their room: speech detection is one scheduler shared by every session of a
process, so a model that fails on a batch, or a session whose handling of its probabilities
raises, must touch only the sessions concerned. Driven over a
real socket (websocket-client, whose timeout turns a session that hangs into a failure), with
real speech (espeak-ng) and the real Silero model behind a failing wrapper.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import functools
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import orjson
import pytest
import websocket
from conftest import API_KEY, validated
from servers import ServerThread
from speech_fixtures import speak, with_silence

from openrealtime.backends.llm.openai_chat import OpenAIChatModel
from openrealtime.backends.registry import Backends
from openrealtime.backends.vad.base import VadStream, VoiceActivityDetector
from openrealtime.config import Settings
from openrealtime.core.session import Session
from openrealtime.server.app import create_app

RATE = 24000
CHUNK = RATE * 20 // 1000 * 2  # bytes of 20 ms of audio/pcm
STARTED = "input_audio_buffer.speech_started"


class FailsOnce:
    """A VAD that is the real one, except that the batch after `armed` is set raises."""

    def __init__(self, vad: VoiceActivityDetector) -> None:
        self._vad = vad
        self.name, self.capabilities = vad.name, vad.capabilities
        self.sample_rate, self.frame_samples = vad.sample_rate, vad.frame_samples
        self.armed = False
        self.failures = 0

    def new_stream(self) -> VadStream:
        return self._vad.new_stream()

    def infer_batch(
        self, streams: Sequence[VadStream], frames: Sequence[np.ndarray]
    ) -> list[float]:
        if self.armed:
            self.armed = False
            self.failures += 1
            raise RuntimeError("injected VAD failure")
        return self._vad.infer_batch(streams, frames)


@functools.cache
def _speech() -> bytes:
    return with_silence(speak("turn on the lights please", RATE), 600, 800, RATE).tobytes()


def _send(conn: websocket.WebSocket, event: dict[str, Any]) -> None:
    conn.send(orjson.dumps(event).decode())


def _recv_until(conn: websocket.WebSocket, event_type: str) -> list[Any]:
    events = [validated(conn.recv())]
    while events[-1].type != event_type:
        events.append(validated(conn.recv()))
    return events


def _append(conn: websocket.WebSocket, raw: bytes) -> None:
    for start in range(0, len(raw), CHUNK):
        audio = base64.b64encode(raw[start : start + CHUNK]).decode()
        _send(conn, {"type": "input_audio_buffer.append", "audio": audio})


@contextlib.contextmanager
def _session(url: str, instructions: str = "") -> Iterator[websocket.WebSocket]:
    conn = websocket.create_connection(url, header=[f"Authorization: Bearer {API_KEY}"], timeout=30)
    try:
        assert validated(conn.recv()).type == "session.created"
        turns = {"type": "server_vad", "create_response": False}
        session = {
            "type": "realtime",
            "instructions": instructions,
            "output_modalities": ["text"],
            "audio": {"input": {"turn_detection": turns}},
        }
        _send(conn, {"type": "session.update", "session": session})
        assert validated(conn.recv()).type == "session.updated"
        yield conn
    finally:
        conn.close()


def _item(text: str) -> dict[str, Any]:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


def _speech_is_detected(conn: websocket.WebSocket) -> None:
    _append(conn, _speech())
    events = _recv_until(conn, "input_audio_buffer.speech_stopped")
    assert [e.type for e in events if e.type in (STARTED, "error")] == [STARTED]


def _three_frames_then_an_item(conn: websocket.WebSocket) -> list[Any]:
    """Audio that completes one VAD frame, then input queued behind its detection."""
    _append(conn, _speech()[: 3 * CHUNK])
    _send(conn, {"type": "conversation.item.create", "item": _item("still here")})
    return _recv_until(conn, "conversation.item.added")


@pytest.fixture(scope="module")
def failing_vad(backends: Backends) -> FailsOnce:
    return FailsOnce(backends.vad)


@pytest.fixture(scope="module")
def url(settings: Settings, backends: Backends, failing_vad: FailsOnce) -> Iterator[str]:
    # An LLM client of its own: its pool must not hold connections of another server's loop.
    llm = OpenAIChatModel(settings.llm_base_url, settings.llm_model, None)
    app = create_app(settings, dataclasses.replace(backends, llm=llm, vad=failing_vad))
    # No keepalive pings: each one would restart the client's receive timeout.
    with ServerThread(app, ws_ping_interval=None) as server:
        yield f"ws://127.0.0.1:{server.port}/v1/realtime?model=gpt-realtime"


def test_a_failing_vad_batch_is_an_error_for_its_session_and_no_other(url, failing_vad) -> None:
    with _session(url) as hit, _session(url) as other:
        failing_vad.armed = True
        events = _three_frames_then_an_item(hit)
        assert failing_vad.failures == 1
        errors = [e for e in events if e.type == "error"]
        assert len(errors) == 1, [e.type for e in events]
        error = errors[0].error
        assert (error.type, error.code) == ("server_error", "vad_failed")
        assert "Speech detection failed" in error.message
        # The item sent after the failed audio was applied: the session's input goes on.
        assert events[-1].item.content[0].text == "still here"

        _speech_is_detected(other)
        _speech_is_detected(hit)


def test_a_session_whose_probabilities_raise_affects_no_other(
    url, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = Session.on_speech_probabilities
    raised: list[str] = []

    def trips_once(self: Session, probabilities: list[float]) -> None:
        if self.config.instructions == "trip" and not raised:
            raised.append(self.id)
            raise RuntimeError("a bug reached through the VAD callback")
        original(self, probabilities)

    monkeypatch.setattr(Session, "on_speech_probabilities", trips_once)
    with _session(url, instructions="trip") as hit, _session(url) as other:
        events = _three_frames_then_an_item(hit)
        assert len(raised) == 1
        assert events[-1].item.content[0].text == "still here"

        _speech_is_detected(other)
        _speech_is_detected(hit)
