"""Voice paced in real time through the async `openai` SDK: 20 ms chunks sent every 20 ms, as a
microphone would, while every server event is received (and strictly validated) as it comes.

These measure what a user feels: how long after the last word `speech_stopped` arrives (the
product requirement: under `silence_duration_ms` + 100 ms), and how soon speech cuts off an
answer. They take wall-clock time, so CI runs them in their own step (`-m realtime`).

The server runs as `openrealtime serve` in a process of its own, as it does in production: in
this one it would share the GIL with the client, and pocketsphinx, which holds the GIL while it
decodes, would stall the client's pacing and blur what is measured.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import numpy as np
import openai
import pytest
from conftest import API_KEY, arecv, arecv_until, recv, recv_until
from scripted_llm import Text
from servers import free_port
from speech_fixtures import speak
from test_server_voice import (
    ANSWER,
    CHUNK_MS,
    LONG_ANSWER,
    PCM_CHUNK,
    RATE,
    SPEECH_BEGINS_MS,
    TRANSCRIPTION,
    TRANSCRIPTION_EVENTS,
    VAD_FRAME_MS,
    append,
    expected_speech_s,
    long_answer,
    output_audio,
    pcm16,
    rms,
    said,
    trimmed,
    utterance,
)

pytestmark = pytest.mark.realtime

SILENCE_DURATION_MS = 500
LATENCY_BUDGET_MS = SILENCE_DURATION_MS + 100


@pytest.fixture(scope="module")
def own_server(settings: Any) -> Iterator[str]:
    """`openrealtime serve` in its own process, against the scripted LLM; its base URL."""
    port = free_port()
    command = [
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
        "--log-level",
        "warning",
    ]
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            while not _healthy(url):
                if process.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    pytest.fail(f"openrealtime serve did not start:\n{log.read().decode()}")
                time.sleep(0.1)
            _warm_up(url)
            yield url
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/healthz", timeout=1) as answer:
            return bool(answer.status == 200)
    except (urllib.error.URLError, ConnectionError):
        return False


def _warm_up(url: str) -> None:
    """One transcribed turn, so no measured turn pays for loading models (see
    test_first_turn_on_a_fresh_server_does_not_freeze_it in test_server_voice.py)."""
    client = openai.OpenAI(base_url=url + "/v1", api_key=API_KEY)
    with client.realtime.connect(model="gpt-realtime") as conn:
        assert recv(conn).type == "session.created"
        conn.session.update(
            session={
                "type": "realtime",
                "audio": {"input": {"turn_detection": None, "transcription": TRANSCRIPTION}},
            }
        )
        append(conn, said())
        conn.input_audio_buffer.commit()
        recv_until(conn, TRANSCRIPTION_EVENTS + "completed")


@pytest.fixture
def aclient(own_server: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=own_server + "/v1", api_key=API_KEY)


class Received:
    """Every server event, validated, with the monotonic time it arrived."""

    def __init__(self, conn: Any) -> None:
        self.events: list[tuple[float, Any]] = []
        self._conn = conn
        self._arrived = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            event = await arecv(self._conn)
            self.events.append((time.monotonic(), event))
            self._arrived.set()

    async def wait_for(self, event_type: str, count: int = 1, timeout: float = 30) -> float:
        """Wait until `count` events of `event_type` have come; the arrival time of the last."""
        deadline = time.monotonic() + timeout
        while True:
            if self._task.done():
                self._task.result()  # a validation failure surfaces here
            arrivals = [t for t, e in self.events if e.type == event_type]
            if len(arrivals) >= count:
                return arrivals[count - 1]
            self._arrived.clear()
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"no {event_type} in {[e.type for _, e in self.events]}"
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), remaining)

    def of_type(self, event_type: str) -> list[Any]:
        return [e for _, e in self.events if e.type == event_type]

    def types(self) -> list[str]:
        return [e.type for _, e in self.events]

    async def close(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


async def send_paced(conn: Any, pcm: np.ndarray) -> list[float]:
    """Send `pcm` as a microphone would: each 20 ms chunk once it has been "recorded", on an
    absolute schedule so delays do not add up. Returns when each chunk was sent."""
    raw = pcm.tobytes()
    chunks = [raw[i : i + PCM_CHUNK] for i in range(0, len(raw), PCM_CHUNK)]
    sent: list[float] = []
    start = time.monotonic()
    for index, chunk in enumerate(chunks):
        await asyncio.sleep(max(0.0, start + (index + 1) * CHUNK_MS / 1000 - time.monotonic()))
        await conn.input_audio_buffer.append(audio=base64.b64encode(chunk).decode())
        sent.append(time.monotonic())
    return sent


class PacingLost(RuntimeError):
    """The test could not keep 20 ms pacing where it mattered (an overloaded machine): the
    timing measured would not be the server's."""


