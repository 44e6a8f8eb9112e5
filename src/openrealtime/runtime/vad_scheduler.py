"""Voice activity detection for every session of a process, batched, off the event loop.

Each 32 ms frame of each session needs one step of the VAD model. Run inline, that is the
largest per-session cost on the one thread that serves every socket. Here the frames of all
sessions wait together, and one worker thread runs them as batches — one frame per session per
batch, because each frame's step needs the state the previous one left — while the loop goes
on serving. A batch of 8 costs about a third of 8 single steps, and the model releases the GIL
while it runs, so the VAD uses the second core.

A detector with an energy gate (`GatedDetector`) answers 0 for a frame too quiet to be speech
without the model: such frames are answered on the loop, in order with the session's others,
and never wait for the worker thread.

One scheduler serves every session, so a fault stays with the sessions it touches: a batch
that fails is reported to each session in it (their audio is dropped, their later audio is
detected as usual), and a session's callback that raises is logged and affects no other.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import itertools
import logging
import weakref
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from ..backends.vad.base import GatedDetector, VadStream, VoiceActivityDetector

log = logging.getLogger(__name__)

# What a submission ends with: a probability per frame, or why its audio could not be detected.
VadResult = list[float] | Exception
Deliver = Callable[[VadResult], None]


@dataclass(slots=True)
class _Submission:
    frames: list[np.ndarray]
    deliver: Deliver
    probabilities: list[float] = field(default_factory=list)


class VadScheduler:
    def __init__(self, vad: VoiceActivityDetector) -> None:
        self._vad = vad
        self._max_batch = max(1, vad.capabilities.max_batch)
        self._is_silent = vad.is_silent if isinstance(vad, GatedDetector) else None
        self._executor = ThreadPoolExecutor(
            1, thread_name_prefix="vad", initializer=name_os_thread, initargs=("vad",)
        )
        # stream -> its submissions, in order
        self._queues: dict[VadStream, deque[_Submission]] = {}
        self._wake = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run())

    def submit(self, stream: VadStream, pcm16k: np.ndarray, deliver: Deliver) -> bool:
        """Detect speech in the next audio of `stream`; `deliver` gets, on the loop, in the
        order audio was submitted for that stream, one probability per completed frame, or
        the exception that stopped it. False (and no delivery) when the audio completes no
        frame."""
        frames = stream.frames(pcm16k)
        if not frames:
            return False
        self._queues.setdefault(stream, deque()).append(_Submission(frames, deliver))
        self._wake.set()
        return True

    def forget(self, stream: VadStream) -> None:
        """The session is gone: drop its pending frames."""
        self._queues.pop(stream, None)

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queues:
                if self._is_silent is not None:
                    self._answer_silent_frames()
                    if not self._queues:
                        break
                # One frame per stream, oldest submission first.
                queues = itertools.islice(self._queues.items(), self._max_batch)
                batch = [(stream, queue[0]) for stream, queue in queues]
                try:
                    await self._step(batch)
                except Exception as exc:  # the model, or a bug here: only this batch fails
                    log.exception("speech detection failed for a batch of %d", len(batch))
                    for stream, sub in batch:
                        if self._finish(stream, sub):
                            self._deliver(sub, exc)

    async def _step(self, batch: list[tuple[VadStream, _Submission]]) -> None:
        streams = [stream for stream, _ in batch]
        frames = [sub.frames[len(sub.probabilities)] for _, sub in batch]
        loop = asyncio.get_running_loop()
        probabilities = await loop.run_in_executor(
            self._executor, self._vad.infer_batch, streams, frames
        )
        if len(probabilities) != len(batch):
            raise RuntimeError(f"{len(probabilities)} probabilities for {len(batch)} frames")
        for (stream, sub), probability in zip(batch, probabilities, strict=True):
            queue = self._queues.get(stream)
            if queue is None or queue[0] is not sub:
                continue  # forgotten while the batch ran
            sub.probabilities.append(probability)
            if len(sub.probabilities) == len(sub.frames) and self._finish(stream, sub):
                self._deliver(sub, sub.probabilities)

    def _answer_silent_frames(self) -> None:
        """Answer 0 for every stream's next frames while they are below the energy gate,
        until each stream's next frame needs the model (a delivery may submit more audio)."""
        is_silent = self._is_silent
        assert is_silent is not None
        answered = True
        while answered:
            answered = False
            for stream, queue in list(self._queues.items()):
                while queue and self._queues.get(stream) is queue:
                    sub = queue[0]
                    done = len(sub.probabilities)
                    if not is_silent(stream, sub.frames[done]):
                        break
                    answered = True
                    sub.probabilities.append(0.0)
                    if done + 1 == len(sub.frames) and self._finish(stream, sub):
                        self._deliver(sub, sub.probabilities)

    def _finish(self, stream: VadStream, sub: _Submission) -> bool:
        """Take `sub` off its stream's queue; False if it is no longer there (forgotten)."""
        queue = self._queues.get(stream)
        if queue is None or queue[0] is not sub:
            return False
        queue.popleft()
        if not queue:
            del self._queues[stream]
        return True

    def _deliver(self, sub: _Submission, result: VadResult) -> None:
        try:
            sub.deliver(result)
        except Exception:  # that session's bug: every other session goes on
            log.exception("a session failed to take its speech probabilities")

    async def aclose(self) -> None:
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
