"""Spoken conversations over the Realtime API, as a paced microphone holds them: the client
side of `voice_turn` and `concurrent_conversations`.

A session streams one continuous real-time microphone: 20 ms chunks of PCM16 at RATE, each sent
on its own schedule (t0 + k x 20 ms, whatever happened before), with server VAD and input
transcription configured (`payloads.session_update`). A turn is LEAD_MS of silence, a sentence,
then silence until `response.done` (and, with `play_answers`, until the answer's audio has
played from its first delta), then TAIL_MS more: the client never talks over the answer.

Every time is the client's `time.monotonic()`, one clock for every process on the machine.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection

from .clients import connect_session, start_session
from .payloads import RATE, SILENCE_CHUNK, Utterance, session_update
from .stats import summary_ms

LEAD_MS, TAIL_MS = 200, 400

now = time.monotonic

EV_STARTED = "input_audio_buffer.speech_started"
EV_STOPPED = "input_audio_buffer.speech_stopped"
EV_TRANSCRIPT = "conversation.item.input_audio_transcription.completed"
EV_CREATED = "response.created"
EV_TEXT = "response.output_audio_transcript.delta"
EV_AUDIO = "response.output_audio.delta"
EV_DONE = "response.done"


@dataclass
class Turn:
    session: int
    index: int
    text: str
    speech_ms: float
    end_of_speech: float = 0.0  # send time of the chunk holding the last speech sample
    events: dict[str, float] = field(default_factory=dict)  # first arrival of each type
    counts: dict[str, int] = field(default_factory=dict)
    transcript: str | None = None
    response_status: str | None = None
    answer_audio_s: float = 0.0
    llm_request: float | None = None
    contended: bool = False


class Microphone:
    """One paced stream: chunk k leaves at t0 + k x 20 ms; records how late each one was."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.t0 = now() + 0.02
        self.k = 0
        self.lags: list[float] = []

    async def send(self, message: str) -> float:
        due = self.t0 + self.k * 0.02
        self.k += 1
        delay = due - now()
        if delay > 0:
            await asyncio.sleep(delay)
        sent = now()
        self.lags.append(sent - due)
        await self.ws.send(message)
        return sent

    async def silence_for(self, ms: float) -> None:
        for _ in range(round(ms / 20)):
            await self.send(SILENCE_CHUNK)

    async def silence_until(self, t: float) -> None:
        while now() < t:
            await self.send(SILENCE_CHUNK)


async def run_session(
    session: int,
    url: str,
    utterances: list[Utterance],
    start_delay: float,
    turns: list[Turn],
    errors: list[str],
    send_lags: list[float],
    *,
    play_answers: bool = False,
) -> None:
    """Speak `utterances` in turn in one session, appending each finished Turn to `turns`."""
    await asyncio.sleep(start_delay)
    ws = await connect_session(url)
    current: list[Turn | None] = [None]
    done = asyncio.Event()

    async def receive() -> None:
        async for raw in ws:
            t = now()
            event = orjson.loads(raw)
            kind = event["type"]
            if kind == "error":
                errors.append(f"session {session}: {event['error']}")
                continue
            turn = current[0]
            if turn is None:
                continue
            turn.events.setdefault(kind, t)
            turn.counts[kind] = turn.counts.get(kind, 0) + 1
            if kind == EV_AUDIO:
                turn.answer_audio_s += len(event["delta"]) * 3 / 4 / 2 / RATE
            elif kind == EV_TRANSCRIPT:
                turn.transcript = event.get("transcript")
            elif kind == EV_DONE:
                turn.response_status = event["response"]["status"]
                done.set()

    try:
        instructions = f"Voice benchmark session {session}. Answer briefly."
        await start_session(ws, session_update(instructions, audio_out=True, listen=True))
        receiver = asyncio.create_task(receive())
        mic = Microphone(ws)
        for index, utterance in enumerate(utterances):
            turn = Turn(session, index, utterance.text, utterance.speech_ms)
            current[0] = turn
            done.clear()
            await mic.silence_for(LEAD_MS)
            for k, chunk in enumerate(utterance.chunks):
                sent = await mic.send(chunk)
                if k == utterance.last_speech_chunk:
                    turn.end_of_speech = sent
            deadline = now() + 15
            while not done.is_set() and now() < deadline:
                await mic.send(SILENCE_CHUNK)
            if play_answers and EV_AUDIO in turn.events:
                await mic.silence_until(turn.events[EV_AUDIO] + turn.answer_audio_s)
            turns.append(turn)
            await mic.silence_for(TAIL_MS)
        send_lags.extend(mic.lags)
        receiver.cancel()
        await asyncio.gather(receiver, return_exceptions=True)
    finally:
        await ws.close()


