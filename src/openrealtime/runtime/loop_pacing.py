"""Under a load of streaming sessions, the event loop polls its sockets at most every
POLL_INTERVAL_S.

Why: with a hundred sessions each sending a 20 ms chunk, an unpaced loop wakes for almost every
message — one `epoll_wait`, one context switch, one pass over its timers and ready queue, one
TCP acknowledgement per read — and those per-wake-up costs were the largest share of a
speaking session's CPU that was left (issue 9). Paced, one wake-up serves every socket that
became readable meanwhile. At 200 sessions on 2 workers this cut the server's CPU by about a
quarter (0.58-0.68% of a core per session to 0.47), the client's too (fewer acknowledgements),
and added ~10 ms to the p50 of `speech_stopped` (docs/benchmarks.md, round 6).

How: a callback that re-arms itself with `call_soon` runs once per loop iteration; it sleeps
until POLL_INTERVAL_S has passed since its last run. While it is armed the loop never blocks in
`epoll_wait` (a ready callback makes its timeout 0), so the sleep is the only wait: the loop
does an iteration's work, then waits out the rest of the interval. The sleep releases the GIL:
the VAD thread runs meanwhile. Input waits at most one interval longer to be read.

When: only while the loop serves many streaming sessions: the VAD scheduler tells `taken` how
many sessions' audio it takes (about 50 a second for each session streaming 20 ms chunks, on the
silent path too); pacing starts from PACE_FROM_PER_S, stops below PACE_UNTIL_PER_S (measured
over WINDOW_S), and stops by itself when nothing has been taken for IDLE_AFTER_S. A quiet
server never wakes on its own, and a few sessions (or text-only ones) keep the loop's full
responsiveness.
"""

from __future__ import annotations

import asyncio
import time
import weakref

POLL_INTERVAL_S = 0.008  # 6 ms cost more CPU (0.50%); 10 ms more lag at 300 sessions
PACE_FROM_PER_S = 1500  # sessions' audio taken a second: ~30 sessions streaming
PACE_UNTIL_PER_S = 1000  # ~20
WINDOW_S = 0.1
IDLE_AFTER_S = 0.25


class LoopPacer:
    """Paces the event loop it is told the load of (on that loop): `taken`, how many
    sessions' audio the VAD took."""

    def __init__(self, interval_s: float = POLL_INTERVAL_S) -> None:
        self._interval_s = interval_s
        self._on = False
        self._last_run = 0.0  # when the pacing callback last ran (monotonic)
        self._window_start = time.monotonic()
        self._taken = 0  # in the window so far

    @property
    def pacing(self) -> bool:
        return self._on

    def taken(self, sessions: int) -> None:
        """The VAD took the audio of `sessions` sessions."""
        self._taken += sessions
        now = time.monotonic()
        elapsed = now - self._window_start
        if elapsed < WINDOW_S:
            return
        rate = self._taken / elapsed
        self._taken = 0
        self._window_start = now
        if rate < (PACE_UNTIL_PER_S if self._on else PACE_FROM_PER_S):
            self._on = False
        elif not self._on:
            self._on = True
            self._last_run = now
            asyncio.get_running_loop().call_soon(self._pace)

    def stop(self) -> None:
        self._on = False

    def _pace(self) -> None:
        if not self._on:
            return
        now = time.monotonic()
        if now - self._window_start > IDLE_AFTER_S:
            self._on = False  # nothing taken for a while: the load is gone
            return
        wait = self._interval_s - (now - self._last_run)
        if wait > 0:
            time.sleep(wait)
            now = time.monotonic()
        self._last_run = now
        asyncio.get_running_loop().call_soon(self._pace)


_pacers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LoopPacer] = (
    weakref.WeakKeyDictionary()
)


def pacer_for(loop: asyncio.AbstractEventLoop) -> LoopPacer:
    """The pacer of `loop` (one per loop, whatever the number of schedulers on it)."""
    pacer = _pacers.get(loop)
    if pacer is None:
        pacer = _pacers[loop] = LoopPacer()
    return pacer
