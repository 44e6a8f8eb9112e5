"""The end-of-turn model (Smart Turn) run for every session off the event loop.

One model per process, loaded on first use in the judge's own threads (loading takes a
fraction of a second; a session's first pause pays it once). Calls run on a small thread
pool of their own, so a queue of judgements never waits behind transcriptions or synthesis
in the default executor: onnxruntime releases the GIL, so they run in parallel with the loop.
If the model cannot be loaded, every answer is None and semantic_vad falls back to a
silence wait (core/turns.py).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..backends.errors import BackendError
from ..backends.turn.base import EndOfTurnModel

log = logging.getLogger(__name__)

_executor = ThreadPoolExecutor(
    max_workers=min(2, os.cpu_count() or 1), thread_name_prefix="turn-judge"
)
_load_lock = threading.Lock()


@functools.cache
def _loaded() -> EndOfTurnModel | None:
    try:
        from ..backends.turn.smart_turn import SmartTurn

        return SmartTurn()
    except (BackendError, ImportError, OSError) as exc:
        log.warning("no end-of-turn model; semantic_vad waits for silence instead: %s", exc)
        return None


def _judge(pcm16k: np.ndarray) -> float | None:
    with _load_lock:  # one load, however many sessions pause at once
        model = _loaded()
    return None if model is None else model.probability_complete(pcm16k)


async def probability_complete(pcm16k: np.ndarray) -> float | None:
    """How likely the turn in `pcm16k` is finished; None without a model."""
    return await asyncio.get_running_loop().run_in_executor(_executor, _judge, pcm16k)


def warm() -> None:
    """Load the model now (blocking), so the first pause does not pay for it."""
    _judge(np.zeros(1600, dtype=np.int16))
