"""The models load in the background after the server starts listening (server/lifecycle.py
`ModelWarmup`): `/healthz` answers while they load, and a session that arrives first is served
once its model is there; it waits, it does not fail."""

from __future__ import annotations

import base64
import re
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from conftest import API_KEY, recv, recv_until
from servers import ServerThread
from speech_fixtures import speak, with_silence

from openrealtime.backends.registry import create_backends
from openrealtime.backends.stt.faster_whisper import FasterWhisperTranscriber
from openrealtime.config import Settings
from openrealtime.runtime import turn_judge
from openrealtime.server.app import create_app

RATE = 24000
CHUNK = RATE // 50 * 2  # 20 ms of audio/pcm


@pytest.fixture
def release(monkeypatch: pytest.MonkeyPatch) -> Iterator[threading.Event]:
    """Holds the recognizer's load until set: the start-up warm-up and a session's first
    decode both wait behind it."""
    gate = threading.Event()
    load = FasterWhisperTranscriber._load

    def held(self: FasterWhisperTranscriber) -> Any:
        assert gate.wait(30), "the test never released the load"
        return load(self)

    monkeypatch.setattr(FasterWhisperTranscriber, "_load", held)
    yield gate
    gate.set()


def models(url: str) -> str:
    answer = httpx.get(url + "/healthz")
    assert answer.status_code == 200
    assert answer.json()["status"] == "ok"
    return str(answer.json()["models"])


def test_a_session_before_the_models_are_loaded_waits_for_its_transcript(
    settings: Settings, release: threading.Event
) -> None:
    mine = settings.model_copy(update={"stt": "faster-whisper", "tts": "espeak"})
    with ServerThread(create_app(mine, create_backends(mine)), warm=False) as server:
        assert models(server.url) == "loading"
        client = openai.OpenAI(base_url=server.url + "/v1", api_key=API_KEY)
        with client.realtime.connect(model="gpt-realtime") as conn:
            assert recv(conn).type == "session.created"
            audio = {"input": {"turn_detection": None, "transcription": {"model": "whisper-1"}}}
            conn.session.update(
                session={"type": "realtime", "output_modalities": ["text"], "audio": audio}
            )
            assert recv(conn).type == "session.updated"
            raw = with_silence(speak("Turn on the lights.", RATE), 200, 200, RATE).tobytes()
            for start in range(0, len(raw), CHUNK):
                chunk = base64.b64encode(raw[start : start + CHUNK]).decode()
                conn.input_audio_buffer.append(audio=chunk)
            conn.input_audio_buffer.commit()
            assert recv(conn).type == "input_audio_buffer.committed"
            assert models(server.url) == "loading"  # the transcript waits for the recognizer
            release.set()
            events = recv_until(conn, "conversation.item.input_audio_transcription.completed")
        failures = [e for e in events if e.type == "error" or e.type.endswith(".failed")]
        assert not failures, failures
        assert re.findall(r"[a-z]+", events[-1].transcript.lower()) == [
            "turn",
            "on",
            "the",
            "lights",
        ]
        assert models(server.url) == "ready"
        assert turn_judge._loaded() is not None, "Smart Turn was not warmed"


@pytest.mark.parametrize(
    ("stt", "tts", "warmed"),
    [("faster-whisper", "openai", True), ("openai", "hibari", True), ("openai", "openai", False)],
)
async def test_the_end_of_turn_model_is_warmed_only_beside_a_local_speech_model(
    monkeypatch: pytest.MonkeyPatch, stt: str, tts: str, warmed: bool
) -> None:
    """With HTTP speech backends the idle server stays lean (issue 9's RSS); with a speech
    model in the process everything is warmed at start (issue 10)."""
    from openrealtime.server.lifecycle import ModelWarmup

    calls: list[str] = []
    monkeypatch.setattr(turn_judge, "warm", lambda: calls.append("turn"))
    settings = Settings(
        stt=stt,
        tts=tts,
        stt_base_url="http://127.0.0.1:9/v1",
        stt_model="x",
        tts_base_url="http://127.0.0.1:9/v1",
        tts_model="x",
    )
    backends = create_backends(settings)
    # Only the end-of-turn model is in question: the speech models' own loads are not run.
    monkeypatch.setattr(backends.stt, "load", lambda: None)
    monkeypatch.setattr(backends.tts, "load", lambda: None)
    warmup = ModelWarmup(backends)
    await warmup.finished()
    assert warmup.state == "ready"
    assert calls == (["turn"] if warmed else [])
    await backends.aclose()


async def test_what_start_up_loaded_is_frozen_out_of_the_collectors_sight_once_ready(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A full collection under load then walks only what sessions made (issue 9: it walked
    everything, ~60-90 ms with the sockets waiting). The server asks for it; an app embedded
    with its own backends (as tests run it) does not."""
    import gc

    from openrealtime.server.lifecycle import ModelWarmup

    http = "http://127.0.0.1:9/v1"
    settings = Settings(
        stt="openai",
        tts="openai",
        stt_base_url=http,
        tts_base_url=http,
        stt_model="x",
        tts_model="x",
    )
    backends = create_backends(settings)
    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    warmup = ModelWarmup(backends, settle=True)
    await warmup.finished()
    frozen = gc.get_freeze_count()
    gc.unfreeze()  # this process goes on to other tests
    assert warmup.state == "ready" and frozen > 1000
    await backends.aclose()
