"""Load: many concurrent sessions mixing text turns, spoken turns and tool calls. Is anything lost?

Run: python -m benchmarks.load [--sessions 200] [--duration 60] [--stt scripted,pocketsphinx]
                               [--pocketsphinx-sessions 5]
Prints tables and writes benchmarks/results/load.json. With the defaults it takes ~3 minutes:
one run per STT backend, each with a fresh server.

Three processes: the fake LLM answering like a fast model (`benchmarks/lib/fake_llm.py`:
"Hello from the scripted model." streamed as --llm-chunks chunks, --llm-delay s apart, or a
tool call when asked), openrealtime as `openrealtime serve` runs it (with a debug side
channel, see `benchmarks/lib/control.py`), and this client (uvloop, `websockets`, orjson).

Every session connects (spread over --ramp s), configures itself — server VAD
(silence_duration_ms 500, `create_response` true), input transcription (so its events are
sent), one function tool, output `["text"]`, or `["audio"]` for --audio-sessions of them — and
then, for --duration s, repeats: think for a random --think interval, then one turn, chosen by
--mix weights:

  text   `conversation.item.create` (a user message) and `response.create`, back to back as SDK
         clients send them; wait for `response.done`.
  tool   the same with a message that makes the scripted LLM call the tool; on `response.done`
         (a `function_call` item), `conversation.item.create` of a `function_call_output` and
         `response.create`; wait for that `response.done`.
  audio  200 ms of silence, a spoken sentence (espeak, ~1.3-2 s), then silence, as 20 ms chunks
         of 24 kHz PCM16 paced in real time, until `speech_stopped` arrives (the server VAD
         commits the turn and creates the response); then wait for the item's transcription
         event and the response's `response.done`. A session sends audio only during its audio
         turns (a microphone streaming between turns would cost the server VAD time for every
         session all the time: see concurrent_voice.py for that capacity).

Latency, per stage, from the client's clock:
  response.create → first delta        text and tool turns (first delta of any kind)
  function_call_output → first delta   the tool turn's second response
  end of speech → speech_stopped       end of speech: the send time of the chunk holding the
                                       sentence's last sample above -50 dBFS; includes the
                                       500 ms of silence the VAD waits for
  end of speech → transcript           `...input_audio_transcription.completed`
  end of speech → first delta          of the VAD-created response
  end of speech → first audio          `response.output_audio.delta` (audio sessions)

Nothing may be lost. When --duration ends no new turn starts; turns under way finish; then the
client waits (up to --grace s) until, in every session, every `response.created` has had its
`response.done` and every `input_audio_buffer.committed` item its transcription event
(`.completed` or `.failed`). What is still missing then is reported as lost. Errors are counted
by code: `error` events, failed responses, failed transcriptions, and connections refused.

Also reported: turns completed by kind, the server's CPU (cores, and ms per turn), its peak RSS,
the scripted LLM's and the client's CPU, the client's own lag (audio chunks sent late, event
loop wake-ups), the machine's load average, and the server's asyncio tasks and live session
objects after every session closed.

The STT: pocketsphinx, the embedded default, costs ~0.2 core per *speaking* session and holds
the GIL while it decodes, so it cannot serve 200 sessions' speech on 2 cores; the 200-session
run uses `--stt scripted`: the OpenAI-compatible HTTP STT backend against an instant endpoint
on the fake LLM's server (the same server path without the recogniser's CPU). A smaller run
with pocketsphinx (--pocketsphinx-sessions) shows the embedded recogniser under the same mix.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection

from benchmarks.lib.clients import LoopLag, ServerError, connect_session, run, start_session
from benchmarks.lib.machine import (
    CpuMeter,
    add_common_arguments,
    apply_common_arguments,
    background_load,
    loadavg,
    wait_for_quiet,
)
from benchmarks.lib.payloads import (
    RESPONSE_CREATE,
    SENTENCES,
    SILENCE_CHUNK,
    SILENCE_MS,
    TOOL,
    TOOL_MARKER,
    Utterance,
    prepare,
    session_update,
    tool_output,
    user_message,
)
from benchmarks.lib.processes import (
    LlmProcess,
    OpenRealtimeProcess,
    new_log_lines,
    sample_rss,
    sample_server_lag,
    start_llm,
)
from benchmarks.lib.stats import print_table, summary_ms, write_json

LEAD_MS = 200
MAX_SILENCE_S = 5.0  # an audio turn stops waiting for speech_stopped after this much silence
TURN_TIMEOUT = 60.0

now = time.monotonic
loads = orjson.loads


@dataclass
class Turn:
    kind: str
    session: int
    start: float
    ok: bool = False
    problem: str = ""
    stages: dict[str, float] = field(default_factory=dict)  # stage name -> seconds
    marks: dict[str, float] = field(default_factory=dict)  # what happened when (client clock)
    requests: dict[str, int] = field(default_factory=dict)  # which LLM/STT request it made


@dataclass
class SessionState:
    """Everything one session received, kept for the final accounting, and a cursor-style log
    the turn in progress reads."""

    index: int
    audio_out: bool
    ws: ClientConnection | None = None
    events: list[tuple[float, dict[str, Any]]] = field(default_factory=list)  # the current turn's
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    created: dict[str, float] = field(default_factory=dict)  # response id -> arrival
    done: dict[str, tuple[str, str | None]] = field(default_factory=dict)  # id -> status, code
    committed: set[str] = field(default_factory=set)
    transcribed: set[str] = field(default_factory=set)
    transcription_failed: dict[str, str] = field(default_factory=dict)
    errors: Counter[str] = field(default_factory=Counter)
    explicit_creates: int = 0
    speech_stopped: int = 0
    counts: Counter[str] = field(default_factory=Counter)
    send_lags: list[float] = field(default_factory=list)
    closed_by_server: str | None = None
    seen_deltas: set[tuple[str, Any]] = field(default_factory=set)  # (type, response) this turn


async def receive(state: SessionState) -> None:
    ws = state.ws
    assert ws is not None
    try:
        async for raw in ws:
            t = now()
            event = loads(raw)
            kind = event["type"]
            state.counts[kind] += 1
            if kind == "response.created":
                state.created[event["response"]["id"]] = t
            elif kind == "response.done":
                response = event["response"]
                details = response.get("status_details") or {}
                error = details.get("error") or {}
                code = error.get("code") or details.get("reason")
                state.done[response["id"]] = (response["status"], code)
            elif kind == "input_audio_buffer.committed":
                state.committed.add(event["item_id"])
            elif kind == "conversation.item.input_audio_transcription.completed":
                state.transcribed.add(event["item_id"])
            elif kind == "conversation.item.input_audio_transcription.failed":
                state.transcription_failed[event["item_id"]] = (event.get("error") or {}).get(
                    "code", "?"
                )
            elif kind == "input_audio_buffer.speech_stopped":
                state.speech_stopped += 1
            elif kind == "error":
                state.errors[(event.get("error") or {}).get("code") or "?"] += 1
            if kind.endswith(".delta") and kind.startswith("response."):
                # Deltas are many: keep only the first of each kind per response for the turn.
                key = (kind, event.get("response_id"))
                if key in state.seen_deltas:
                    continue
                state.seen_deltas.add(key)
                event = {"type": kind, "response_id": event.get("response_id")}
            elif kind in ("response.output_audio.done", "response.output_text.done"):
                continue
            state.events.append((t, event))
            state.changed.set()
    except Exception as exc:
        state.closed_by_server = repr(exc)[:200]
    else:
        state.closed_by_server = "closed"
    state.changed.set()


async def wait_for(
    state: SessionState, start_at: int, predicate: Any, deadline: float
) -> tuple[float, dict[str, Any]] | None:
    """The first event from index `start_at` of the turn's log matching `predicate`."""
    i = start_at
    while True:
        while i < len(state.events):
            t, event = state.events[i]
            i += 1
            if predicate(event):
                return t, event
        if state.closed_by_server is not None:
            return None
        remaining = deadline - now()
        if remaining <= 0:
            return None
        state.changed.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(state.changed.wait(), remaining)


