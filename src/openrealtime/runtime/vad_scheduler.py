"""Voice activity detection for every session of a process, batched, off the event loop.

Each 32 ms frame of each session needs one step of the VAD model. Run inline, that is the
largest per-session cost on the one thread that serves every socket. Here the frames of all
sessions wait together, and one worker thread runs them as batches — one frame per session per
batch, because each frame's step needs the state the previous one left — while the loop goes
on serving. A batch of 8 costs about a third of 8 single steps, and the model releases the GIL
while it runs, so the VAD uses the second core.
"""

from __future__ import annotations

import asyncio
import weakref
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

MAX_BATCH = 64


@dataclass(slots=True)
class _Submission:
    windows: list[np.ndarray]
    deliver: Callable[[list[float]], None]
    probabilities: list[float] = field(default_factory=list)


class VadScheduler:
    def __init__(self, vad: Any) -> None:
        self._vad = vad
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="vad")
        self._queues: dict[Any, deque[_Submission]] = {}  # stream -> its submissions, in order
        self._wake = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run())

    def submit(
        self, stream: Any, pcm16k: np.ndarray, deliver: Callable[[list[float]], None]
    ) -> bool:
        """Detect speech in the next audio of `stream`; `deliver` gets one probability per
        completed frame, on the loop, in the order audio was submitted for that stream.
        False (and no delivery) when the audio completes no frame."""
        windows = stream.windows(pcm16k)
        if not windows:
            return False
        self._queues.setdefault(stream, deque()).append(_Submission(windows, deliver))
        self._wake.set()
        return True

    def forget(self, stream: Any) -> None:
        """The session is gone: drop its pending frames."""
        self._queues.pop(stream, None)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queues:
                # One frame per stream, oldest submission first.
                batch = [(stream, queue[0]) for stream, queue in list(self._queues.items())][
                    :MAX_BATCH
                ]
                windows = np.stack([sub.windows[len(sub.probabilities)] for _, sub in batch])
                states = np.concatenate([stream.state for stream, _ in batch], axis=1)
                probs, new_states = await loop.run_in_executor(
                    self._executor, self._vad.infer, windows, states
                )
                for index, (stream, sub) in enumerate(batch):
                    queue = self._queues.get(stream)
                    if queue is None or queue[0] is not sub:
                        continue  # forgotten while the batch ran
                    stream.state = new_states[:, index : index + 1, :]
                    sub.probabilities.append(float(probs[index]))
                    if len(sub.probabilities) == len(sub.windows):
                        queue.popleft()
                        if not queue:
                            del self._queues[stream]
                        sub.deliver(sub.probabilities)

    async def aclose(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        self._executor.shutdown(wait=False, cancel_futures=True)


_schedulers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, VadScheduler] = (
    weakref.WeakKeyDictionary()
)


def scheduler_for(vad: Any) -> VadScheduler | None:
    """The running loop's scheduler, if `vad` can batch (else None: run it inline)."""
    if not hasattr(vad, "infer"):
        return None
    loop = asyncio.get_running_loop()
    scheduler = _schedulers.get(loop)
    if scheduler is None:
        scheduler = _schedulers[loop] = VadScheduler(vad)
    return scheduler


async def close_scheduler() -> None:
    """Stop the running loop's scheduler (at shutdown), if it has one."""
    scheduler = _schedulers.pop(asyncio.get_running_loop(), None)
    if scheduler is not None:
        await scheduler.aclose()
