"""Transcription sessions (`/v1/realtime?intent=transcription`, or a secret minted with
`type: "transcription"`) through the official `openai` SDK, GA and beta: VAD-segmented turns,
transcript deltas while the speaker is still talking, `.completed` per turn, no responses.

The speech is real (espeak-ng), and so are the backends (Silero VAD, pocketsphinx). A
transcription session streams its transcripts: from the backend's own `open_stream` if it has
one, else by re-transcribing every second of audio (`BatchStream`). pocketsphinx is far from
exact, so transcripts are checked for being there, not for their words.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import threading
from typing import Any

import numpy as np
import openai
import orjson
import pytest
import websockets.exceptions
from conftest import API_KEY, arecv, arecv_until, recv, validated
from openai.types.beta.realtime import TranscriptionSession as BetaTranscriptionSession
from servers import ServerThread
from speech_fixtures import speak, with_silence

RATE = 24000
CHUNK_MS = 20
CHUNK_BYTES = RATE * CHUNK_MS // 1000 * 2
# ~4.2 s of speech: long enough for streamed partials before the turn ends (BatchStream's
# first comes after 1 s of audio).
LONG = "the quick brown fox jumps over the lazy dog and runs into the green forest"
# Generous: on a loaded 2-core machine, re-transcribing every second (BatchStream) with
# pocketsphinx can run slower than real time.
TURN_TIMEOUT_S = 120
FIRST, SECOND = "turn on the lights in the kitchen please", "what is the weather like today"
COMPLETED = "conversation.item.input_audio_transcription.completed"
DELTA = "conversation.item.input_audio_transcription.delta"
INTENT = {"intent": "transcription"}


def _trimmed(pcm: np.ndarray) -> np.ndarray:
    level = np.abs(pcm.astype(np.int32))
    loud = np.flatnonzero(level > level.max() * 0.01)
    return pcm[loud[0] : loud[-1] + 1]


@functools.cache
def _turns(*texts: str) -> bytes:
    """Each text spoken after 1 s of silence (more than any silence_duration_ms used here,
    so the turns stay apart), then 1.2 s of silence to end the last turn."""
    parts = [with_silence(_trimmed(speak(text, RATE)), 1000, 0, RATE) for text in texts]
    return np.concatenate([*parts, np.zeros(RATE * 1200 // 1000, np.int16)]).tobytes()


def _chunks(raw: bytes) -> list[str]:
    return [
        base64.b64encode(raw[i : i + CHUNK_BYTES]).decode() for i in range(0, len(raw), CHUNK_BYTES)
    ]


def _append_fast(conn: Any, raw: bytes) -> None:
    for chunk in _chunks(raw):
        conn.input_audio_buffer.append(audio=chunk)


def _recv_completed(
    conn: Any, turns: int, *, beta: bool = False, timeout: float = TURN_TIMEOUT_S
) -> list[Any]:
    """Every event up to the `turns`-th completed transcript. A watchdog closes the socket
    after `timeout`, so a turn that never comes fails the test instead of hanging it."""
    events: list[Any] = []
    watchdog = threading.Timer(timeout, conn.close)
    watchdog.start()
    try:
        while sum(e.type == COMPLETED for e in events) < turns:
            events.append(recv(conn, beta=beta))
    except websockets.exceptions.ConnectionClosed:
        raise AssertionError(
            f"{turns} completed transcripts not within {timeout}s: {[e.type for e in events]}"
        ) from None
    finally:
        watchdog.cancel()
    return events


def _of_type(events: list[Any], event_type: str) -> list[Any]:
    return [e for e in events if e.type == event_type]


def _check_turns(events: list[Any], turns: int, *, added: str = "conversation.item.added") -> None:
    """`turns` VAD turns, each committed as a user audio item and transcribed; nothing else."""
    committed = _of_type(events, "input_audio_buffer.committed")
    assert len(_of_type(events, "input_audio_buffer.speech_started")) == turns
    assert len(_of_type(events, "input_audio_buffer.speech_stopped")) == turns
    assert len(committed) == turns
    item_ids = [e.item_id for e in committed]
    assert len(set(item_ids)) == turns
    # Each committed item follows the one before.
    assert [e.previous_item_id for e in committed[1:]] == item_ids[:-1]
    items = _of_type(events, added)
    assert [e.item.id for e in items] == item_ids
    assert all(e.item.role == "user" and e.item.content[0].type == "input_audio" for e in items)
    completed = _of_type(events, COMPLETED)
    assert sorted(e.item_id for e in completed) == sorted(item_ids)
    assert all(e.transcript.strip() for e in completed), [e.transcript for e in completed]
    for item_id in item_ids:
        # Deltas for a turn come before its completed transcript and only append to it.
        types = [e.type for e in events if getattr(e, "item_id", None) == item_id]
        assert types.index(COMPLETED) > max(
            (i for i, t in enumerate(types) if t == DELTA), default=-1
        )
    assert not [e for e in events if e.type.startswith("response.")]


def _response_create_is_refused(conn: Any, *, beta: bool = False) -> None:
    conn.response.create()
    while (event := recv(conn, beta=beta)).type != "error":
        assert not event.type.startswith("response."), event.type
    assert event.error.code == "not_supported"
    assert "transcription session" in event.error.message


# --- GA: ?intent=transcription -------------------------------------------------------------


def test_intent_transcription_opens_a_transcription_session(client) -> None:
    with client.realtime.connect(model="gpt-realtime", extra_query=INTENT) as conn:
        created = recv(conn)
        assert created.type == "session.created"
        session = created.session
        assert session.type == "transcription"
        assert session.object == "realtime.transcription_session"
        assert session.audio.input.turn_detection.type == "server_vad"
        _response_create_is_refused(conn)


def test_a_long_turn_and_two_turns_are_transcribed_without_answers(client, llm) -> None:
    with client.realtime.connect(model="gpt-realtime", extra_query=INTENT) as conn:
        assert recv(conn).session.type == "transcription"
        _append_fast(conn, _turns(LONG))
        _check_turns(_recv_completed(conn, 1), 1)
        _append_fast(conn, _turns(FIRST, SECOND))
        _check_turns(_recv_completed(conn, 2), 2)
        _response_create_is_refused(conn)
    assert llm.requests == []


def test_session_update_in_a_transcription_session_keeps_it_one(client) -> None:
    with client.realtime.connect(model="gpt-realtime", extra_query=INTENT) as conn:
        recv(conn)
        conn.session.update(
            session={
                "type": "transcription",
                "audio": {"input": {"transcription": {"model": "whisper-1", "language": "en"}}},
            }
        )
        updated = recv(conn)
        assert updated.type == "session.updated"
        assert updated.session.type == "transcription"
        assert updated.session.audio.input.transcription.language == "en"
        conn.session.update(session={"type": "realtime", "instructions": "answer me"})
        error = recv(conn)
        assert error.type == "error" and error.error.param == "session.type"


@pytest.mark.realtime
async def test_paced_speech_gets_deltas_while_the_speaker_is_still_talking(async_client) -> None:
    """Audio at 1x, as a microphone sends it: partial transcripts arrive before the turn ends."""
    raw = _turns(LONG)
    async with async_client.realtime.connect(model="gpt-realtime", extra_query=INTENT) as conn:
        assert (await arecv(conn)).session.type == "transcription"
        loop = asyncio.get_running_loop()

        async def talk() -> None:
            start = loop.time()
            for index, chunk in enumerate(_chunks(raw)):
                await conn.input_audio_buffer.append(audio=chunk)
                await asyncio.sleep(max(0.0, start + (index + 1) * CHUNK_MS / 1000 - loop.time()))

        talking = asyncio.create_task(talk())
        try:
            events = await asyncio.wait_for(arecv_until(conn, COMPLETED), TURN_TIMEOUT_S)
        finally:
            await talking
    types = [e.type for e in events]
    stopped = types.index("input_audio_buffer.speech_stopped")
    early = [e for e in events[:stopped] if e.type == DELTA]
    assert early, f"no transcript delta before speech_stopped: {types}"
    assert all(e.delta for e in early)
    assert types.index("input_audio_buffer.speech_started") < types.index(DELTA)
    completed = events[-1]
    assert completed.transcript.strip()
    assert {e.item_id for e in early} == {completed.item_id}


# --- a client secret minted for transcription ----------------------------------------------


def _secret_client(server: ServerThread, secret: str) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=server.url + "/v1",
        websocket_base_url=f"ws://127.0.0.1:{server.port}/v1",
        api_key=secret,
    )


def test_a_transcription_secret_opens_a_transcription_session(server, client, llm) -> None:
    minted = client.realtime.client_secrets.create(
        session={
            "type": "transcription",
            "audio": {
                "input": {
                    "transcription": {"model": "whisper-1", "language": "en"},
                    "turn_detection": {"type": "server_vad", "silence_duration_ms": 700},
                }
            },
        }
    )
    # No intent in the URL: the secret says what the session is.
    with _secret_client(server, minted.value).realtime.connect(model="gpt-realtime") as conn:
        session = recv(conn).session
        assert session.type == "transcription"
        assert session.audio.input.turn_detection.silence_duration_ms == 700
        assert session.audio.input.transcription.language == "en"
        _append_fast(conn, _turns(FIRST, SECOND))
        _check_turns(_recv_completed(conn, 2), 2)
        _response_create_is_refused(conn)
    assert llm.requests == []


# --- beta: transcription_session.update / .updated ---------------------------------------


def _beta_created(conn: Any) -> dict[str, Any]:
    """`transcription_session.created`, which OpenAI sends though the beta SDK's event union
    lacks it; its session is the SDK's beta `TranscriptionSession` (minus the REST-only
    client_secret)."""
    created = orjson.loads(conn.recv_bytes())
    assert created["type"] == "transcription_session.created", created
    session = created["session"]
    BetaTranscriptionSession.model_validate(
        {**session, "client_secret": {"expires_at": 0, "value": "-"}}
    )
    return dict(session)


def test_beta_transcription_session_update_and_turns(server) -> None:
    client = _secret_client(server, API_KEY)
    with client.beta.realtime.connect(model="gpt-4o-transcribe", extra_query=INTENT) as conn:
        session = _beta_created(conn)
        assert session["object"] == "realtime.transcription_session"
        assert session["input_audio_format"] == "pcm16"
        conn.transcription_session.update(
            session={
                "input_audio_transcription": {"model": "gpt-4o-transcribe", "language": "en"},
                "turn_detection": {"type": "server_vad", "silence_duration_ms": 600},
                "input_audio_noise_reduction": {"type": "near_field"},
            }
        )
        raw = conn.recv_bytes()
        updated = orjson.loads(raw)
        assert updated["type"] == "transcription_session.updated", updated
        validated(
            orjson.dumps(
                {
                    **updated,
                    "session": {
                        **updated["session"],
                        "client_secret": {"expires_at": 0, "value": "-"},
                    },
                }
            ),
            beta=True,
        )
        assert updated["session"]["input_audio_transcription"]["language"] == "en"
        assert updated["session"]["turn_detection"]["silence_duration_ms"] == 600
        _append_fast(conn, _turns(FIRST, SECOND))
        events = _recv_completed(conn, 2, beta=True)
        _check_turns(events, 2, added="conversation.item.created")
        _response_create_is_refused(conn, beta=True)


def test_beta_minted_transcription_session_opens_with_its_settings(server, client) -> None:
    minted = client.beta.realtime.transcription_sessions.create(
        input_audio_transcription={"model": "whisper-1", "language": "en"},
        turn_detection={"type": "server_vad", "silence_duration_ms": 650},
    )
    beta = _secret_client(server, minted.client_secret.value).beta.realtime
    with beta.connect(model="gpt-4o-transcribe") as conn:
        session = _beta_created(conn)
        assert session["input_audio_transcription"]["language"] == "en"
        assert session["turn_detection"]["silence_duration_ms"] == 650
        _append_fast(conn, _turns(LONG))
        _check_turns(_recv_completed(conn, 1, beta=True), 1, added="conversation.item.created")
