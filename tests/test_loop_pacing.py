"""Loop pacing: under the load of many streaming sessions the loop wakes at most once per
interval; with little load, or once the load is gone, it runs unpaced; and a VAD scheduler
taking many sessions' audio is what turns it on."""

from __future__ import annotations

import asyncio
import time

import numpy as np

from openrealtime.backends.vad.silero import SileroVad
from openrealtime.runtime import loop_pacing
from openrealtime.runtime.loop_pacing import LoopPacer
from openrealtime.runtime.vad_scheduler import VadScheduler

INTERVAL_S = 0.02


async def _iterations(seconds: float, each: object = None) -> int:
    """How many loop iterations pass in `seconds` (a call_soon chain counts them)."""
    loop = asyncio.get_running_loop()
    count = 0
    done = loop.create_future()
    end = time.monotonic() + seconds

    def step() -> None:
        nonlocal count
        count += 1
        if callable(each):
            each()
        if time.monotonic() >= end:
            done.set_result(None)
        else:
            loop.call_soon(step)

    loop.call_soon(step)
    await done
    return count


async def test_many_sessions_pace_the_loop_and_the_pacing_ends_with_them() -> None:
    pacer = LoopPacer(INTERVAL_S)
    assert await _iterations(0.05) > 200  # unpaced: a bare call_soon chain spins freely

    # ~100 sessions' audio taken per iteration: far above the threshold once a window closes.
    iterations = await _iterations(0.4, lambda: pacer.taken(100))
    assert pacer.pacing
    # The window that turns it on lasts WINDOW_S unpaced; from then on, one iteration per
    # interval at most.
    paced = await _iterations(0.3, lambda: pacer.taken(100))
    assert paced <= 0.3 / INTERVAL_S + 2, paced
    assert iterations > paced

    await asyncio.sleep(loop_pacing.IDLE_AFTER_S + 2 * INTERVAL_S)
    assert not pacer.pacing  # nothing taken: it stops by itself
    assert await _iterations(0.05) > 200


async def test_a_few_sessions_never_pace_the_loop() -> None:
    pacer = LoopPacer(INTERVAL_S)
    for _ in range(30):  # ~10 sessions: 50 takes a second each, 500 a second in all
        pacer.taken(5)
        await asyncio.sleep(0.01)
    assert not pacer.pacing
    assert await _iterations(0.05) > 200


async def test_a_scheduler_taking_many_sessions_audio_paces_its_loop() -> None:
    vad = SileroVad()
    scheduler = VadScheduler(vad)
    pacer = loop_pacing.pacer_for(asyncio.get_running_loop())
    streams = [vad.new_stream() for _ in range(60)]
    silence = np.zeros(320, np.int16)  # 20 ms at 16 kHz: answered on the loop, no model
    answers = 0

    def answered(_: object) -> None:
        nonlocal answers
        answers += 1

    try:
        for _ in range(15):  # 300 ms of 60 sessions streaming 20 ms chunks
            for stream in streams:
                scheduler.request(stream, lambda: silence, answered)
            await asyncio.sleep(0.02)
        assert pacer.pacing
        assert answers > 0
    finally:
        await scheduler.aclose()
    assert not pacer.pacing  # the scheduler's shutdown stops it
