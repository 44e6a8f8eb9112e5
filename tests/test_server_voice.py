"""Voice through the official `openai` SDK over a real socket: the input audio buffer, server
VAD and its parameters, spoken answers, turn timing, G.711, voices, barge-in and truncation,
and the beta dialect.

The speech is real (espeak-ng), and so are the backends behind the server: the defaults, Silero
VAD, Whisper tiny.en and hibari. Audio is appended in 20 ms chunks as fast as the socket takes
it; the tests paced in real time are in test_server_voice_realtime.py. The manual-commit test
checks the transcript's words; test_default_pipeline.py checks them for hibari's voice too.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import math
import threading
import time
from collections.abc import Iterable
from typing import Any

import numpy as np
import openai
import pytest
from conftest import API_KEY, recv, recv_until
from scripted_llm import Text
from servers import ServerThread
from speech_fixtures import speak, with_silence

from openrealtime.audio.g711 import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode
from openrealtime.backends.registry import create_backends
from openrealtime.server.app import create_app

RATE = 24000
CHUNK_MS = 20
PCM_CHUNK = RATE * CHUNK_MS // 1000 * 2  # bytes of 20 ms of audio/pcm
VAD_FRAME_MS = 32
SPEECH_BEGINS_MS = 700
ESPEAK_WPM = 175  # espeak-ng's rate at speed 1.0

PROMPT = "hello world"
ANSWER = "Sure, the lights in the kitchen are now on."
OPENAI_VOICES = [
    "alloy",
    "ash",
    "ballad",
    "coral",
    "echo",
    "sage",
    "shimmer",
    "verse",
    "marin",
    "cedar",
]
TRANSCRIPTION = {"model": "whisper-1"}
TRANSCRIPTION_EVENTS = "conversation.item.input_audio_transcription."
# One paragraph, streamed slowly, so a response is still speaking when the user barges in.
LONG_ANSWER = (
    "Let me tell you a long story about the sea. The waves rolled in all day long. "
    "A small boat sailed past the old lighthouse. The keeper waved from the top of the tower. "
    "Gulls circled over the harbour and the fishermen mended their nets. "
    "In the evening the wind rose and the sky turned a deep shade of orange. "
    "Everyone went home for supper and the town fell quiet for the night."
)


# --- audio helpers -------------------------------------------------------------------------


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def trimmed(pcm: np.ndarray, fraction: float = 0.01) -> np.ndarray:
    """`pcm` without the near-silence espeak puts before and after the words."""
    level = np.abs(pcm.astype(np.int32))
    loud = np.flatnonzero(level > level.max() * fraction)
    return pcm[loud[0] : loud[-1] + 1]


@functools.cache
def utterance(text: str = PROMPT, rate: int = RATE, after_ms: int = 1500) -> np.ndarray:
    """`text` spoken, starting exactly SPEECH_BEGINS_MS into the stream, then `after_ms` of
    silence: enough for the default 500 ms silence to end the turn."""
    return with_silence(trimmed(speak(text, rate)), SPEECH_BEGINS_MS, after_ms, rate)


@functools.cache
def said(text: str = PROMPT) -> bytes:
    """`text` spoken with a little silence around it, as audio/pcm: for manual commits, whose
    whole buffer is transcribed (pocketsphinx is slow on long silences)."""
    return with_silence(trimmed(speak(text)), 200, 200).tobytes()


def silence(ms: int, rate: int = RATE) -> np.ndarray:
    return np.zeros(rate * ms // 1000, np.int16)


def append(conn: Any, raw: bytes, chunk_bytes: int = PCM_CHUNK) -> None:
    """Append `raw` in 20 ms chunks, as fast as the socket takes them."""
    for start in range(0, len(raw), chunk_bytes):
        conn.input_audio_buffer.append(audio=b64(raw[start : start + chunk_bytes]))


def pcm16(raw: bytes) -> np.ndarray:
    return np.frombuffer(raw, "<i2")


def rms(pcm: np.ndarray) -> float:
    return float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2))) if len(pcm) else 0.0


def output_audio(events: Iterable[Any]) -> bytes:
    return b"".join(
        base64.b64decode(e.delta) for e in events if e.type == "response.output_audio.delta"
    )


def expected_speech_s(text: str, speed: float = 1.0) -> float:
    return len(text.split()) / (ESPEAK_WPM * speed / 60)


# --- event helpers -------------------------------------------------------------------------


def of_type(events: Iterable[Any], event_type: str) -> list[Any]:
    return [e for e in events if e.type == event_type]


def one(events: Iterable[Any], event_type: str) -> Any:
    found = of_type(events, event_type)
    assert len(found) == 1, f"{len(found)} {event_type} in {[e.type for e in events]}"
    return found[0]


def position(events: list[Any], event_type: str) -> int:
    return [e.type for e in events].index(event_type)


def open_session(conn: Any, **session: Any) -> Any:
    """Wait for `session.created`, apply `session`, return the `session.updated` session."""
    assert recv(conn).type == "session.created"
    conn.session.update(session={"type": "realtime", **session})
    updated = recv(conn)
    assert updated.type == "session.updated", updated
    return updated.session


def settle(conn: Any) -> list[Any]:
    """Everything the server says until it has handled all sent so far (a clear is the marker:
    the server takes events in order, so its answer comes after theirs)."""
    conn.input_audio_buffer.clear()
    return recv_until(conn, "input_audio_buffer.cleared")


def user_text(text: str) -> dict[str, Any]:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


def retrieve_audio(conn: Any, item_id: str) -> bytes:
    conn.conversation.item.retrieve(item_id=item_id)
    retrieved = recv_until(conn, "conversation.item.retrieved")[-1]
    assert retrieved.item.id == item_id
    return base64.b64decode(retrieved.item.content[0].audio)


def llm_turns(request: dict[str, Any], role: str) -> list[str]:
    return [m["content"] for m in request["messages"] if m["role"] == role]


def manual(**extra: Any) -> dict[str, Any]:
    """Session settings for manual commits: no turn detection, text answers."""
    audio_input: dict[str, Any] = {"turn_detection": None, **extra}
    return {"output_modalities": ["text"], "audio": {"input": audio_input}}


def vad(output: str = "audio", **turn_detection: Any) -> dict[str, Any]:
    """Session settings for server VAD with these parameters, transcripts reported."""
    return {
        "output_modalities": [output],
        "audio": {
            "input": {
                "transcription": TRANSCRIPTION,
                "turn_detection": {"type": "server_vad", **turn_detection},
            }
        },
    }


# --- 1. the input audio buffer, committed by hand ------------------------------------------


def test_manual_commit_gives_an_audio_item_a_transcript_and_the_llm_the_words(client, llm) -> None:
    raw = said()
    llm.script(Text(["I heard you."]))
    with client.realtime.connect(model="gpt-realtime") as conn:
        session = open_session(conn, **manual(transcription=TRANSCRIPTION))
        assert session.audio.input.turn_detection is None
        append(conn, raw)
        conn.input_audio_buffer.commit()
        committed = recv(conn)
        assert committed.type == "input_audio_buffer.committed", committed
        added = recv(conn)
        assert added.type == "conversation.item.added"
        item = added.item
        assert (item.id, item.type, item.role) == (committed.item_id, "message", "user")
        assert [part.type for part in item.content] == ["input_audio"]
        assert item.content[0].audio is None  # events never echo the audio; retrieve does
        events = recv_until(conn, "conversation.item.input_audio_transcription.completed")
        assert not of_type(events, "error")
        completed = events[-1]
        assert (completed.item_id, completed.content_index) == (item.id, 0)
        transcript = completed.transcript
        assert transcript.lower().strip(" .!,") == PROMPT, transcript
        assert completed.usage.type == "duration"
        assert completed.usage.seconds == pytest.approx(len(raw) / 2 / RATE, abs=0.02)
        deltas = of_type(events, "conversation.item.input_audio_transcription.delta")
        assert deltas and {d.item_id for d in deltas} == {item.id}
        assert "".join(d.delta or "" for d in deltas) == transcript
        conn.response.create()
        done = recv_until(conn, "response.done")[-1].response
        assert done.status == "completed"
        assert done.output[0].content[0].text == "I heard you."
    assert llm_turns(llm.last_request, "user") == [transcript]


def test_retrieve_gives_back_the_committed_audio_exactly(client, llm) -> None:
    raw = said()
    with client.realtime.connect(model="gpt-realtime") as conn:
        open_session(conn, **manual())
        append(conn, raw)
        conn.input_audio_buffer.commit()
        item_id = recv_until(conn, "input_audio_buffer.committed")[-1].item_id
        conn.conversation.item.retrieve(item_id=item_id)
        retrieved = recv_until(conn, "conversation.item.retrieved")[-1].item
    assert retrieved.id == item_id and retrieved.role == "user"
    assert retrieved.content[0].type == "input_audio"
    assert retrieved.content[0].audio == b64(raw)


def test_commit_under_100ms_is_refused_and_the_buffer_keeps_its_audio(client, llm) -> None:
    first = silence(60).tobytes()
    second = said()
    with client.realtime.connect(model="gpt-realtime") as conn:
        open_session(conn, **manual())
        append(conn, first)
        conn.input_audio_buffer.commit(event_id="evt_too_short")
        error = recv(conn)
        assert error.type == "error", error
        assert error.error.code == "input_audio_buffer_commit_empty"
        assert error.error.event_id == "evt_too_short"
        assert "100ms" in error.error.message
        append(conn, second)
        conn.input_audio_buffer.commit()
        item_id = recv_until(conn, "input_audio_buffer.committed")[-1].item_id
        assert retrieve_audio(conn, item_id) == first + second


def test_invalid_base64_is_refused_as_invalid_audio(client, llm) -> None:
    kept = said()
    with client.realtime.connect(model="gpt-realtime") as conn:
        open_session(conn, **manual())
        append(conn, kept)
        conn.input_audio_buffer.append(audio="this is not base64!!", event_id="evt_bad_b64")
        error = recv(conn)
        assert error.type == "error", error
        assert (error.error.code, error.error.event_id) == ("invalid_audio", "evt_bad_b64")
        conn.input_audio_buffer.commit()
        item_id = recv_until(conn, "input_audio_buffer.committed")[-1].item_id
        assert retrieve_audio(conn, item_id) == kept


def test_odd_byte_count_for_pcm16_is_refused_and_the_buffer_keeps_what_it_held(client, llm) -> None:
    before, after = said(), silence(100).tobytes()
    with client.realtime.connect(model="gpt-realtime") as conn:
        open_session(conn, **manual())
        append(conn, before)
        conn.input_audio_buffer.append(audio=b64(b"\x01\x02\x03"), event_id="evt_odd")
        error = recv(conn)
        assert error.type == "error", error
        assert (error.error.code, error.error.event_id) == ("invalid_audio", "evt_odd")
        append(conn, after)
        conn.input_audio_buffer.commit()
        item_id = recv_until(conn, "input_audio_buffer.committed")[-1].item_id
        assert retrieve_audio(conn, item_id) == before + after


def test_clear_empties_the_buffer(client, llm) -> None:
    with client.realtime.connect(model="gpt-realtime") as conn:
        open_session(conn, **manual())
        append(conn, said())
        conn.input_audio_buffer.clear()
        assert recv(conn).type == "input_audio_buffer.cleared"
        conn.input_audio_buffer.commit()
        error = recv(conn)
        assert error.type == "error", error
        assert error.error.code == "input_audio_buffer_commit_empty"
        # New audio after the clear commits on its own.
        fresh = silence(200).tobytes()
        append(conn, fresh)
        conn.input_audio_buffer.commit()
        item_id = recv_until(conn, "input_audio_buffer.committed")[-1].item_id
        assert retrieve_audio(conn, item_id) == fresh


def test_without_transcription_configured_no_transcript_is_sent_yet_the_llm_hears(
    client, llm
) -> None:
    llm.script(Text(["Understood."]))
    with client.realtime.connect(model="gpt-realtime") as conn:
        session = open_session(conn, **manual())
        assert session.audio.input.transcription is None
        append(conn, said())
        conn.input_audio_buffer.commit()
        conn.response.create()
        events = recv_until(conn, "response.done")
        events += settle(conn)
    assert not [e.type for e in events if e.type.startswith(TRANSCRIPTION_EVENTS)]
    assert of_type(events, "response.done")[0].response.status == "completed"
    heard = llm_turns(llm.last_request, "user")
    assert len(heard) == 1 and heard[0].strip()


# --- 2. server VAD -------------------------------------------------------------------------


def test_vad_turn_is_committed_transcribed_and_answered_in_speech(client, llm) -> None:
    llm.script(Text(["Sure, the lights ", "in the kitchen ", "are now on."]))
    with client.realtime.connect(model="gpt-realtime") as conn:
        session = open_session(conn, audio={"input": {"transcription": TRANSCRIPTION}})
        assert session.output_modalities == ["audio"]
        assert session.audio.input.turn_detection.type == "server_vad"
        assert session.audio.input.turn_detection.create_response is True
        append(conn, utterance().tobytes())
        events = recv_until(conn, "response.done")
        events += settle(conn)
        item_id = one(events, "input_audio_buffer.committed").item_id
        committed_ms = len(retrieve_audio(conn, item_id)) / 2 / RATE * 1000

    started = one(events, "input_audio_buffer.speech_started")
    stopped = one(events, "input_audio_buffer.speech_stopped")
    assert started.item_id == stopped.item_id == item_id
    assert started.audio_start_ms < stopped.audio_end_ms
    order = [
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
        "response.created",
        "response.output_audio.delta",
        "response.done",
    ]
    assert [position(events, t) for t in order] == sorted(position(events, t) for t in order)
    transcript = one(events, "conversation.item.input_audio_transcription.completed").transcript
    assert transcript.strip()
    assert llm_turns(llm.last_request, "user") == [transcript]

    # The spoken answer: audio that is speech of about the answer's length.
    audio = pcm16(output_audio(events))
    seconds = len(audio) / RATE
    assert 0.5 * expected_speech_s(ANSWER) < seconds < 2 * expected_speech_s(ANSWER)
    assert seconds > 0.5
    assert rms(audio) > 1000
    deltas = of_type(events, "response.output_audio_transcript.delta")
    assert "".join(d.delta for d in deltas) == ANSWER
    assert one(events, "response.output_audio_transcript.done").transcript == ANSWER
    assert one(events, "response.output_audio.done").item_id == deltas[0].item_id
    assert not of_type(events, "response.output_text.delta")
    part_added = one(events, "response.content_part.added").part
    part_done = one(events, "response.content_part.done").part
    assert (part_added.type, part_done.type, part_done.transcript) == ("audio", "audio", ANSWER)

    response = one(events, "response.done").response
    assert response.status == "completed"
    assert response.output_modalities == ["audio"]
    [content] = response.output[0].content
    assert (content.type, content.transcript) == ("output_audio", ANSWER)
    usage = response.usage
    assert usage.input_token_details.audio_tokens == math.ceil(committed_ms / 100)
    assert usage.output_token_details.audio_tokens == math.ceil(seconds * 1000 / 50)
    assert usage.output_tokens == usage.output_token_details.audio_tokens + 7


def test_vad_committed_item_holds_the_audio_from_audio_start_to_audio_end(client, llm) -> None:
    with client.realtime.connect(model="gpt-realtime") as conn:
        open_session(conn, **vad(output="text", create_response=False))
        append(conn, utterance().tobytes())
        events = recv_until(conn, "input_audio_buffer.committed")
        item_ms = len(retrieve_audio(conn, events[-1].item_id)) / 2 / RATE * 1000
    started = one(events, "input_audio_buffer.speech_started")
    stopped = one(events, "input_audio_buffer.speech_stopped")
    assert item_ms == pytest.approx(stopped.audio_end_ms - started.audio_start_ms, abs=2)


def test_create_response_false_gives_the_turn_but_no_response(client, llm) -> None:
    with client.realtime.connect(model="gpt-realtime") as conn:
        open_session(conn, **vad(create_response=False))
        append(conn, utterance().tobytes())
        events = recv_until(conn, "conversation.item.input_audio_transcription.completed")
        events += settle(conn)
    one(events, "input_audio_buffer.speech_started")
    one(events, "input_audio_buffer.speech_stopped")
    committed = one(events, "input_audio_buffer.committed")
    assert one(events, "conversation.item.added").item.id == committed.item_id
    assert not [e.type for e in events if e.type.startswith("response.")]
    assert llm.requests == []


def test_high_threshold_ignores_quiet_speech_that_the_default_detects(client, llm) -> None:
    quiet = (utterance().astype(np.float64) * 0.05).astype(np.int16).tobytes()
    with client.realtime.connect(model="gpt-realtime") as conn:
        open_session(conn, **vad(create_response=False, threshold=0.99))
        append(conn, quiet)
        ignored = settle(conn)
        conn.session.update(
            session={
                "type": "realtime",
                "audio": {"input": {"turn_detection": {"type": "server_vad", "threshold": 0.5}}},
            }
        )
        assert recv(conn).session.audio.input.turn_detection.threshold == 0.5
        append(conn, quiet)
        detected = settle(conn)
    assert [e.type for e in ignored] == ["input_audio_buffer.cleared"]
    one(detected, "input_audio_buffer.speech_started")


def _turn_end_ms(client: Any, silence_duration_ms: int) -> tuple[int, int]:
    with client.realtime.connect(model="gpt-realtime") as conn:
        open_session(conn, **vad(create_response=False, silence_duration_ms=silence_duration_ms))
        append(conn, utterance(after_ms=1500).tobytes())
        events = recv_until(conn, "input_audio_buffer.speech_stopped")
    started = one(events, "input_audio_buffer.speech_started")
    return started.audio_start_ms, events[-1].audio_end_ms


def test_silence_duration_sets_when_speech_stops(client, llm) -> None:
    short_start, short_end = _turn_end_ms(client, 200)
    long_start, long_end = _turn_end_ms(client, 900)
    assert short_start == long_start
    # The same speech ends at the same frame; only the wait after it differs.
    assert long_end - short_end == pytest.approx(700, abs=VAD_FRAME_MS)
    speech_end_ms = SPEECH_BEGINS_MS + len(trimmed(speak(PROMPT))) * 1000 / RATE
    assert short_end > speech_end_ms + 200 - 2 * VAD_FRAME_MS


def test_semantic_vad_is_accepted_and_detects_a_turn(client, llm) -> None:
    llm.script(Text(["Yes?"]))
    with client.realtime.connect(model="gpt-realtime") as conn:
        session = open_session(
            conn,
            output_modalities=["text"],
            audio={
                "input": {
                    "transcription": TRANSCRIPTION,
                    "turn_detection": {"type": "semantic_vad", "eagerness": "high"},
                }
            },
        )
        detection = session.audio.input.turn_detection
        assert (detection.type, detection.eagerness) == ("semantic_vad", "high")
        append(conn, utterance().tobytes())
        events = recv_until(conn, "response.done")
    one(events, "input_audio_buffer.speech_started")
    one(events, "input_audio_buffer.speech_stopped")
    one(events, "input_audio_buffer.committed")
    assert one(events, "response.done").response.output[0].content[0].text == "Yes?"


def test_idle_timeout_after_a_response_triggers_a_new_response(client, llm) -> None:
    llm.script(Text(["Hello."]), Text(["Are you still there?"]))
    with client.realtime.connect(model="gpt-realtime") as conn:
        session = open_session(conn, **vad(output="text", idle_timeout_ms=5000))
        assert session.audio.input.turn_detection.idle_timeout_ms == 5000
        conn.session.update(session={"type": "realtime", **vad(idle_timeout_ms=4999)})
        error = recv(conn)
        assert error.type == "error", error  # 5000 ms is the least OpenAI accepts
        assert error.error.param == "session.audio.input.turn_detection.idle_timeout_ms"
        append(conn, utterance().tobytes())
        first = recv_until(conn, "response.done")
        append(conn, silence(5500).tobytes())
        events = recv_until(conn, "response.done")
    timeout = one(events, "input_audio_buffer.timeout_triggered")
    assert timeout.audio_end_ms > timeout.audio_start_ms
    # 5 s of silence after the answer ended: when it ended, the server had been sent between
    # the end of the turn and all the audio that came with it.
    turn_end_ms = one(first, "input_audio_buffer.speech_stopped").audio_end_ms
    sent_ms = len(utterance()) * 1000 / RATE
    assert turn_end_ms + 5000 <= timeout.audio_end_ms <= sent_ms + 5000 + 2 * VAD_FRAME_MS
    assert (
        position(events, "input_audio_buffer.timeout_triggered")
        < position(events, "input_audio_buffer.committed")  # what the buffer held
        < position(events, "response.created")
    )
    assert events[-1].response.output[0].content[0].text == "Are you still there?"
    assert not of_type(events, "input_audio_buffer.speech_started")
    assert len(llm.requests) == 2


def test_idle_timeout_spans_the_silence_since_the_response(client, llm) -> None:
    llm.script(Text(["Hello."]), Text(["Still there?"]))
    with client.realtime.connect(model="gpt-realtime") as conn:
        open_session(conn, **vad(output="text", idle_timeout_ms=5000))
        conn.conversation.item.create(item=user_text("Hi."))
        conn.response.create()
        recv_until(conn, "response.done")  # before any audio: the silence counts from 0 ms
        append(conn, silence(5500).tobytes())
        timeout = recv_until(conn, "input_audio_buffer.timeout_triggered")[-1]
    assert timeout.audio_end_ms == pytest.approx(5000, abs=2 * VAD_FRAME_MS)
    # OpenAI: "the difference between the start and end values will roughly match the
    # configured timeout".
    assert timeout.audio_end_ms - timeout.audio_start_ms == pytest.approx(5000, abs=100)


# --- 3. speech timing ----------------------------------------------------------------------


# espeak-ng's output varies slightly from call to call, and Silero's verdict on a fading last
# syllable with it; these sentences end within 80 ms whatever the variant.
@pytest.mark.parametrize(
    ("text", "prefix_padding_ms", "silence_duration_ms"),
    [
        ("hello world", 300, 500),
        ("hello world", 100, 200),
        ("good morning", 300, 500),
        ("turn on the lights in the kitchen", 300, 500),
        ("set a timer for ten minutes", 300, 500),
    ],
)
def test_reported_speech_boundaries_match_the_audio(
    client, llm, text, prefix_padding_ms, silence_duration_ms
) -> None:
    """`audio_start_ms` includes the prefix padding and `audio_end_ms` the silence wait, as
    OpenAI documents; without them they are within 100 ms of where the speech begins and ends."""
    spoken = trimmed(speak(text))
    true_start_ms = SPEECH_BEGINS_MS
    true_end_ms = SPEECH_BEGINS_MS + len(spoken) * 1000 / RATE
    with client.realtime.connect(model="gpt-realtime") as conn:
        open_session(
            conn,
            **vad(
                create_response=False,
                prefix_padding_ms=prefix_padding_ms,
                silence_duration_ms=silence_duration_ms,
            ),
        )
        append(conn, utterance(text).tobytes())
        events = recv_until(conn, "input_audio_buffer.speech_stopped")
    started = one(events, "input_audio_buffer.speech_started")
    start_error = started.audio_start_ms + prefix_padding_ms - true_start_ms
    end_error = events[-1].audio_end_ms - silence_duration_ms - true_end_ms
    print(f"\n{text!r}: start {start_error:+.0f} ms, end {end_error:+.0f} ms")
    # A VAD sees speech only once a frame holds some of it, and never before it begins.
    assert -VAD_FRAME_MS <= start_error <= 100, start_error
    # The end is estimated from Silero's decaying tail (0-140 ms past the last sound), less
    # RELEASE_MS (72 ms): within 80 ms either way.
    assert abs(end_error) <= 80, end_error


class Stalls:
    """The longest a plain Python thread of this process waited to run. The server runs in
    this process: whatever holds the GIL that long freezes its event loop, and every session."""

    def __init__(self) -> None:
        self.worst_ms = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._tick, name="stalls", daemon=True)

    def _tick(self) -> None:
        last = time.perf_counter()
        while not self._stop.wait(0.002):
            now = time.perf_counter()
            self.worst_ms = max(self.worst_ms, (now - last) * 1000)
            last = now

    def __enter__(self) -> Stalls:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()


def test_first_turn_on_a_fresh_server_does_not_freeze_it(settings, llm) -> None:
    backends = create_backends(settings)  # a recognizer with no decoder built yet
    try:
        with ServerThread(create_app(settings, backends)) as server:
            client = openai.OpenAI(base_url=server.url + "/v1", api_key=API_KEY)
            with client.realtime.connect(model="gpt-realtime") as conn:
                open_session(conn, **vad(output="text", create_response=False))
                with Stalls() as stalls:
                    append(conn, utterance().tobytes())
                    events = recv_until(conn, TRANSCRIPTION_EVENTS + "completed")
    finally:
        asyncio.run(backends.stt.aclose())
    one(events, "input_audio_buffer.speech_stopped")
    assert stalls.worst_ms < 250, f"the server froze for {stalls.worst_ms:.0f} ms"


# --- 4. G.711 ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "encode", "decode"),
    [("audio/pcmu", ulaw_encode, ulaw_decode), ("audio/pcma", alaw_encode, alaw_decode)],
)
def test_g711_in_and_out(client, llm, fmt, encode, decode) -> None:
    llm.script(Text(["Sure, the lights ", "in the kitchen ", "are now on."]))
    encoded = encode(utterance(rate=8000))
    with client.realtime.connect(model="gpt-realtime") as conn:
        session = open_session(
            conn,
            audio={
                "input": {"format": {"type": fmt}, "transcription": TRANSCRIPTION},
                "output": {"format": {"type": fmt}},
            },
        )
        assert session.audio.input.format.type == session.audio.output.format.type == fmt
        append(conn, encoded, chunk_bytes=8000 * CHUNK_MS // 1000)
        events = recv_until(conn, "response.done")
        item_id = one(events, "input_audio_buffer.committed").item_id
        committed = retrieve_audio(conn, item_id)
    started = one(events, "input_audio_buffer.speech_started")
    stopped = one(events, "input_audio_buffer.speech_stopped")
    assert started.audio_start_ms + 300 == pytest.approx(SPEECH_BEGINS_MS, abs=100)
    # The item keeps the G.711 bytes as sent, one byte per 8 kHz sample.
    assert committed in encoded
    assert len(committed) <= (stopped.audio_end_ms - started.audio_start_ms) * 8 + 8
    assert one(events, "conversation.item.input_audio_transcription.completed").transcript.strip()
    response = events[-1].response
    assert response.status == "completed"
    assert response.audio.output.format.type == fmt
    raw = output_audio(events)
    audio = decode(raw)
    assert len(audio) == len(raw)
    seconds = len(audio) / 8000
    assert 0.5 * expected_speech_s(ANSWER) < seconds < 2 * expected_speech_s(ANSWER)
    assert rms(audio) > 1000


# --- 5. voices -----------------------------------------------------------------------------


def test_every_openai_voice_and_a_backend_voice_are_accepted(client, llm) -> None:
    with client.realtime.connect(model="gpt-realtime") as conn:
        assert recv(conn).type == "session.created"
        for voice in [*OPENAI_VOICES, "heart"]:  # hibari's own name for its voice
            conn.session.update(session={"type": "realtime", "audio": {"output": {"voice": voice}}})
            updated = recv(conn)
            assert updated.type == "session.updated", (voice, updated)
            assert updated.session.audio.output.voice == voice


def test_unknown_voice_is_refused_and_the_voice_kept(client, llm) -> None:
    with client.realtime.connect(model="gpt-realtime") as conn:
        open_session(conn, audio={"output": {"voice": "echo"}})
        conn.session.update(
            session={"type": "realtime", "audio": {"output": {"voice": "no-such-voice"}}},
            event_id="evt_voice",
        )
        error = recv(conn)
        assert error.type == "error", error
        assert error.error.code == "invalid_value"
        assert error.error.param == "session.audio.output.voice"
        assert error.error.event_id == "evt_voice"
        assert "no-such-voice" in error.error.message
        conn.session.update(session={"type": "realtime", "instructions": "Be brief."})
        assert recv(conn).session.audio.output.voice == "echo"


def _spoken_answer(conn: Any, llm: Any, text: str) -> tuple[list[Any], np.ndarray]:
    """Ask for a spoken answer to a typed question; the answer and its audio."""
    llm.script(Text([text]))
    conn.conversation.item.create(item=user_text("Say something."))
    conn.response.create()
    events = recv_until(conn, "response.done")
    assert events[-1].response.status == "completed"
    return events, pcm16(output_audio(events))


def test_voice_cannot_change_once_the_session_has_spoken(client, llm) -> None:
    with client.realtime.connect(model="gpt-realtime") as conn:
        open_session(conn, audio={"output": {"voice": "ash"}})
        _, audio = _spoken_answer(conn, llm, "Hello there.")
        assert rms(audio) > 1000
        conn.session.update(
            session={"type": "realtime", "audio": {"output": {"voice": "coral"}}},
            event_id="evt_new_voice",
        )
        error = recv(conn)
        assert error.type == "error", error
        assert (error.error.code, error.error.event_id) == ("cannot_update_voice", "evt_new_voice")
        # The session goes on, with its voice.
        conn.session.update(session={"type": "realtime", "instructions": "Be brief."})
        assert recv(conn).session.audio.output.voice == "ash"


def test_faster_speed_gives_shorter_audio_for_the_same_text(client, llm) -> None:
    durations = {}
    for speed in (1.0, 1.5):
        with client.realtime.connect(model="gpt-realtime") as conn:
            session = open_session(conn, audio={"output": {"speed": speed}})
            assert session.audio.output.speed == speed
            _, audio = _spoken_answer(conn, llm, ANSWER)
            durations[speed] = len(audio) / RATE
            assert rms(audio) > 1000
    assert durations[1.5] < 0.8 * durations[1.0]
    assert durations[1.0] == pytest.approx(expected_speech_s(ANSWER), rel=0.5)


# --- 6. barge-in and truncation ------------------------------------------------------------


def long_answer(delay: float) -> Text:
    """LONG_ANSWER a word at a time, `delay` apart: still being spoken for seconds."""
    words = LONG_ANSWER.split(" ")
    return Text([word + " " for word in words[:-1]] + [words[-1]], delay=delay)


def audio_ms(events: Iterable[Any]) -> float:
    return len(output_audio(events)) / 2 / RATE * 1000


def speak_until_audio(conn: Any, ms: float) -> list[Any]:
    """Receive while the answer is spoken, until at least `ms` of its audio has come."""
    events: list[Any] = []
    while audio_ms(events) < ms:
        events += recv_until(conn, "response.output_audio.delta")
    return events


def test_speech_during_a_spoken_answer_cancels_it_and_truncates_it_to_what_was_sent(
    client, llm
) -> None:
    llm.script(long_answer(delay=0.05), Text(["Okay."]))
    with client.realtime.connect(model="gpt-realtime") as conn:
        open_session(conn, **vad())
        append(conn, utterance().tobytes())
        before = speak_until_audio(conn, 1000)
        assistant_id = of_type(before, "response.output_audio.delta")[0].item_id
        append(conn, utterance().tobytes())
        during = recv_until(conn, "conversation.item.truncated")
        after = recv_until(conn, "response.done")
    events = before + during
    assert [e.type for e in events].count("input_audio_buffer.speech_started") == 2
    barge_in = (
        position(events, "input_audio_buffer.speech_started")
        + 1
        + [e.type for e in events][
            position(events, "input_audio_buffer.speech_started") + 1 :
        ].index("input_audio_buffer.speech_started")
    )
    cancelled = one(during, "response.done")
    assert position(events, "response.done") > barge_in
    assert cancelled.response.status == "cancelled"
    assert cancelled.response.status_details.reason == "turn_detected"
    assert cancelled.response.output[0].status == "incomplete"
    truncated = during[-1]
    assert (truncated.item_id, truncated.content_index) == (assistant_id, 0)
    sent_ms = audio_ms(events)
    assert 0 < truncated.audio_end_ms <= sent_ms
    assert truncated.audio_end_ms == pytest.approx(sent_ms, abs=1)  # no playback to go by

    # The next turn is answered, and the model reads only what had been said.
    assert after[-1].response.status == "completed"
    assert one(after, "input_audio_buffer.speech_stopped")
    first, second = llm.requests
    assert [m["role"] for m in second["messages"]] == ["system", "user", "assistant", "user"]
    heard = llm_turns(second, "assistant")[0]
    assert heard.split() and len(heard.split()) < len(LONG_ANSWER.split())
    assert LONG_ANSWER.startswith(heard)
    assert len(first["messages"]) == 2


def test_barge_in_after_a_whole_sentence_leaves_the_model_that_sentence(client, llm) -> None:
    still_writing = "This is the part that is still being written when the user speaks"
    words = ["Hello there. "] + [word + " " for word in still_writing.split()]
    llm.script(Text(words, delay=0.3), Text(["Okay."]))
    with client.realtime.connect(model="gpt-realtime") as conn:
        open_session(conn, **vad())
        append(conn, utterance().tobytes())
        events: list[Any] = []
        # "Hello there." has been spoken (sent) in full; the next sentence is still coming.
        while "This is " not in "".join(
            e.delta for e in of_type(events, "response.output_audio_transcript.delta")
        ):
            events += recv_until(conn, "response.output_audio_transcript.delta")
        append(conn, utterance().tobytes())
        events += recv_until(conn, "response.done")
        events += recv_until(conn, "response.done")
    cancelled = of_type(events, "response.done")[0].response
    assert cancelled.status_details.reason == "turn_detected"
    assert llm_turns(llm.requests[1], "assistant") == ["Hello there."]


def test_interrupt_response_false_lets_the_answer_finish(client, llm) -> None:
    llm.script(long_answer(delay=0.03))
    with client.realtime.connect(model="gpt-realtime") as conn:
        open_session(conn, **vad(interrupt_response=False))
        append(conn, utterance().tobytes())
        events = speak_until_audio(conn, 500)
        append(conn, utterance().tobytes())
        events += recv_until(conn, "response.done")
        events += settle(conn)
    starts = [i for i, e in enumerate(events) if e.type == "input_audio_buffer.speech_started"]
    assert len(starts) == 2
    assert starts[1] < position(events, "response.done")  # the user spoke over the answer
    assert not of_type(events, "conversation.item.truncated")
    [done] = of_type(events, "response.done")
    assert done.response.status == "completed"
    assert done.response.output[0].content[0].transcript == LONG_ANSWER
    # The turn spoken over the answer is kept; it gets no answer of its own.
    assert len(of_type(events, "input_audio_buffer.committed")) == 2
    assert len(llm.requests) == 1


TRUNCATED_ANSWER = (
    "The first sentence is short. The second sentence is a little longer than that. "
    "And the third one ends it."
)


def test_client_truncate_cuts_the_audio_and_what_the_model_reads(client, llm) -> None:
    with client.realtime.connect(model="gpt-realtime") as conn:
        open_session(conn)
        events, audio = _spoken_answer(conn, llm, TRUNCATED_ANSWER)
        item_id = one(events, "response.output_item.done").item.id
        full_ms = len(audio) * 1000 / RATE
        assert full_ms > 2000

        conn.conversation.item.truncate(
            item_id=item_id, content_index=0, audio_end_ms=int(full_ms) + 1000, event_id="evt_past"
        )
        error = recv(conn)
        assert error.type == "error", error
        assert (error.error.code, error.error.param) == ("invalid_value", "audio_end_ms")
        assert error.error.event_id == "evt_past"

        conn.conversation.item.truncate(item_id=item_id, content_index=0, audio_end_ms=500)
        truncated = recv(conn)
        assert truncated.type == "conversation.item.truncated", truncated
        assert (truncated.item_id, truncated.content_index, truncated.audio_end_ms) == (
            item_id,
            0,
            500,
        )
        assert len(retrieve_audio(conn, item_id)) == RATE // 2 * 2  # 500 ms of PCM16

        llm.script(Text(["Go on."]))
        conn.conversation.item.create(item=user_text("And then?"))
        conn.response.create()
        recv_until(conn, "response.done")
    heard = llm_turns(llm.last_request, "assistant")[0]
    assert 0 < len(heard.split()) < len(TRUNCATED_ANSWER.split())
    assert TRUNCATED_ANSWER.startswith(heard)


# --- 8. the beta dialect -------------------------------------------------------------------


def test_beta_voice_turn(server, llm) -> None:
    llm.script(Text(["Sure, the lights ", "in the kitchen ", "are now on."]))
    client = openai.OpenAI(
        base_url=server.url + "/v1",
        api_key=API_KEY,
        websocket_base_url=f"ws://127.0.0.1:{server.port}/v1",
    )
    with client.beta.realtime.connect(model="gpt-4o-realtime-preview") as conn:
        assert recv(conn, beta=True).type == "session.created"
        conn.session.update(
            session={
                "modalities": ["audio", "text"],
                "voice": "verse",
                "input_audio_format": "pcm16",
                "output_audio_format": "pcm16",
                "input_audio_transcription": {"model": "whisper-1"},
                "turn_detection": {"type": "server_vad"},
            }
        )
        updated = recv(conn, beta=True)
        assert updated.type == "session.updated", updated
        session = updated.session
        assert (session.voice, session.input_audio_format) == ("verse", "pcm16")
        assert session.turn_detection.type == "server_vad"
        assert session.input_audio_transcription.model == "whisper-1"
        append(conn, utterance().tobytes())
        events = recv_until(conn, "response.done", beta=True)
    types = [e.type for e in events]
    one(events, "input_audio_buffer.speech_started")
    one(events, "input_audio_buffer.speech_stopped")
    committed = one(events, "input_audio_buffer.committed")
    created = of_type(events, "conversation.item.created")
    assert [c.item.role for c in created] == ["user", "assistant"]
    assert created[0].item.id == committed.item_id
    assert created[0].item.content[0].type == "input_audio"
    assert one(events, "conversation.item.input_audio_transcription.completed").transcript.strip()
    assert not [t for t in types if t.startswith(("response.output_audio", "response.output_text"))]
    audio = pcm16(
        b"".join(base64.b64decode(e.delta) for e in events if e.type == "response.audio.delta")
    )
    assert len(audio) / RATE > 0.5 and rms(audio) > 1000
    transcript = "".join(e.delta for e in of_type(events, "response.audio_transcript.delta"))
    assert transcript == ANSWER
    assert one(events, "response.audio_transcript.done").transcript == ANSWER
    one(events, "response.audio.done")
    response = events[-1].response
    assert response.status == "completed"
    assert response.output[0].content[0].type == "audio"
    assert response.output[0].content[0].transcript == ANSWER
