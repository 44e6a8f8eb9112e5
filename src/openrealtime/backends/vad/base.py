"""Voice activity detection: a shared model, and a small stateful stream per session."""

from __future__ import annotations

from typing import Protocol

import numpy as np


class VadStream(Protocol):
    """Per-session detector state. Fed 16 kHz mono int16 audio in chunks of any length."""

    def process(self, pcm16k: np.ndarray) -> list[float]:
        """Speech probabilities (0..1), one per complete frame; a partial frame is kept."""
        ...

    def reset(self) -> None: ...


class VoiceActivityDetector(Protocol):
    """The shared, loaded-once model."""

    name: str
    sample_rate: int  # always 16000 for the models we ship
    frame_samples: int  # samples per probability, e.g. 512 (32 ms)

    def new_stream(self) -> VadStream: ...
