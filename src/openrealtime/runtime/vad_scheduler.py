"""Voice activity detection for every session of a process, batched, off the event loop.

Each 32 ms frame of each session needs one step of the VAD model. Run inline, that is the
largest per-session cost on the one thread that serves every socket. Here the loop frames each
session's new audio (cheap: only a chunk that completes a frame costs anything) and queues the
frames; one job per tick, on the one VAD thread, takes the frames of every session queued since
the last job and steps the model in batches — one frame per session per batch, because each
frame's step needs the state the previous one left. A batch of 16 costs about a third of 16
single steps, and the model releases the GIL while it runs, so the VAD uses the second core.
One job per tick, not per session or frame: while a job runs (and for up to a tick after the
last one started, `tick_s`), the next tick's frames gather, so the round trips to the thread do
not grow with the sessions, and the batches do.

A detector with an energy gate (`GatedDetector`) answers 0 for a frame too quiet to be speech
without the model: a session whose queued frames are all below it is answered on the loop, at
once, without waiting for a tick or the thread (the frames that end a turn are mostly such).

A session may `submit` its audio as it comes, or `request` detection and have its audio pulled
when the tick starts: everything it appended by then, in one piece, so a session pays for
resampling and framing once per tick, not once per 20 ms chunk, and is answered once.

Results come back per submission, in the order each session submitted its audio, so the
session's later input can wait for them; audio that completes no frame is held by the stream
and waits for nothing (a request that pulls such audio is answered at once, with no
probabilities).

One scheduler serves every session, so a fault stays with the sessions it touches: a batch
that fails is reported to each session in it (that tick's audio of theirs is dropped, their
later audio is detected as usual), and a session's callback that raises is logged and
affects no other.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from ..backends.vad.base import GatedDetector, VadStream, VoiceActivityDetector
from .loop_pacing import pacer_for

log = logging.getLogger(__name__)

# At most one job per tick while busy: Silero costs ~195 µs per frame stepped alone, ~65 µs per
# frame in batches of 16 or more, so a few ms of gathering pays for itself in CPU (and in delay
# adds at most a tick, only when another job ran just before). The tick grows with the sessions
# the last one served: a session's share of a tick (its audio taken, resampled, framed,
# answered) costs much the same however much audio it brings, and with many sessions the loop
# is the bottleneck. At 200 sessions on 2 workers, 16 and 24 ms as the maximum cost the same
# CPU, and 16 ms kept the p50 lag lower (13-35 ms against 13-49 over 10 runs each; p99 passed
# 4 of 10 against 2 of 10: docs/benchmarks.md, round 5). A few sessions keep 8 ms ticks, and
# the latency they bring.
MIN_TICK_S = 0.008
MAX_TICK_S = 0.016
TICK_PER_SESSION_S = 0.00024  # 8 ms up to ~33 sessions, 16 ms from ~67


def tick_s(sessions: int) -> float:
    """The least time between two jobs' starts, after a tick that served `sessions`."""
    return min(MAX_TICK_S, max(MIN_TICK_S, sessions * TICK_PER_SESSION_S))


# What a submission ends with: a probability per frame, or why its audio could not be detected.
VadResult = list[float] | Exception
Deliver = Callable[[VadResult], None]
Pull = Callable[[], np.ndarray]


@dataclass(slots=True)
class _Submission:
    frames: list[np.ndarray]
    deliver: Deliver
    pull: Pull | None = None  # a request whose audio is not taken yet
    failure: Exception | None = None  # why its audio could not be taken


@dataclass(slots=True)
class _StreamWork:
    """One stream's share of a job, on the VAD thread: its frames, and how far they got."""

    stream: VadStream
    frames: list[np.ndarray]
    per_submission: list[int]  # how many of the frames each submission brought
    probabilities: list[float] = field(default_factory=list)
    error: Exception | None = None

    def results(self) -> list[VadResult]:
        """One result per submission, in order."""
        if self.error is not None:
            return [self.error] * len(self.per_submission)
        out: list[VadResult] = []
        start = 0
        for count in self.per_submission:
            out.append(self.probabilities[start : start + count])
            start += count
        return out


