"""The end-of-turn interface: one shared, loaded-once model asked at each pause."""

from __future__ import annotations

from typing import Protocol

import numpy as np


class EndOfTurnModel(Protocol):
    name: str
    sample_rate: int  # of the audio it takes; 16000 for the models we ship

    def probability_complete(self, pcm16k: np.ndarray) -> float:
        """The probability (0..1) that the turn in `pcm16k` (mono int16) is finished.

        Blocking and thread-safe: call it from a worker thread, never on the event loop.
        """
        ...