def check_pacing(sent: list[float], first: int, last: int) -> None:
    worst_ms = float(np.diff(sent[first : last + 1], prepend=sent[first]).max()) * 1000
    if worst_ms > 5 * CHUNK_MS:
        raise PacingLost(f"chunks {first}-{last} were sent up to {worst_ms:.0f} ms apart")


def last_speech_chunk(text: str) -> int:
    """Index of the 20 ms chunk of `utterance(text)` holding its last sample of speech."""
    last_sample = SPEECH_BEGINS_MS * RATE // 1000 + len(trimmed(speak(text))) - 1
    return last_sample * 2 // PCM_CHUNK


async def open_session(conn: Any, **session: Any) -> None:
    assert (await arecv(conn)).type == "session.created"
    await conn.session.update(session={"type": "realtime", **session})
    assert (await arecv_until(conn, "session.updated"))[-1].type == "session.updated"


def vad_session(output: str = "audio") -> dict[str, Any]:
    return {
        "output_modalities": [output],
        "audio": {
            "input": {
                "transcription": TRANSCRIPTION,
                "turn_detection": {
                    "type": "server_vad",
                    "silence_duration_ms": SILENCE_DURATION_MS,
                },
            }
        },
    }


async def stopped_after_last_word_ms(conn: Any, text: str) -> tuple[Received, float]:
    """Stream `utterance(text)` paced; ms from sending its last word to `speech_stopped`."""
    received = Received(conn)
    sent = await send_paced(conn, utterance(text))
    stopped_at = await received.wait_for("input_audio_buffer.speech_stopped")
    last_word = last_speech_chunk(text)
    # The server could decide once it had the audio up to audio_end_ms (and a VAD frame more):
    # up to there, the client must have kept time for the figure to be the server's.
    [stopped] = received.of_type("input_audio_buffer.speech_stopped")
    decidable = min((stopped.audio_end_ms + VAD_FRAME_MS) // CHUNK_MS, len(sent) - 1)
    check_pacing(sent, last_word - 5, decidable)
    latency_ms = (stopped_at - sent[last_word]) * 1000
    end_error_ms = stopped.audio_end_ms - SILENCE_DURATION_MS - (last_word + 1) * CHUNK_MS
    print(
        f"\n{text!r}: speech_stopped {latency_ms:.0f} ms after the last word was sent "
        f"(budget {LATENCY_BUDGET_MS}); audio_end_ms - silence is {end_error_ms:+.0f} ms from "
        f"the end of its chunk; {(stopped_at - sent[decidable]) * 1000:.0f} ms after the "
        "server had the audio to decide"
    )
    return received, latency_ms


async def test_paced_voice_turn_is_detected_in_time_transcribed_and_answered(aclient, llm) -> None:
    llm.script(Text(["Sure, the lights ", "in the kitchen ", "are now on."]))
    async with aclient.realtime.connect(model="gpt-realtime") as conn:
        await open_session(conn, **vad_session())
        received, latency_ms = await stopped_after_last_word_ms(conn, "good morning")
        try:
            await received.wait_for("response.done")
        finally:
            await received.close()
    assert received.types().count("input_audio_buffer.speech_started") == 1
    assert received.types().count("input_audio_buffer.speech_stopped") == 1
    [completed] = received.of_type("conversation.item.input_audio_transcription.completed")
    assert completed.transcript.strip()
    [done] = received.of_type("response.done")
    assert done.response.status == "completed"
    assert done.response.output[0].content[0].transcript == ANSWER
    audio = pcm16(output_audio(e for _, e in received.events))
    seconds = len(audio) / RATE
    assert 0.5 * expected_speech_s(ANSWER) < seconds < 2 * expected_speech_s(ANSWER)
    assert rms(audio) > 1000
    # The end of speech is estimated from the VAD's decaying tail (core/turns.py), so a turn
    # that ends abruptly may be called up to three frames (96 ms) before the full silence.
    assert SILENCE_DURATION_MS - 3 * VAD_FRAME_MS <= latency_ms < LATENCY_BUDGET_MS


async def test_paced_turn_ending_in_a_fading_word_stops_in_time(aclient, llm) -> None:
    text = "turn on the lights in the kitchen"
    async with aclient.realtime.connect(model="gpt-realtime") as conn:
        session = vad_session(output="text")
        session["audio"]["input"]["turn_detection"]["create_response"] = False
        await open_session(conn, **session)
        received, latency_ms = await stopped_after_last_word_ms(conn, text)
        await received.close()
    assert received.types().count("input_audio_buffer.speech_stopped") == 1
    # The end of speech is estimated from the VAD's decaying tail (core/turns.py), so a turn
    # that ends abruptly may be called up to three frames (96 ms) before the full silence.
    assert SILENCE_DURATION_MS - 3 * VAD_FRAME_MS <= latency_ms < LATENCY_BUDGET_MS


async def test_paced_barge_in_cancels_a_spoken_answer_and_truncates_it(aclient, llm) -> None:
    llm.script(long_answer(delay=0.05), Text(["Okay."]))
    async with aclient.realtime.connect(model="gpt-realtime") as conn:
        await open_session(conn, **vad_session())
        received = Received(conn)
        try:
            await send_paced(conn, utterance())
            await received.wait_for("response.output_audio.delta")
            # The user speaks again while the answer is still being spoken.
            sent = await send_paced(conn, utterance())
            cancelled_at = await received.wait_for("response.done")
            await received.wait_for("response.done", count=2)
        finally:
            await received.close()
    types = received.types()
    first_word = SPEECH_BEGINS_MS // CHUNK_MS
    cut_ms = (cancelled_at - sent[first_word]) * 1000
    # Stream time restarts at the second utterance's first chunk; the VAD needed its audio up
    # to a frame past the start it reported (which includes 300 ms of prefix padding).
    started = received.of_type("input_audio_buffer.speech_started")[1]
    second_begins_ms = len(utterance()) * 1000 // RATE
    detected_ms = started.audio_start_ms + 300 + 2 * VAD_FRAME_MS - second_begins_ms
    check_pacing(sent, first_word - 5, detected_ms // CHUNK_MS + 1)
    print(f"answer cancelled {cut_ms:.0f} ms after the user's first word was sent")

    starts = [i for i, t in enumerate(types) if t == "input_audio_buffer.speech_started"]
    assert len(starts) == 2
    dones = [i for i, t in enumerate(types) if t == "response.done"]
    assert starts[1] < dones[0]
    first, second = received.of_type("response.done")
    assert first.response.status == "cancelled"
    assert first.response.status_details.reason == "turn_detected"
    [truncated] = received.of_type("conversation.item.truncated")
    assert truncated.item_id == first.response.output[0].id
    before_cut = [e for _, e in received.events[: types.index("conversation.item.truncated")]]
    sent_ms = len(output_audio(before_cut)) / 2 / RATE * 1000
    assert 0 < truncated.audio_end_ms <= sent_ms
    assert second.response.status == "completed"
    # Speech cuts the answer off within a few VAD frames of the first word.
    assert cut_ms < 250
    heard = [m["content"] for m in llm.requests[1]["messages"] if m["role"] == "assistant"]
    assert len(heard) == 1 and LONG_ANSWER.startswith(heard[0])
    assert 0 < len(heard[0].split()) < len(LONG_ANSWER.split())