class VadScheduler:
    def __init__(self, vad: VoiceActivityDetector) -> None:
        self._vad = vad
        self._max_batch = max(1, vad.capabilities.max_batch)
        self._is_silent = vad.is_silent if isinstance(vad, GatedDetector) else None
        self._executor = ThreadPoolExecutor(
            1, thread_name_prefix="vad", initializer=name_os_thread, initargs=("vad",)
        )
        # stream -> its submissions not yet sent to the thread, in order
        self._pending: dict[VadStream, list[_Submission]] = {}
        # stream -> its submissions in the job running now (a forgotten stream is taken out)
        self._running: dict[VadStream, list[_Submission]] = {}
        self._wake = asyncio.Event()
        loop = asyncio.get_running_loop()
        self._pacer = pacer_for(loop)  # told what is taken: many sessions pace the loop
        self._task = loop.create_task(self._run())

    def submit(self, stream: VadStream, pcm16k: np.ndarray, deliver: Deliver) -> bool:
        """Detect speech in the next audio of `stream`; `deliver` gets, on the loop, in the
        order audio was submitted for that stream, one probability per completed frame, or
        the exception that stopped it. False (and no delivery) when the audio completes no
        frame."""
        frames = stream.frames(pcm16k)
        if not frames:
            return False
        queued = self._pending.get(stream)
        if queued is None:
            self._pending[stream] = [_Submission(frames, deliver)]
            self._wake.set()
        else:
            queued.append(_Submission(frames, deliver))
        return True

    def request(self, stream: VadStream, pull: Pull, deliver: Deliver) -> None:
        """Detect speech in the audio `pull` returns (16 kHz), called on the loop when the
        next tick starts; `deliver` gets the result as with `submit`, always exactly once
        (unless the stream is forgotten)."""
        queued = self._pending.get(stream)
        if queued is None:
            self._pending[stream] = [_Submission([], deliver, pull)]
            self._wake.set()
        else:
            queued.append(_Submission([], deliver, pull))

    def forget(self, stream: VadStream) -> None:
        """The session is gone: drop its pending frames, and the results of a job running."""
        self._pending.pop(stream, None)
        self._running.pop(stream, None)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        last_start = -MAX_TICK_S
        tick = MIN_TICK_S
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                served = self._pull_requested()
                self._answer_silent_streams()
                if not self._pending:
                    break
                # Busy (the last job started under a tick ago): let more sessions' frames
                # gather, for larger batches. Idle: start at once.
                if (wait := last_start + tick - loop.time()) > 0:
                    await asyncio.sleep(wait)
                # The requests made meanwhile (by the answers above, or while waiting): no
                # request goes to the thread with its audio not taken.
                served += self._pull_requested()
                if not self._pending:
                    continue
                last_start = loop.time()
                tick = tick_s(served)
                self._running, self._pending = self._pending, {}
                work = [
                    _StreamWork(
                        stream,
                        [frame for sub in subs for frame in sub.frames],
                        [len(sub.frames) for sub in subs],
                    )
                    for stream, subs in self._running.items()
                ]
                try:
                    await loop.run_in_executor(self._executor, self._detect, work)
                except Exception as exc:  # a bug here: only this job's sessions fail
                    log.exception("speech detection failed for a job of %d sessions", len(work))
                    for one in work:
                        one.error = one.error or exc
                running, self._running = self._running, {}
                for one in work:
                    subs = running.get(one.stream)
                    if subs is None:
                        continue  # forgotten while the job ran
                    for sub, result in zip(subs, one.results(), strict=True):
                        self._deliver(sub, result if sub.failure is None else sub.failure)

    def _pull_requested(self) -> int:
        """On the loop: take the audio of each request and frame it; answer at once, in
        order, the requests at the head of a stream's queue that completed no frame (an
        answer may bring a new request: it is pulled too). Returns how many were taken."""
        taken = 0
        todo = list(self._pending.items())
        while todo:
            stream, subs = todo.pop()
            if self._pending.get(stream) is not subs:
                continue  # answered or forgotten meanwhile
            for sub in subs:
                if (pull := sub.pull) is not None:
                    sub.pull = None
                    taken += 1
                    try:
                        sub.frames = stream.frames(pull())
                    except Exception as exc:  # that session's bug: it is told, as for a batch
                        log.exception("could not take a session's audio for speech detection")
                        sub.frames, sub.failure = [], exc
            while subs and not subs[0].frames and subs[0].pull is None:
                sub = subs.pop(0)
                self._deliver(sub, sub.failure or [])
            if not subs:
                if self._pending.get(stream) is subs:
                    del self._pending[stream]
            elif any(sub.pull is not None for sub in subs):
                todo.append((stream, subs))
        if taken:
            self._pacer.taken(taken)
        return taken

    def _answer_silent_streams(self) -> None:
        """On the loop, at once: 0 for every frame of each stream whose queued frames are all
        below the energy gate (no job is running, so no stream's state is changing)."""
        is_silent = self._is_silent
        if is_silent is None:
            return
        for stream, subs in list(self._pending.items()):
            if self._pending.get(stream) is not subs:
                continue  # answered, forgotten or re-queued by a delivery meanwhile
            if all(is_silent(stream, frame) for sub in subs for frame in sub.frames):
                del self._pending[stream]
                for sub in subs:
                    self._deliver(sub, [0.0] * len(sub.frames))

    def _detect(self, work: list[_StreamWork]) -> None:
        """On the VAD thread: each stream's frames in order — those under the energy gate
        answered at once, the others one model step per stream per batch."""
        is_silent = self._is_silent
        left = work
        while left:
            batch = []
            for one in left:
                done = len(one.probabilities)
                if is_silent is not None:
                    while done < len(one.frames) and is_silent(one.stream, one.frames[done]):
                        one.probabilities.append(0.0)
                        done += 1
                if done < len(one.frames):
                    batch.append(one)
            for start in range(0, len(batch), self._max_batch):
                self._step(batch[start : start + self._max_batch])
            left = [
                one
                for one in batch
                if one.error is None and len(one.probabilities) < len(one.frames)
            ]

    def _step(self, batch: list[_StreamWork]) -> None:
        """One model step for each stream of `batch`: its next frame."""
        try:
            streams = [one.stream for one in batch]
            frames = [one.frames[len(one.probabilities)] for one in batch]
            probabilities = self._vad.infer_batch(streams, frames)
            if len(probabilities) != len(batch):
                raise RuntimeError(f"{len(probabilities)} probabilities for {len(batch)} frames")
        except Exception as exc:  # the model: only this batch's sessions fail
            log.exception("speech detection failed for a batch of %d", len(batch))
            for one in batch:
                one.error = exc
            return
        for one, probability in zip(batch, probabilities, strict=True):
            one.probabilities.append(probability)

    def _deliver(self, sub: _Submission, result: VadResult) -> None:
        try:
            sub.deliver(result)
        except Exception:  # that session's bug: every other session goes on
            log.exception("a session failed to take its speech probabilities")

    async def aclose(self) -> None:
        self._pacer.stop()
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        self._executor.shutdown(wait=False, cancel_futures=True)


def name_os_thread(name: str) -> None:
    """Name the calling thread for the OS too (/proc/<pid>/task/<tid>/comm, top -H, py-spy),
    so its CPU can be told from the event loop's; Python 3.11 names only its own object."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).prctl(15, name.encode()[:15], 0, 0, 0)  # PR_SET_NAME


_schedulers: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, dict[VoiceActivityDetector, VadScheduler]
] = weakref.WeakKeyDictionary()


def scheduler_for(vad: VoiceActivityDetector) -> VadScheduler:
    """The running loop's scheduler for `vad`, made on first use."""
    schedulers = _schedulers.setdefault(asyncio.get_running_loop(), {})
    scheduler = schedulers.get(vad)
    if scheduler is None:
        scheduler = schedulers[vad] = VadScheduler(vad)
    return scheduler


async def close_scheduler() -> None:
    """Stop the running loop's schedulers (at shutdown), if it has any."""
    for scheduler in _schedulers.pop(asyncio.get_running_loop(), {}).values():
        await scheduler.aclose()