def new_turn_log(state: SessionState) -> None:
    state.events.clear()
    state.seen_deltas.clear()


def is_delta_of(response_id: str) -> Any:
    return lambda e: (
        e["type"].endswith(".delta")
        and e["type"].startswith("response.")
        and e.get("response_id") == response_id
    )


async def response_turn(
    state: SessionState, messages: list[str], turn: Turn, stage: str, leg: str
) -> dict[str, Any] | None:
    """Send `messages` then response.create; wait for its response.done. Records `stage`
    (sent → first delta) and, under `leg`, the times and the LLM request it made; returns the
    response.done's response, or None."""
    ws = state.ws
    assert ws is not None
    new_turn_log(state)
    deadline = now() + TURN_TIMEOUT
    for message in messages:
        await ws.send(message)
    sent = now()
    state.explicit_creates += 1
    await ws.send(RESPONSE_CREATE)
    created = await wait_for(
        state, 0, lambda e: e["type"] in ("response.created", "error"), deadline
    )
    if created is None or created[1]["type"] == "error":
        turn.problem = "no response.created" if created is None else "error event"
        return None
    response_id = created[1]["response"]["id"]
    first = await wait_for(state, 0, is_delta_of(response_id), deadline)
    turn.marks[f"{leg} sent"] = sent
    if first is not None:
        turn.stages[stage] = first[0] - sent
        turn.marks[f"{leg} first delta"] = first[0]
    done = await wait_for(
        state,
        0,
        lambda e: e["type"] == "response.done" and e["response"]["id"] == response_id,
        deadline,
    )
    if done is None:
        turn.problem = "no response.done"
        return None
    response = done[1]["response"]
    if (n := llm_request_number(response)) is not None:
        turn.requests[f"{leg} llm"] = n
    if response["status"] != "completed":
        turn.problem = f"response {response['status']}"
        return None
    return response


