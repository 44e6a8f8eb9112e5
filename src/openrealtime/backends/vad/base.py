"""Voice activity detection: a shared model, and a small state object per session.

The model is stepped in batches (`infer_batch`): one frame for each of several sessions per
call, which costs far less than a call per session (runtime/vad_scheduler.py). A session's
frames must be stepped one call after the other, since each step needs the state that the
previous one left.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from ..base import Capabilities

if TYPE_CHECKING:  # numpy loads with the first audio, not at start (issue 9)
    import numpy as np


class VadStream(Protocol):
    """One session's detector state, made by its detector and read only by it. Fed 16 kHz
    mono int16 audio in chunks of any length."""

    def frames(self, pcm16k: np.ndarray) -> list[np.ndarray]:
        """The model inputs this audio completes, in order; a partial frame is kept."""
        ...

    def reset(self) -> None: ...


class VoiceActivityDetector(Protocol):
    """The shared, loaded-once model. `capabilities.max_batch` bounds a batch."""

    name: str
    sample_rate: int  # always 16000 for the models we ship
    frame_samples: int  # samples per probability, e.g. 512 (32 ms)

    @property
    def capabilities(self) -> Capabilities: ...

    def new_stream(self) -> VadStream: ...

    def infer_batch(
        self, streams: Sequence[VadStream], frames: Sequence[np.ndarray]
    ) -> list[float]:
        """One step for each stream: `frames[i]` is the next frame of `streams[i]`, each
        stream appears once. Returns a speech probability (0..1) per stream and advances
        their states; on an exception no state has changed. Called from a worker thread."""
        ...


@runtime_checkable
class GatedDetector(Protocol):
    """A detector that can tell, without its model, that a frame is too quiet to be speech:
    the scheduler answers 0 for it and skips the model (and its state) for that frame."""

    def is_silent(self, stream: VadStream, frame: np.ndarray) -> bool:
        """`frame`, the next of `stream`, needs no model step: its probability is 0."""
        ...
