"""The concurrent-voice load generator: many listening sessions streaming real-time speech,
lean enough that the client is not the limit at 200-300 sessions on the server's machine.

- Each session's whole stream is planned up front (`plan`): which pre-framed message leaves at
  chunk k. The append events are WebSocket frames built and masked once per process
  (`payloads.client_frame`) and written straight to the socket's transport, skipping the
  `websockets` client's per-message work (events are still *received* through it).
- One timer per process ticks all its sessions (`drive`): each wake-up sends every chunk that
  is due (within TICK_SLACK), instead of a sleeping task per session.
- `--client-procs K` splits the sessions over K processes (`run_shares`), each connecting its
  share, then starting on one shared schedule (CLOCK_MONOTONIC is one clock for the machine).
  Each reports its own CPU and loop lag; how late each chunk left against its schedule (the
  send lag) is in every session's log.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection

from .clients import LoopLag, open_session, recv_until, run
from .payloads import (
    SILENCE_CHUNK,
    SILENCE_MS,
    Utterance,
    client_frame,
    encode,
    session_update,
    user_message,
)

now = time.monotonic
loads = orjson.loads

CHUNK_S = 0.02
# A chunk due within this much of the timer's wake-up leaves with it: fewer wake-ups, each
# sending a few sessions' chunks, up to 2 ms early.
TICK_SLACK = 0.002
# The responsiveness probe: a tiny text item, retrieved every PROBE_INTERVAL seconds. The server
# handles a connection's events in order, so the reply waits behind any audio not yet processed:
# its round trip is how far behind real time the server is for that session.
PROBE_ITEM = user_message("probe", "item_probe")
PROBE_INTERVAL = 0.25


@dataclass
class Spoken:
    """One sentence as streamed: where it sits on the session's audio clock, when it ended."""

    start_ms: float
    end_of_speech_ms: float
    end_chunk: int  # the chunk holding its last speech sample
    end_of_speech_sent: float = 0.0


@dataclass
class SessionLog:
    send_times: list[float] = field(default_factory=list)  # by chunk index
    lags: list[float] = field(default_factory=list)
    spoken: list[Spoken] = field(default_factory=list)
    stopped: list[tuple[float, int, str]] = field(default_factory=list)  # arrival, end_ms, item
    committed: set[str] = field(default_factory=set)
    transcribed: dict[str, float] = field(default_factory=dict)
    failed: set[str] = field(default_factory=set)
    errors: list[str] = field(default_factory=list)
    probes_sent: dict[str, float] = field(default_factory=dict)  # event_id -> send time
    probe_rtt: list[float] = field(default_factory=list)
    probe_order: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class StreamPlan:
    """One session's microphone: silence, sentence, gap, sentence, ..."""

    offset_s: float  # where in the 20 ms period its chunks leave (staggered across sessions)
    first_utterance: int
    lead_chunks: int


@dataclass
class ShareResult:
    logs: list[SessionLog]
    loop_lag: list[float]
    cpu_seconds: float  # this process's CPU over the stream


def plan(
    p: StreamPlan, utterances: Sequence[Utterance], chunks: int, gap_ms: float
) -> tuple[list[int], list[Spoken]]:
    """What leaves at each chunk (-1: silence, else utterance index * 100_000 + chunk) and the
    sentences spoken."""
    out: list[int] = []
    spoken: list[Spoken] = []
    u, silence = p.first_utterance, p.lead_chunks
    while len(out) < chunks:
        out.extend([-1] * min(silence, chunks - len(out)))
        index = u % len(utterances)
        utterance = utterances[index]
        u += 1
        k = len(out)
        # Start a sentence only if it and its turn's end fit before the stream stops.
        if k + len(utterance.chunks) + (SILENCE_MS + 1000) // 20 > chunks:
            out.extend([-1] * (chunks - k))
            break
        spoken.append(
            Spoken(k * 20, k * 20 + utterance.last_speech_ms, k + utterance.last_speech_chunk)
        )
        out.extend(index * 100_000 + c for c in range(len(utterance.chunks)))
        silence = round(gap_ms / 20)
    return out, spoken