def llm_request_number(response: dict[str, Any]) -> int | None:
    """Which scripted-LLM request produced this response (see `benchmarks/lib/fake_llm.py`)."""
    for item in response.get("output", []):
        if item.get("type") == "function_call" and str(item.get("call_id", "")).startswith("call_"):
            return int(item["call_id"][5:])
    usage = response.get("usage") or {}
    return (usage.get("input_token_details") or {}).get("text_tokens")


async def text_turn(state: SessionState, turn: Turn, n: int) -> None:
    response = await response_turn(
        state,
        [user_message(f"Question {n}: what is new today?")],
        turn,
        "response.create → first delta",
        "response",
    )
    turn.ok = response is not None


async def tool_turn(state: SessionState, turn: Turn, n: int) -> None:
    response = await response_turn(
        state,
        [user_message(f"{TOOL_MARKER} Question {n}: what is the weather in Paris?")],
        turn,
        "response.create → first delta",
        "response",
    )
    if response is None:
        return
    calls = [item for item in response.get("output", []) if item.get("type") == "function_call"]
    if not calls:
        turn.problem = "no function_call in the response"
        return
    response = await response_turn(
        state,
        [tool_output(call["call_id"]) for call in calls],
        turn,
        "function_call_output → first delta",
        "tool result",
    )
    turn.ok = response is not None


