"""semantic_vad with Smart Turn, and early decoding of turns, through the official SDK over a
real socket: real speech (espeak-ng), real Silero VAD, the real end-of-turn model, and Whisper
tiny.en for the transcripts whose words are checked."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import openai
import pytest
from conftest import API_KEY, recv_until
from servers import ServerThread
from speech_fixtures import speak, with_silence
from test_server_voice import RATE, append, one, open_session, position, trimmed

from openrealtime.backends.registry import create_backends
from openrealtime.backends.stt.whisper_weights import locate_model
from openrealtime.config import Settings
from openrealtime.core.turns import SEMANTIC_MAX_WAIT_MS
from openrealtime.runtime import turn_judge
from openrealtime.server.app import create_app

SPEECH_BEGINS_MS = 500
COMPLETED = "conversation.item.input_audio_transcription.completed"


def spoken(*parts: str, pause_ms: int = 0, after_ms: int = 1500) -> tuple[np.ndarray, float]:
    """The parts spoken with `pause_ms` between them, then `after_ms` of silence; and where the
    speech ends (ms into the stream)."""
    gap = np.zeros(RATE * pause_ms // 1000, np.int16)
    pieces: list[np.ndarray] = []
    for index, text in enumerate(parts):
        pieces += [gap] if index else []
        pieces.append(trimmed(speak(text, RATE)))
    speech = np.concatenate(pieces)
    end_ms = SPEECH_BEGINS_MS + len(speech) * 1000 / RATE
    return with_silence(speech, SPEECH_BEGINS_MS, after_ms, RATE), end_ms


def events_until(conn: Any, event_type: str, seconds: float = 30.0) -> list[Any]:
    """Everything the server says until `event_type`, or until `seconds` pass without it
    (then the test fails on what came). A harmless request every 0.5 s (an unknown item's
    retrieve, answered by an error) keeps the receive from blocking for ever."""
    events: list[Any] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and event_type not in [e.type for e in events]:
        time.sleep(0.5)
        conn.conversation.item.retrieve(item_id="item_none")
        events += recv_until(conn, "error")
    return events


@pytest.fixture(scope="module", autouse=True)
def warm_model() -> None:
    turn_judge.warm()  # loading once, here, keeps the first judgement as quick as the rest


def test_semantic_vad_ends_a_finished_sentence_before_its_longest_wait(client) -> None:
    pcm, speech_end_ms = spoken("turn on the lights in the kitchen", after_ms=600)
    detection = {"type": "semantic_vad", "eagerness": "medium", "create_response": False}
    with client.realtime.connect(model="gpt-realtime") as conn:
        open_session(
            conn, output_modalities=["text"], audio={"input": {"turn_detection": detection}}
        )
        append(conn, pcm.tobytes())
        # The silence sent is far shorter than any silence wait: only the model can end it.
        events = events_until(conn, "input_audio_buffer.committed")
    stopped = one(events, "input_audio_buffer.speech_stopped")
    assert stopped.audio_end_ms < speech_end_ms + SEMANTIC_MAX_WAIT_MS["medium"]
    assert stopped.audio_end_ms <= len(pcm) * 1000 / RATE + 1
    assert position(events, "input_audio_buffer.speech_stopped") < position(
        events, "input_audio_buffer.committed"
    )


# --- early decoding, with Whisper tiny.en -------------------------------------------------------


@pytest.fixture(scope="module")
def whisper_client(settings: Settings) -> Iterator[openai.OpenAI]:
    # The packaged tiny.en weights, by directory: this branch's faster-whisper takes paths.
    model_dir = str(locate_model("tiny.en"))
    whisper = settings.model_copy(update={"stt": "faster-whisper", "stt_model": model_dir})
    with ServerThread(create_app(whisper, create_backends(whisper))) as thread:
        yield openai.OpenAI(base_url=thread.url + "/v1", api_key=API_KEY)


def transcribed_turn(client: openai.OpenAI, pcm: np.ndarray) -> list[Any]:
    detection = {"type": "server_vad", "silence_duration_ms": 500, "create_response": False}
    with client.realtime.connect(model="gpt-realtime") as conn:
        open_session(
            conn,
            output_modalities=["text"],
            audio={"input": {"turn_detection": detection, "transcription": {"model": "whisper-1"}}},
        )
        append(conn, pcm.tobytes())
        return recv_until(conn, COMPLETED)


def test_a_turn_decoded_early_has_its_words_and_events_in_order(whisper_client) -> None:
    pcm, _ = spoken("turn on the lights in the kitchen")
    events = transcribed_turn(whisper_client, pcm)
    completed = one(events, COMPLETED)
    assert "kitchen" in completed.transcript.lower()
    committed = one(events, "input_audio_buffer.committed")
    assert completed.item_id == committed.item_id
    assert position(events, "input_audio_buffer.speech_stopped") < position(
        events, "input_audio_buffer.committed"
    )
    # As OpenAI's whisper-1: the whole text in one delta, then `completed`.
    deltas = [e for e in events if e.type == "conversation.item.input_audio_transcription.delta"]
    assert [(d.item_id, d.delta) for d in deltas] == [(completed.item_id, completed.transcript)]
    assert position(events, deltas[0].type) < position(events, COMPLETED)


def test_speech_resuming_after_a_pause_discards_the_early_decode(whisper_client) -> None:
    # 300 ms of pause: a decode starts in it, then the speaker goes on before 500 ms of silence.
    pcm, _ = spoken("turn on the lights", "in the kitchen", pause_ms=300)
    events = transcribed_turn(whisper_client, pcm)
    one(events, "input_audio_buffer.speech_started")  # one turn, not two
    transcript = one(events, COMPLETED).transcript.lower()
    assert "light" in transcript and "kitchen" in transcript, transcript