class _Frames:
    """Every append event of the run as a ready WebSocket frame, built once per process."""

    def __init__(self, utterances: Sequence[Utterance]) -> None:
        self.silence = client_frame(SILENCE_CHUNK)
        self._utterances = [[client_frame(c) for c in u.chunks] for u in utterances]

    def __getitem__(self, code: int) -> bytes:
        if code < 0:
            return self.silence
        return self._utterances[code // 100_000][code % 100_000]


async def open_listening_session(url: str) -> ClientConnection:
    """A session that listens and does not reply, with the probe's item in place."""
    ws = await open_session(url, session_update(listen=True, create_response=False), 60)
    await ws.send(PROBE_ITEM)
    await recv_until(ws, "conversation.item.done")
    return ws


async def receive(ws: ClientConnection, log: SessionLog) -> None:
    async for raw in ws:
        t = now()
        event = loads(raw)
        kind = event["type"]
        if kind == "input_audio_buffer.speech_stopped":
            log.stopped.append((t, event["audio_end_ms"], event["item_id"]))
        elif kind == "input_audio_buffer.committed":
            log.committed.add(event["item_id"])
        elif kind == "conversation.item.input_audio_transcription.completed":
            log.transcribed[event["item_id"]] = t
        elif kind == "conversation.item.input_audio_transcription.failed":
            log.failed.add(event["item_id"])
        elif kind == "conversation.item.retrieved":
            # A reply's `event_id` is the server's own; probes are answered in order.
            if log.probe_order:
                log.probe_rtt.append(t - log.probes_sent.pop(log.probe_order.pop(0)))
        elif kind == "error":
            log.errors.append(str(event["error"]))


async def drive(
    conns: Sequence[ClientConnection],
    logs: Sequence[SessionLog],
    plans: Sequence[StreamPlan],
    utterances: Sequence[Utterance],
    base: float,
    duration: float,
    gap_ms: float,
    probe_interval: float | None = PROBE_INTERVAL,
) -> None:
    """Stream every session's plan from `base` on, one timer for all, with a probe every
    `probe_interval` seconds (None: no probes)."""
    frames = _Frames(utterances)
    chunks = int(duration * 50)
    order = sorted(range(len(conns)), key=lambda i: plans[i].offset_s)
    schedule = []
    for i in order:
        codes, spoken = plan(plans[i], utterances, chunks, gap_ms)
        logs[i].spoken = spoken
        schedule.append((i, conns[i].transport, codes, base + plans[i].offset_s))
    interval = probe_interval or duration
    next_probe = [base + interval * (0.5 + random.random()) for _ in conns]
    probe_n = [0] * len(conns)
    end = base + duration
    for k in range(chunks):
        for i, transport, codes, start in schedule:
            due = start + k * CHUNK_S
            delay = due - now()
            if delay > TICK_SLACK:
                await asyncio.sleep(delay)
            sent = now()
            log = logs[i]
            log.lags.append(max(0.0, sent - due))
            log.send_times.append(sent)
            transport.write(frames[codes[k]])
            if probe_interval and sent >= next_probe[i] and next_probe[i] < end:
                event_id = f"p{probe_n[i]}"
                probe_n[i] += 1
                next_probe[i] += interval
                log.probe_order.append(event_id)
                log.probes_sent[event_id] = now()
                transport.write(client_frame(_probe(event_id)))
    for log in logs:
        for sentence in log.spoken:
            sentence.end_of_speech_sent = log.send_times[sentence.end_chunk]


def _probe(event_id: str) -> str:
    return encode(
        {"type": "conversation.item.retrieve", "item_id": "item_probe", "event_id": event_id}
    )


def outstanding(logs: Sequence[SessionLog]) -> bool:
    """Some committed turn still waits for its transcript, or a probe for its reply."""
    return any(
        len(log.committed - log.failed) > len(log.transcribed.keys() & log.committed)
        or log.probe_order
        for log in logs
    )


async def _run_share(
    pipe: Connection,
    url: str,
    plans: list[StreamPlan],
    utterances: list[Utterance],
    duration: float,
    gap_ms: float,
    grace: float,
    probe_interval: float,
) -> None:
    loop = asyncio.get_running_loop()
    conns = [await open_listening_session(url) for _ in plans]
    logs = [SessionLog() for _ in plans]
    receivers = [asyncio.create_task(receive(ws, log)) for ws, log in zip(conns, logs, strict=True)]
    pipe.send("ready")
    base = await loop.run_in_executor(None, pipe.recv)
    lag = LoopLag()
    lag.start()
    cpu = time.process_time()
    await drive(conns, logs, plans, utterances, base, duration, gap_ms, probe_interval)
    cpu = time.process_time() - cpu
    loop_lag = await lag.stop()
    deadline = now() + grace
    while now() < deadline and outstanding(logs):
        await asyncio.sleep(0.1)
    for ws in conns:
        await ws.close()
    for task in receivers:
        task.cancel()
    await asyncio.gather(*receivers, return_exceptions=True)
    pipe.send(ShareResult(logs, loop_lag, cpu))


def _share_main(pipe: Connection, *args: Any) -> None:
    try:
        run(_run_share(pipe, *args))
    except BaseException as exc:  # the parent must hear of it, not wait for ever
        pipe.send(exc)
        raise


class Shares:
    """The sessions split over `procs` client processes (spawned: no inherited event loop)."""

    def __init__(
        self,
        procs: int,
        url: str,
        plans: list[StreamPlan],
        utterances: list[Utterance],
        duration: float,
        gap_ms: float,
        grace: float,
        probe_interval: float = PROBE_INTERVAL,
    ) -> None:
        context = multiprocessing.get_context("spawn")
        self._pipes: list[Connection] = []
        self._procs = []
        for share in range(procs):
            mine, theirs = context.Pipe()
            args = (url, plans[share::procs], utterances, duration, gap_ms, grace, probe_interval)
            proc = context.Process(target=_share_main, args=(theirs, *args), daemon=True)
            proc.start()
            self._pipes.append(mine)
            self._procs.append(proc)
        self._order = [list(range(len(plans)))[share::procs] for share in range(procs)]

    async def _recv(self, pipe: Connection) -> Any:
        message = await asyncio.get_running_loop().run_in_executor(None, pipe.recv)
        if isinstance(message, BaseException):
            raise message
        return message

    async def ready(self) -> None:
        """Every share has connected its sessions."""
        await asyncio.gather(*(self._recv(pipe) for pipe in self._pipes))

    def start(self, base: float) -> None:
        for pipe in self._pipes:
            pipe.send(base)

    async def results(self) -> tuple[list[SessionLog], list[float], float]:
        """Every session's log (in plan order), the loop lags and the CPU seconds of all."""
        results: list[ShareResult] = await asyncio.gather(
            *(self._recv(pipe) for pipe in self._pipes)
        )
        logs: list[SessionLog] = [SessionLog()] * sum(len(o) for o in self._order)
        for order, result in zip(self._order, results, strict=True):
            for i, log in zip(order, result.logs, strict=True):
                logs[i] = log
        for proc in self._procs:
            proc.join(timeout=10)
        lags = [x for r in results for x in r.loop_lag]
        return logs, lags, sum(r.cpu_seconds for r in results)

    def stop(self) -> None:
        for proc in self._procs:
            if proc.is_alive():
                proc.kill()