async def audio_turn(state: SessionState, turn: Turn, utterance: Utterance, silence: str) -> None:
    ws = state.ws
    assert ws is not None
    new_turn_log(state)
    deadline = now() + TURN_TIMEOUT
    t0 = now() + 0.005
    k = 0

    async def send(message: str) -> float:
        nonlocal k
        due = t0 + k * 0.02
        k += 1
        delay = due - now()
        if delay > 0:
            await asyncio.sleep(delay)
        sent = now()
        state.send_lags.append(sent - due)
        await ws.send(message)
        return sent

    for _ in range(LEAD_MS // 20):
        await send(silence)
    end_of_speech = 0.0
    for index, chunk in enumerate(utterance.chunks):
        sent = await send(chunk)
        if index == utterance.last_speech_chunk:
            end_of_speech = sent
    stopped = None
    silence_end = now() + MAX_SILENCE_S
    while now() < silence_end:
        await send(silence)
        stopped = next(
            ((t, e) for t, e in state.events if e["type"] == "input_audio_buffer.speech_stopped"),
            None,
        )
        if stopped is not None:
            break
    if stopped is None:
        turn.problem = "no speech_stopped"
        return
    turn.stages["end of speech → speech_stopped"] = stopped[0] - end_of_speech
    turn.marks["speech_stopped"] = stopped[0]
    item_id = stopped[1]["item_id"]
    created = await wait_for(state, 0, lambda e: e["type"] == "response.created", deadline)
    transcript = await wait_for(
        state,
        0,
        lambda e: (
            e["type"]
            in (
                "conversation.item.input_audio_transcription.completed",
                "conversation.item.input_audio_transcription.failed",
            )
            and e["item_id"] == item_id
        ),
        deadline,
    )
    if transcript is None:
        turn.problem = "no transcription event"
    elif transcript[1]["type"].endswith(".completed"):
        turn.stages["end of speech → transcript"] = transcript[0] - end_of_speech
        turn.stages["speech_stopped → transcript"] = transcript[0] - stopped[0]
        turn.marks["transcript"] = transcript[0]
        text = transcript[1].get("transcript") or ""
        if text.startswith("scripted transcript "):
            turn.requests["stt"] = int(text.rsplit(" ", 1)[1])
    else:
        turn.problem = "transcription failed"
    if created is None:
        turn.problem = turn.problem or "no response.created"
        return
    response_id = created[1]["response"]["id"]
    first = await wait_for(state, 0, is_delta_of(response_id), deadline)
    if first is not None:
        turn.stages["end of speech → first delta"] = first[0] - end_of_speech
        turn.marks["response first delta"] = first[0]
    if state.audio_out:
        audio = await wait_for(
            state,
            0,
            lambda e: (
                e["type"] == "response.output_audio.delta" and e.get("response_id") == response_id
            ),
            deadline,
        )
        if audio is not None:
            turn.stages["end of speech → first audio"] = audio[0] - end_of_speech
    done = await wait_for(
        state,
        0,
        lambda e: e["type"] == "response.done" and e["response"]["id"] == response_id,
        deadline,
    )
    if done is None:
        turn.problem = turn.problem or "no response.done"
        return
    if (n := llm_request_number(done[1]["response"])) is not None:
        turn.requests["response llm"] = n
    if done[1]["response"]["status"] != "completed":
        turn.problem = turn.problem or f"response {done[1]['response']['status']}"
        return
    splits = sum(1 for _, e in state.events if e["type"] == "input_audio_buffer.speech_stopped")
    if splits > 1:
        turn.problem = turn.problem or "utterance split in two turns"
    turn.ok = not turn.problem


async def run_session(
    state: SessionState,
    url: str,
    connect_at: float,
    window: tuple[float, float],
    args: argparse.Namespace,
    utterances: list[Utterance],
    silence: str,
    turns: list[Turn],
    refused: Counter[str],
    connect_times: list[float],
) -> None:
    rng = random.Random(state.index)
    await asyncio.sleep(max(0.0, connect_at - now()))
    started = now()
    try:
        ws = await connect_session(url, 60)
    except Exception as exc:
        status = getattr(getattr(exc, "response", None), "status_code", None)
        refused[f"HTTP {status}" if status else type(exc).__name__] += 1
        return
    connect_times.append(now() - started)
    state.ws = ws
    try:
        instructions = f"Load benchmark session {state.index}. Answer briefly."
        update = session_update(instructions, audio_out=state.audio_out, listen=True, tools=[TOOL])
        try:
            await start_session(ws, update)
        except ServerError as refusal:
            refused[str(refusal)] += 1
            return
        receiver = asyncio.create_task(receive(state))
        begin, end = window
        await asyncio.sleep(max(0.0, begin - now()) + rng.uniform(0, args.think[1]))
        kinds = list(args.mix)
        weights = [args.mix[k] for k in kinds]
        n = 0
        while now() < end and state.closed_by_server is None:
            kind = rng.choices(kinds, weights)[0]
            turn = Turn(kind, state.index, now())
            n += 1
            if kind == "text":
                await text_turn(state, turn, n)
            elif kind == "tool":
                await tool_turn(state, turn, n)
            else:
                await audio_turn(state, turn, utterances[rng.randrange(len(utterances))], silence)
            turns.append(turn)
            await asyncio.sleep(rng.uniform(*args.think))
        # Everything created must finish, everything committed must be transcribed.
        grace_end = now() + args.grace
        while now() < grace_end and state.closed_by_server is None and unfinished(state):
            state.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(state.changed.wait(), 0.5)
        await ws.close()
        await asyncio.wait_for(asyncio.gather(receiver, return_exceptions=True), 10)
    except Exception as exc:
        state.errors[f"client: {type(exc).__name__}"] += 1
        with contextlib.suppress(Exception):
            await ws.close()


def add_legs(turns: list[Turn], arrivals: dict[str, dict[int, float]]) -> None:
    """Split the latencies where the backends had the requests (their own clock readings)."""
    chat, stt = arrivals.get("chat", {}), arrivals.get("stt", {})

    def leg(turn: Turn, name: str, start: float | None, end: float | None) -> None:
        if start is not None and end is not None:
            turn.stages[name] = end - start

    for turn in turns:
        m, r = turn.marks, turn.requests
        if turn.kind in ("text", "tool"):
            got = chat.get(r.get("response llm", -1))
            leg(turn, "response.create → LLM has request", m.get("response sent"), got)
            leg(turn, "LLM has request → first delta", got, m.get("response first delta"))
        if turn.kind == "tool":
            got = chat.get(r.get("tool result llm", -1))
            leg(turn, "function_call_output → LLM has request", m.get("tool result sent"), got)
            leg(
                turn,
                "tool result: LLM has request → first delta",
                got,
                m.get("tool result first delta"),
            )
        if turn.kind == "audio":
            heard = stt.get(r.get("stt", -1))
            leg(turn, "speech_stopped → STT has request", m.get("speech_stopped"), heard)
            leg(turn, "STT has request → transcript", heard, m.get("transcript"))
            got = chat.get(r.get("response llm", -1))
            leg(turn, "transcript → LLM has request", m.get("transcript"), got)
            leg(turn, "LLM has request → first delta", got, m.get("response first delta"))


def unfinished(state: SessionState) -> bool:
    return bool(
        state.created.keys() - state.done.keys()
        or state.committed - state.transcribed - state.transcription_failed.keys()
    )


async def run_one(
    stt: str,
    sessions: int,
    args: argparse.Namespace,
    llm: LlmProcess,
    utterances: list[Utterance],
) -> dict[str, Any]:
    silence = SILENCE_CHUNK
    server = OpenRealtimeProcess(llm, args.server_log_level, stt, control=True)
    log_offset = server.log_path.stat().st_size
    try:
        url = server.ws_url
        idle = server.status()
        llm_before = llm.stats()
        loadavg_before = loadavg()
        rng = random.Random(sessions)
        n_audio = round(sessions * args.audio_sessions)
        audio_out = set(rng.sample(range(sessions), n_audio))
        states = [SessionState(i, i in audio_out) for i in range(sessions)]
        turns: list[Turn] = []
        refused: Counter[str] = Counter()
        connect_times: list[float] = []
        ramp_start = now() + 0.1
        begin = ramp_start + args.ramp + 1.0
        window = (begin, begin + args.duration)
        rss: list[int] = []
        stop_rss = asyncio.Event()
        rss_task = asyncio.create_task(sample_rss(server, rss, stop_rss))
        server_lag: list[float] = []
        stop_lag = asyncio.Event()
        lag_task = asyncio.create_task(sample_server_lag(server, server_lag, stop_lag))
        lag = LoopLag()
        lag.start()
        meter = CpuMeter({"openrealtime": server, "scripted": llm})
        tasks = [
            asyncio.create_task(
                run_session(
                    state,
                    url,
                    ramp_start + args.ramp * i / sessions,
                    window,
                    args,
                    utterances,
                    silence,
                    turns,
                    refused,
                    connect_times,
                )
            )
            for i, state in enumerate(states)
        ]
        await asyncio.sleep(max(0.0, begin - now()))
        meter.start()
        await asyncio.sleep(max(0.0, window[1] - now()))
        cpu = meter.stop()
        loadavg_end = loadavg()
        stop_lag.set()
        await lag_task
        # In-flight turns finish, then the grace period for anything still owed.
        await asyncio.wait_for(
            asyncio.gather(*tasks, return_exceptions=True), TURN_TIMEOUT + args.grace + 60
        )
        loop_lag = await lag.stop()
        stop_rss.set()
        await rss_task
        peak_hwm = server.status()["VmHWM"]
        # After every session closed: the server's tasks and session objects.
        await asyncio.sleep(2.0)
        after = server.inside()
        after_gc = server.inside(collect=True)
        tcp_after = server.tcp_sockets()
        llm_after = llm.stats()
        add_legs(turns, llm.arrivals())
        log_lines = new_log_lines(server.log_path, log_offset)
    finally:
        server.stop()
    problems = [
        line
        for line in log_lines
        if " ERROR " in line or " WARNING " in line or "Traceback" in line or "destroyed" in line
    ]
    return analyse(
        stt=stt,
        sessions=sessions,
        args=args,
        states=states,
        turns=turns,
        refused=refused,
        connect_times=connect_times,
        cpu=cpu,
        rss_idle=idle["VmRSS"],
        rss=rss,
        peak_hwm=peak_hwm,
        loop_lag=loop_lag,
        server_lag=server_lag,
        after=after,
        after_gc=after_gc,
        tcp_after=tcp_after,
        llm={k: v - llm_before.get(k, 0) for k, v in llm_after.items()},
        loadavg_before=loadavg_before,
        loadavg_end=loadavg_end,
        problems=problems,
    )


def analyse(**k: Any) -> dict[str, Any]:
    states: list[SessionState] = k["states"]
    turns: list[Turn] = k["turns"]
    args = k["args"]
    by_kind: dict[str, Counter[str]] = {}
    problems_by_kind: dict[str, Counter[str]] = {}
    for turn in turns:
        by_kind.setdefault(turn.kind, Counter())["completed" if turn.ok else "not completed"] += 1
        if not turn.ok:
            problems_by_kind.setdefault(turn.kind, Counter())[turn.problem or "?"] += 1
    stage_names = [
        "response.create → first delta",
        "response.create → LLM has request",
        "LLM has request → first delta",
        "function_call_output → first delta",
        "function_call_output → LLM has request",
        "tool result: LLM has request → first delta",
        "end of speech → speech_stopped",
        "end of speech → transcript",
        "speech_stopped → transcript",
        "speech_stopped → STT has request",
        "STT has request → transcript",
        "transcript → LLM has request",
        "end of speech → first delta",
        "end of speech → first audio",
    ]
    stages: dict[str, Any] = {}
    for name in stage_names:
        for kind in ("text", "tool", "audio"):
            values = [t.stages[name] for t in turns if t.kind == kind and name in t.stages]
            if values:
                stages[f"{name} ({kind})"] = summary_ms(values, (50, 90, 99))
    created = sum(len(s.created) for s in states)
    done = sum(len(s.done) for s in states)
    lost_responses = sum(len(s.created.keys() - s.done.keys()) for s in states)
    committed = sum(len(s.committed) for s in states)
    transcribed = sum(len(s.committed & s.transcribed) for s in states)
    transcription_failed = sum(len(s.committed & s.transcription_failed.keys()) for s in states)
    lost_transcriptions = sum(
        len(s.committed - s.transcribed - s.transcription_failed.keys()) for s in states
    )
    statuses = Counter(status for s in states for status, _ in s.done.values())
    errors: Counter[str] = Counter()
    for s in states:
        for code, n in s.errors.items():
            errors[f"error event: {code}"] += n
        for status, reason in s.done.values():
            if status == "failed":
                errors[f"response failed: {reason}"] += 1
        for code in s.transcription_failed.values():
            errors[f"transcription failed: {code}"] += 1
        if s.closed_by_server not in (None, "closed"):
            errors[f"connection: {s.closed_by_server}"] += 1
    for reason, n in k["refused"].items():
        errors[f"connect refused: {reason}"] += n
    send_lags = [x for s in states for x in s.send_lags]
    cpu = k["cpu"]
    window_turns = len(turns)  # every turn started inside the window
    peak = max(k["rss"]) if k["rss"] else k["rss_idle"]
    explicit = sum(s.explicit_creates for s in states)
    stopped = sum(s.speech_stopped for s in states)
    lost = {
        "response_created_without_done": lost_responses,
        "committed_without_transcription_event": lost_transcriptions,
    }
    return {
        "stt": k["stt"],
        "sessions": k["sessions"],
        "audio_out_sessions": sum(s.audio_out for s in states),
        "duration_s": args.duration,
        "connected": len(k["connect_times"]),
        "connect_ms": summary_ms(k["connect_times"]),
        "turns_started_in_window": window_turns,
        "turns_per_s": round(window_turns / args.duration, 2),
        "turns_by_kind": {kind: dict(c) for kind, c in sorted(by_kind.items())},
        "turn_problems_by_kind": {kind: dict(c) for kind, c in sorted(problems_by_kind.items())},
        "latency_ms": stages,
        "accounting": {
            "response.create sent": explicit,
            "speech_stopped (VAD turns)": stopped,
            "expected response.created (sent + VAD turns)": explicit + stopped,
            "response.created": created,
            "response.done": done,
            "response.done by status": dict(statuses),
            "input_audio_buffer.committed": committed,
            "transcription completed": transcribed,
            "transcription failed": transcription_failed,
        },
        "lost": lost,
        "nothing_lost": not any(lost.values()),
        "errors_by_code": dict(errors.most_common()),
        "cpu_cores": cpu,
        "server_cpu_ms_per_turn": round(
            1000 * cpu["openrealtime"] * args.duration / window_turns, 2
        )
        if window_turns
        else None,
        "server_rss_idle_mib": round(k["rss_idle"] / 1024, 1),
        "server_rss_peak_mib": round(max(peak, k["peak_hwm"]) / 1024, 1),
        "server_loop_lag_ms": summary_ms(k["server_lag"], (50, 90, 99)),
        "client_audio_send_lag_ms": summary_ms(send_lags),
        "client_loop_lag_ms": summary_ms(k["loop_lag"]),
        "loadavg_before": k["loadavg_before"],
        "loadavg_end_of_window": k["loadavg_end"],
        "llm": k["llm"],
        "server_after_all_closed": {
            "tasks": k["after"]["tasks"],
            "tasks_by_coroutine": k["after"]["tasks_by_coroutine"],
            "live_session_objects": k["after"]["live"],
            "live_session_objects_after_gc": k["after_gc"]["live"],
            "tcp_sockets": k["tcp_after"],
        },
        "server_log_problem_count": len(k["problems"]),
        "server_log_problems": k["problems"][:20],
    }


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    utterances = prepare(SENTENCES[: args.sentences])
    out: dict[str, Any] = {
        "background_cores_before": wait_for_quiet(args.wait_quiet),
        "utterances_ms": [round(u.speech_ms) for u in utterances],
        "runs": {},
    }
    llm = start_llm(args.llm_delay, args.llm_chunks)
    try:
        for stt in args.stt.split(","):
            sessions = args.pocketsphinx_sessions if stt == "pocketsphinx" else args.sessions
            if args.wait_quiet:
                wait_for_quiet(args.wait_quiet)
            print(f"  {stt}: {sessions} sessions for {args.duration:.0f} s…", flush=True)
            result = await run_one(stt, sessions, args, llm, utterances)
            out["runs"][f"{stt}:{sessions}"] = result
            print(
                f"    {result['turns_started_in_window']} turns, "
                f"{'nothing lost' if result['nothing_lost'] else 'LOST: ' + str(result['lost'])}",
                flush=True,
            )
    finally:
        llm.stop()
    out["background_cores_after"] = background_load(1.0)
    return out


def report(results: dict[str, Any]) -> None:
    for label, r in results["runs"].items():
        cpu = r["cpu_cores"]
        print(
            f"\n=== {label}: {r['sessions']} sessions ({r['audio_out_sessions']} with audio out), "
            f"{r['duration_s']:.0f} s; load average {r['loadavg_before']} before, "
            f"{r['loadavg_end_of_window']} at the end"
        )
        print(
            f"connected {r['connected']}/{r['sessions']} (connect p50 "
            f"{r['connect_ms']['p50']:.0f} ms, p99 {r['connect_ms']['p99']:.0f} ms); "
            f"{r['turns_started_in_window']} turns ({r['turns_per_s']}/s); CPU cores: server "
            f"{cpu['openrealtime']:.2f}, LLM {cpu['scripted']:.2f}, client {cpu['client']:.2f}, "
            f"others {cpu['other_processes']:.2f}; server CPU/turn "
            f"{r['server_cpu_ms_per_turn']} ms; RSS {r['server_rss_idle_mib']} → peak "
            f"{r['server_rss_peak_mib']} MiB; server event-loop lag p50 "
            f"{r['server_loop_lag_ms']['p50']:.1f} ms, p90 {r['server_loop_lag_ms']['p90']:.0f} ms, "
            f"p99 {r['server_loop_lag_ms']['p99']:.0f} ms"
        )
        rows = []
        for kind, c in r["turns_by_kind"].items():
            problems = r["turn_problems_by_kind"].get(kind, {})
            rows.append(
                [
                    kind,
                    c.get("completed", 0),
                    c.get("not completed", 0),
                    ", ".join(f"{p} {n}" for p, n in problems.items()) or "-",
                ]
            )
        print_table(["turn", "completed", "not completed", "why"], rows, "turns")
        print_table(
            ["stage (turn kind)", "n", "p50 ms", "p90 ms", "p99 ms", "max ms"],
            [
                [name, s["n"], s["p50"], s["p90"], s["p99"], s["max"]]
                for name, s in r["latency_ms"].items()
            ],
            "latency",
        )
        print_table(
            ["count", "value"],
            [[name, str(v)] for name, v in r["accounting"].items()]
            + [[f"LOST: {name}", v] for name, v in r["lost"].items()],
            "accounting (nothing may be lost)",
        )
        print_table(
            ["error", "count"],
            [[code, n] for code, n in r["errors_by_code"].items()] or [["none", 0]],
            "errors by code",
        )
        after = r["server_after_all_closed"]
        print(
            f"after all sessions closed: asyncio tasks {after['tasks']}, live session objects "
            f"{sum(after['live_session_objects'].values())} "
            f"({sum(after['live_session_objects_after_gc'].values())} after gc), sockets "
            f"{after['tcp_sockets']}; LLM {r['llm']}; client send lag p99 "
            f"{r['client_audio_send_lag_ms']['p99']:.1f} ms, loop lag p99 "
            f"{r['client_loop_lag_ms']['p99']:.1f} ms; server log warnings/errors "
            f"{r['server_log_problem_count']}"
        )
        for line in r["server_log_problems"][:5]:
            print(f"  server log: {line}")


def parse_mix(text: str) -> dict[str, float]:
    mix = {}
    for part in text.split(","):
        name, _, weight = part.partition("=")
        if name.strip() not in ("text", "audio", "tool"):
            raise SystemExit(f"--mix: unknown turn kind {name!r}")
        mix[name.strip()] = float(weight)
    return mix


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sessions", type=int, default=200)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of turns")
    parser.add_argument(
        "--stt",
        default="scripted,pocketsphinx",
        help="comma-separated runs: scripted, pocketsphinx",
    )
    parser.add_argument(
        "--pocketsphinx-sessions", type=int, default=5, help="sessions in the pocketsphinx run"
    )
    parser.add_argument("--mix", default="text=0.45,audio=0.35,tool=0.2", help="turn weights")
    parser.add_argument(
        "--think", default="2,6", help="seconds between turns: uniform in MIN,MAX (default 2,6)"
    )
    parser.add_argument(
        "--audio-sessions",
        type=float,
        default=0.2,
        help="fraction of sessions with output_modalities ['audio'] (espeak)",
    )
    parser.add_argument("--ramp", type=float, default=5.0, help="seconds to connect everyone")
    parser.add_argument(
        "--grace", type=float, default=30.0, help="seconds to wait for what is owed"
    )
    parser.add_argument("--llm-delay", type=float, default=0.02, help="seconds between LLM chunks")
    parser.add_argument("--llm-chunks", type=int, default=10)
    parser.add_argument("--sentences", type=int, default=10, help="distinct spoken sentences")
    parser.add_argument("--output", default="load.json")
    add_common_arguments(parser)
    args = parser.parse_args()
    args.mix = parse_mix(args.mix)
    lo, hi = (float(x) for x in args.think.split(","))
    args.think = (lo, hi)
    apply_common_arguments(args)
    results = run(bench(args))
    results["settings"] = {**vars(args), "silence_duration_ms": SILENCE_MS}
    report(results)
    path = write_json(args.output, results)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
