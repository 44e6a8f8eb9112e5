"""Voice-to-voice latency of one turn: embedded STT (pocketsphinx), TTS (espeak), instant LLM.

Run: python -m benchmarks.voice_turn [--turns 50] [--sessions 1]
Prints a table and writes benchmarks/results/voice_turn.json. Takes about 2.5 minutes: the audio
is paced in real time and the turns run one after another.

Three processes, as in text_turn.py: the fake LLM (instant replies, "Hello from
the scripted model."), openrealtime as `openrealtime serve` runs it, and this client.

Each session streams one continuous real-time microphone: 20 ms chunks of 24 kHz PCM16, each
sent on its own schedule (t0 + k x 20 ms, whatever happened before), with server VAD at its
defaults (`silence_duration_ms` 500) and input transcription configured so its events are
sent. A turn is 200 ms of silence, a sentence spoken by espeak (`benchmarks.lib.speech.speak`),
then silence until `response.done` arrives, then 400 ms more silence before the next sentence
(the client never talks over the answer, so nothing is barged in).

Stages, each from the client's wall clock (time.monotonic, one clock for every process):

  end of speech        send time of the chunk holding the sentence's last sample above -50 dBFS
  → speech_stopped     `input_audio_buffer.speech_stopped` received (VAD; ≈ silence_duration_ms)
  → transcript         `conversation.item.input_audio_transcription.completed` received (STT)
  → LLM request        the fake LLM has read the request body (its own log)
  → first token        first `response.output_audio_transcript.delta` received
  → first audio        first `response.output_audio.delta` received (TTS)

Target: first audio within silence_duration_ms + 250 ms of the end of speech.

By default the turns run in sequence, in one session. `--sessions N` runs N sessions in
parallel, started at staggered times; every turn then records whether another session was
speaking or being transcribed between its speech start and its first audio ("contended"), and
the figures are also given for uncontended turns only. With pocketsphinx, parallel sessions
distort the figures badly (a decode holds the GIL for up to ~50 ms at a time, so every other
session's audio, VAD and events wait; measured: 5 staggered sessions put end of speech -> first audio at p50 3.8 s, p95 4.9 s,
against 0.70 s / 0.76 s in sequence), hence the sequential default.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection

from benchmarks.lib.clients import LoopLag, connect_session, run, start_session
from benchmarks.lib.machine import (
    CpuMeter,
    add_common_arguments,
    apply_common_arguments,
    wait_for_quiet,
)
from benchmarks.lib.payloads import (
    SENTENCES,
    SILENCE_CHUNK,
    SILENCE_MS,
    Utterance,
    prepare,
    session_update,
)
from benchmarks.lib.processes import OpenRealtimeProcess, start_llm
from benchmarks.lib.stats import print_table, summary_ms, write_json

LEAD_MS, TAIL_MS = 200, 400
TARGET_EXTRA_MS = 250

now = time.monotonic
loads = orjson.loads

EV_STARTED = "input_audio_buffer.speech_started"
EV_STOPPED = "input_audio_buffer.speech_stopped"
EV_COMMITTED = "input_audio_buffer.committed"
EV_TRANSCRIPT = "conversation.item.input_audio_transcription.completed"
EV_TRANSCRIPT_FAILED = "conversation.item.input_audio_transcription.failed"
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
    llm_request: float | None = None
    contended: bool = False


class Microphone:
    """One paced stream: chunk k leaves at t0 + k x 20 ms; records how late each one was."""

    def __init__(self, ws: ClientConnection, silence: str) -> None:
        self.ws = ws
        self.silence = silence
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
            await self.send(self.silence)


async def run_session(
    session: int,
    url: str,
    utterances: list[Utterance],
    start_delay: float,
    turns: list[Turn],
    errors: list[str],
    send_lags: list[float],
) -> None:
    await asyncio.sleep(start_delay)
    ws = await connect_session(url)
    current: list[Turn | None] = [None]
    done = asyncio.Event()

    async def receive() -> None:
        async for raw in ws:
            t = now()
            event = loads(raw)
            kind = event["type"]
            if kind == "error":
                errors.append(f"session {session}: {event['error']}")
                continue
            turn = current[0]
            if turn is None:
                continue
            turn.events.setdefault(kind, t)
            turn.counts[kind] = turn.counts.get(kind, 0) + 1
            if kind == EV_TRANSCRIPT:
                turn.transcript = event.get("transcript")
            elif kind == EV_DONE:
                turn.response_status = event["response"]["status"]
                done.set()

    try:
        instructions = f"Voice benchmark session {session}. Answer briefly."
        await start_session(ws, session_update(instructions, audio_out=True, listen=True))
        receiver = asyncio.create_task(receive())
        mic = Microphone(ws, SILENCE_CHUNK)
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
                await mic.send(mic.silence)
            turns.append(turn)
            await mic.silence_for(TAIL_MS)
        send_lags.extend(mic.lags)
        receiver.cancel()
        await asyncio.gather(receiver, return_exceptions=True)
    finally:
        await ws.close()


def mark_contention(turns: list[Turn]) -> None:
    """A turn is contended if another session was speaking or being transcribed (the decode
    streams while the user speaks) at any time between its speech start and its first audio."""
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


def stage_table(turns: list[Turn]) -> dict[str, Any]:
    out = {}
    for name, a, b in STAGES:
        values = [
            stamp(t, b) - stamp(t, a)  # type: ignore[operator]
            for t in turns
            if stamp(t, a) is not None and stamp(t, b) is not None
        ]
        out[name] = summary_ms(values, (50, 95, 99))
    return out


def clean(turn: Turn) -> bool:
    """One speech turn, one transcript, one completed response with audio."""
    return (
        turn.counts.get(EV_STOPPED) == 1
        and turn.counts.get(EV_DONE) == 1
        and turn.response_status == "completed"
        and all(k in turn.events for k in (EV_STOPPED, EV_TRANSCRIPT, EV_TEXT, EV_AUDIO))
    )


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    texts = [SENTENCES[i % len(SENTENCES)] for i in range(args.turns)]
    utterances = prepare(texts)
    per_session = [utterances[s :: args.sessions] for s in range(args.sessions)]
    turns: list[Turn] = []
    errors: list[str] = []
    send_lags: list[float] = []
    with start_llm() as llm, OpenRealtimeProcess(llm, args.server_log_level) as server:
        url = server.ws_url
        processes = {"openrealtime": server, "scripted_llm": llm}
        background = wait_for_quiet(args.wait_quiet)
        # Warm-up: one turn, so the first measured turn does not build the STT decoder.
        # It is kept as the "cold" turn: what the first user after a start-up waits.
        cold: list[Turn] = []
        await run_session(99, url, prepare([SENTENCES[1]]), 0, cold, errors, [])
        llm.reset_log()
        period = 3.5  # rough seconds per turn, to spread the sessions' turns apart
        lag = LoopLag()
        lag.start()
        meter = CpuMeter(processes)
        meter.start()
        started = now()
        await asyncio.gather(
            *(
                run_session(
                    s, url, per_session[s], s * period / args.sessions, turns, errors, send_lags
                )
                for s in range(args.sessions)
            )
        )
        wall = now() - started
        cpu = meter.stop()
        loop_lag = await lag.stop()
        log = llm.log()
    match_llm_requests(turns, log)
    mark_contention(turns)
    good = [t for t in turns if clean(t)]
    uncontended = [t for t in good if not t.contended]
    totals = [t.events[EV_AUDIO] - t.end_of_speech for t in good]
    within = sum(1 for v in totals if v * 1000 <= SILENCE_MS + TARGET_EXTRA_MS)
    return {
        "turns_run": len(turns),
        "turns_clean": len(good),
        "turns_uncontended": len(uncontended),
        "anomalies": [
            {"session": t.session, "turn": t.index, "text": t.text, "counts": t.counts}
            for t in turns
            if not clean(t)
        ],
        "errors": errors[:20],
        "stages_ms": stage_table(good),
        "cold_first_turn_ms": {
            name: round(1000 * (stamp(cold[0], b) - stamp(cold[0], a)), 1)  # type: ignore[operator]
            for name, a, b in STAGES
            if cold and stamp(cold[0], a) is not None and stamp(cold[0], b) is not None
        },
        "stages_uncontended_ms": stage_table(uncontended),
        "target_ms": SILENCE_MS + TARGET_EXTRA_MS,
        "turns_within_target": within,
        "silence_duration_ms": SILENCE_MS,
        "speech_ms": summary_ms([t.speech_ms / 1000 for t in good], (50,)),
        "client_send_lag_ms": summary_ms(send_lags, (50, 99)),
        "client_loop_lag_ms": summary_ms(loop_lag, (50, 99)),
        "cpu_cores": cpu,
        "background_cores_before": background,
        "wall_s": round(wall, 1),
        "turns": [
            {
                "session": t.session,
                "turn": t.index,
                "said": t.text,
                "heard": t.transcript,
                "contended": t.contended,
                # ms after the end of speech
                "at_ms": {
                    key: round(1000 * (stamp(t, key) - t.end_of_speech), 1)  # type: ignore[operator]
                    for key in (EV_STOPPED, EV_TRANSCRIPT, "llm", EV_TEXT, EV_AUDIO)
                    if t.end_of_speech and stamp(t, key) is not None
                },
            }
            for t in turns
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--turns", type=int, default=50, help="turns in all (default 50)")
    parser.add_argument(
        "--sessions",
        type=int,
        default=1,
        help="parallel sessions, staggered (default 1: in sequence; see the docstring)",
    )
    add_common_arguments(parser)
    args = parser.parse_args()
    apply_common_arguments(args)
    if args.turns < 1 or not 1 <= args.sessions <= args.turns:
        parser.error("need --turns ≥ 1 and 1 ≤ --sessions ≤ --turns")
    results = run(bench(args))
    results["settings"] = vars(args)

    rows = []
    for name, _, _ in STAGES:
        s, u = results["stages_ms"][name], results["stages_uncontended_ms"][name]
        rows.append([name, s["p50"], s["p95"], s["p99"], u["p50"], u["p95"]])
    print_table(
        ["stage, ms", "p50", "p95", "p99", "uncont. p50", "uncont. p95"],
        rows,
        f"Voice turn stages: {results['turns_clean']} clean turns of {results['turns_run']} "
        f"({results['turns_uncontended']} uncontended), {args.sessions} staggered sessions, "
        f"{results['wall_s']:.0f} s",
    )
    cold = results["cold_first_turn_ms"]
    print(
        "first turn after start-up (cold): speech_stopped → transcript "
        f"{cold.get('speech_stopped → transcript completed', float('nan')):.0f} ms, "
        f"end of speech → first audio {cold.get('end of speech → first audio (total)', float('nan')):.0f} ms"
    )
    cpu = results["cpu_cores"]
    print(
        f"target: first audio ≤ {results['target_ms']} ms after end of speech: "
        f"{results['turns_within_target']}/{results['turns_clean']} turns within it"
    )
    print(
        f"client send lag p99 {results['client_send_lag_ms']['p99']:.1f} ms; CPU cores "
        f"openrealtime {cpu['openrealtime']:.2f}, LLM {cpu['scripted_llm']:.2f}, "
        f"client {cpu['client']:.2f}, other processes {cpu['other_processes']:.2f}"
    )
    if results["anomalies"]:
        print(f"{len(results['anomalies'])} turn(s) not clean, e.g. {results['anomalies'][:2]}")
    if results["errors"]:
        print(f"errors: {results['errors'][:3]}")
    path = write_json("voice_turn.json", results)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