def mark_contention(turns: list[Turn]) -> None:
    """A turn is contended if another session was speaking or being transcribed at any time
    between its speech start and its first audio."""
    busy = [
        (t.session, t.events[EV_STARTED], t.events[EV_TRANSCRIPT])
        for t in turns
        if EV_STARTED in t.events and EV_TRANSCRIPT in t.events
    ]
    for turn in turns:
        start, end = turn.events.get(EV_STARTED), turn.events.get(EV_AUDIO)
        if start is None or end is None:
            continue
        turn.contended = any(
            session != turn.session and s < end and e > start for session, s, e in busy
        )


def match_llm_requests(turns: list[Turn], log: list[tuple[float, dict[str, Any]]]) -> None:
    """A session's k-th LLM request belongs to its k-th turn that created a response (the
    instructions name the session)."""
    marker = "Voice benchmark session "
    by_session: dict[int, list[float]] = {}
    for t, body in log:
        system = next((m["content"] for m in body.get("messages", []) if m["role"] == "system"), "")
        if marker in system:
            session = int(system.split(marker, 1)[1].split(".", 1)[0])
            by_session.setdefault(session, []).append(t)
    for session, times in by_session.items():
        mine = sorted(
            (t for t in turns if t.session == session and EV_CREATED in t.events),
            key=lambda t: t.index,
        )
        if len(mine) == len(times):
            for turn, t in zip(mine, sorted(times), strict=True):
                turn.llm_request = t


STAGES = [
    ("end of speech → speech_stopped", "eos", EV_STOPPED),
    ("speech_stopped → transcript completed", EV_STOPPED, EV_TRANSCRIPT),
    ("transcript → LLM has request", EV_TRANSCRIPT, "llm"),
    ("LLM has request → first transcript delta", "llm", EV_TEXT),
    ("transcript → first transcript delta", EV_TRANSCRIPT, EV_TEXT),
    ("first transcript delta → first audio delta", EV_TEXT, EV_AUDIO),
    ("end of speech → transcript completed", "eos", EV_TRANSCRIPT),
    ("end of speech → first audio (total)", "eos", EV_AUDIO),
]


def stamp(turn: Turn, key: str) -> float | None:
    if key == "eos":
        return turn.end_of_speech or None
    if key == "llm":
        return turn.llm_request
    return turn.events.get(key)


def stage_table(turns: list[Turn], qs: tuple[float, ...] = (50, 95, 99)) -> dict[str, Any]:
    out = {}
    for name, a, b in STAGES:
        values = [
            stamp(t, b) - stamp(t, a)  # type: ignore[operator]
            for t in turns
            if stamp(t, a) is not None and stamp(t, b) is not None
        ]
        out[name] = summary_ms(values, qs)
    return out


def first_audio_s(turn: Turn) -> float | None:
    """End of speech → first audio delta, the figure users wait for."""
    audio = turn.events.get(EV_AUDIO)
    return audio - turn.end_of_speech if audio is not None and turn.end_of_speech else None


def clean(turn: Turn) -> bool:
    """One speech turn, one transcript, one completed response with audio."""
    return (
        turn.counts.get(EV_STOPPED) == 1
        and turn.counts.get(EV_DONE) == 1
        and turn.response_status == "completed"
        and all(k in turn.events for k in (EV_STOPPED, EV_TRANSCRIPT, EV_TEXT, EV_AUDIO))
    )
