"""semantic_vad with Smart Turn, and early decoding of turns, through the official SDK over a
real socket: real speech (espeak-ng), real Silero VAD, the real end-of-turn model, and Whisper
tiny.en for the transcripts whose words are checked."""

from __future__ import annotations

import threading
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

from benchmarks.semantic_vad import clips
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


@pytest.fixture
def answers(monkeypatch: pytest.MonkeyPatch) -> list[float | None]:
    """The end-of-turn model's answers in this process's server, as they come."""
    judge = turn_judge.probability_complete
    seen: list[float | None] = []
    lock = threading.Lock()

    async def recorded(pcm16k: np.ndarray) -> float | None:
        probability = await judge(pcm16k)
        with lock:
            seen.append(probability)
        return probability

    monkeypatch.setattr(turn_judge, "probability_complete", recorded)
    return seen


def answered(seen: list[float | None], count: int, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while len(seen) < count:
        assert time.monotonic() < deadline, f"the model answered {len(seen)} of {count} times"
        time.sleep(0.02)


def natural(text: str) -> tuple[np.ndarray, np.ndarray, int]:
    """`text` spoken by hibari (a natural voice, whose intonation Smart Turn can read), whole;
    with a 700 ms pause spliced in at its `|`; and where the rest resumes (samples)."""
    return clips("hibari", text, 700)


def test_a_finished_sentence_in_a_natural_voice_ends_after_a_short_wait(client, answers) -> None:
    whole, _, _ = natural("I would like to order a | pizza with mushrooms")
    pcm = with_silence(whole, SPEECH_BEGINS_MS, 1000, RATE)
    speech_end_ms = SPEECH_BEGINS_MS + len(whole) * 1000 / RATE
    detection = {"type": "semantic_vad", "eagerness": "low", "create_response": False}
    with client.realtime.connect(model="gpt-realtime") as conn:
        open_session(
            conn, output_modalities=["text"], audio={"input": {"turn_detection": detection}}
        )
        append(conn, pcm.tobytes())
        events = events_until(conn, "input_audio_buffer.committed")
    stopped = one(events, "input_audio_buffer.speech_stopped")
    assert answers and answers[-1] is not None and answers[-1] >= 0.7, answers
    # Ended by the model, within the second of silence sent: far sooner than low's 8 s.
    assert speech_end_ms < stopped.audio_end_ms <= len(pcm) * 1000 / RATE + 1


def test_an_unfinished_sentence_is_not_cut_at_a_700_ms_pause_with_eagerness_low(
    client, answers
) -> None:
    _, paused, resume = natural("I would like to order a | pizza with mushrooms")
    pcm = with_silence(paused, SPEECH_BEGINS_MS, 1000, RATE)
    resume_at = round(SPEECH_BEGINS_MS * RATE / 1000) + resume
    resume_ms = resume_at * 1000 / RATE
    ended = {}
    for eagerness in (
        "low",
        None,
    ):  # None: server_vad 500 ms, which the pause is long enough to cut
        answers.clear()
        detection: dict[str, Any] = (
            {"type": "semantic_vad", "eagerness": eagerness}
            if eagerness
            else {"type": "server_vad", "silence_duration_ms": 500}
        )
        with client.realtime.connect(model="gpt-realtime") as conn:
            open_session(
                conn,
                output_modalities=["text"],
                audio={"input": {"turn_detection": {**detection, "create_response": False}}},
            )
            append(conn, pcm[:resume_at].tobytes())  # up to the end of the pause
            events: list[Any] = []
            if eagerness:
                answered(answers, 1)  # the model has judged the pause before the speaker goes on
            else:
                events += events_until(conn, "input_audio_buffer.speech_stopped")
            append(conn, pcm[resume_at:].tobytes())
            events += events_until(conn, "input_audio_buffer.committed")
        stops = [e.audio_end_ms for e in events if e.type == "input_audio_buffer.speech_stopped"]
        ended[eagerness or "server_vad"] = (min(stops) < resume_ms, answers[:1])
    assert ended["server_vad"][0], ended  # the pause is one a silence wait cuts
    assert not ended["low"][0], ended  # the model heard the sentence go on
    assert ended["low"][1][0] is not None and ended["low"][1][0] < 0.7, ended


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
