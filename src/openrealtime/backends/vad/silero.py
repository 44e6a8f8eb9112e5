"""Silero VAD (v5 ONNX, 16 kHz): one shared inference session, a small state per stream.

The model takes 512 new samples preceded by the last 64 samples of the previous frame
(its "context"), plus a recurrent state, and returns a speech probability and the new state.
`InferenceSession.run` is thread-safe, so every stream shares one session and keeps only
its own state, context and partial frame; `infer_batch` steps several streams in one call.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import time
from collections.abc import Sequence
from importlib import resources
from typing import TYPE_CHECKING, Any

from ..base import Capabilities
from ..errors import BackendError, MissingDependencyError
from .base import VadStream

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)

_MODEL = "silero_vad_16k_op15.onnx"
_RATE = 16000
_FRAME = 512  # 32 ms: the only frame size v5 accepts at 16 kHz
_CONTEXT = 64
_STATE_SHAPE = (2, 1, 128)
_SCALE = 1 / 32768  # int16 -> [-1, 1), as the model takes it (a Python float keeps float32)
# The energy gate: a frame whose RMS is below -60 dBFS (about 33 of 32768) is not speech — a
# whisper a metre away is ~-40 dBFS — so its probability is 0 without running the model. Most
# of a conversation's input is silence between turns, so this skips most model steps. Only
# once the model itself has let go of speech (its last probability under GATE_BELOW): Silero
# stays high for a few frames after the last sound, and turn detection counts on that tail, so
# gating it would end turns 1-2 frames earlier than the model does. The trade-off: a gated
# frame does not advance the stream's recurrent state, so the next loud frame is judged as if
# the quiet ones had not happened. On the test speech (espeak sentences with digital silence
# between) the same turns are found, some boundaries one 32 ms frame apart, either way
# (tests/test_vad_gate.py); resetting the state in silence instead moved more of them.
GATE_MEAN_SQUARE = 10 ** (-60 / 10)
GATE_BELOW = 0.1
# The gate on a frame's sum of squares, on the int16 scale frames are held in (exact: the
# scale is a power of two).
_GATE_SUM_SQUARES = GATE_MEAN_SQUARE * _FRAME * 32768**2


@functools.cache
def _session() -> Any:
    """Load the model once per process, whatever the number of SileroVad instances."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise MissingDependencyError("silero", "onnxruntime") from None
    opts = ort.SessionOptions()
    # One thread per call: the parallelism is many streams calling run() at once; a 32 ms
    # frame is too small to be worth splitting across threads.
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    start = time.perf_counter()
    model = resources.files(__package__).joinpath("data", _MODEL).read_bytes()
    sess = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
    names = sorted(i.name for i in sess.get_inputs())
    if names != ["input", "sr", "state"]:
        raise BackendError("silero", f"{_MODEL} has inputs {names}; expected a v5 model")
    log.info("silero model loaded", extra={"model": _MODEL, "seconds": time.perf_counter() - start})
    return sess


class SileroStream:
    """One session's detector state: the recurrent state, the context and the partial frame.
    Not thread-safe: one session feeds it in order."""

    def __init__(self, vad: SileroVad) -> None:
        self._vad = vad
        self.reset()

    def reset(self) -> None:
        # numpy is imported where a stream needs it, not with the module: the detector is
        # built at start, and numpy is ~0.1 s of it (issue 9).
        import numpy as np

        self._state = np.zeros(_STATE_SHAPE, dtype=np.float32)
        # The last frame's tail (its context) and the samples of the next frame so far.
        self._held = np.zeros(_CONTEXT, dtype=np.float32)
        self._probability = 0.0  # the model's last answer, for the energy gate

    def process(self, pcm16k: np.ndarray) -> list[float]:
        """Speech probabilities (0..1), one per complete frame, stepped here and now (with
        the energy gate, as the scheduler applies it)."""
        vad = self._vad
        return [
            0.0 if vad.is_silent(self, frame) else vad.infer_batch([self], [frame])[0]
            for frame in self.frames(pcm16k)
        ]

    def frames(self, pcm16k: np.ndarray) -> list[np.ndarray]:
        """The model inputs ([context | frame], float32, still on the int16 scale: the batch
        is scaled at once on the VAD thread) completed by this audio, in order. Called once
        per tick per session: one concatenation, and each frame a view into it (~2.5 µs for
        a 20 ms chunk, against ~6 for a frame built in its own array, issue 9)."""
        import numpy as np  # loaded since reset(): a dictionary look-up

        if pcm16k.dtype != np.int16:
            raise TypeError(f"silero needs 16 kHz int16 samples; got {pcm16k.dtype}")
        samples = np.concatenate((self._held, pcm16k), dtype=np.float32)
        whole = (len(samples) - _CONTEXT) // _FRAME * _FRAME
        # The context and the partial frame: a view, so the frames before it stay valid.
        self._held = samples[whole:]
        return [samples[start : start + _CONTEXT + _FRAME] for start in range(0, whole, _FRAME)]


class SileroVad:
    """The shared model; `new_stream()` per session."""

    name = "silero"
    sample_rate = _RATE
    frame_samples = _FRAME
    # A batch of 8 costs about a third of 8 separate calls; 64 bounds one call's latency.
    capabilities = Capabilities(max_batch=64)

    def __init__(self) -> None:
        # The model (onnxruntime and its session, ~35 MiB) loads with the first frame to
        # detect, on the VAD's worker thread, not at start; a missing onnxruntime is still
        # refused at start.
        if importlib.util.find_spec("onnxruntime") is None:
            raise MissingDependencyError("silero", "onnxruntime")
        self._session: Any = None
        self._sr: Any = None  # the model's `sr` input, made with the session

    def new_stream(self) -> SileroStream:
        return SileroStream(self)

    def is_silent(self, stream: VadStream, frame: np.ndarray) -> bool:
        """`frame` (the stream's next model input) is below the energy gate, and the model
        has let go of speech (see GATE_MEAN_SQUARE)."""
        if _own(stream)._probability >= GATE_BELOW:
            return False
        audio = frame[_CONTEXT:]
        return float(audio.dot(audio)) < _GATE_SUM_SQUARES

    def infer_batch(
        self, streams: Sequence[VadStream], frames: Sequence[np.ndarray]
    ) -> list[float]:
        """Thread-safe for distinct streams; releases the GIL while the model runs."""
        import numpy as np

        own = [_own(stream) for stream in streams]
        states = np.concatenate([stream._state for stream in own], axis=1)  # [2, B, 128]
        if self._session is None:
            self._sr = np.array(_RATE, dtype=np.int64)
            self._session = _session()
        prob, new_states = self._session.run(
            None, {"input": np.stack(frames) * _SCALE, "state": states, "sr": self._sr}
        )
        probabilities = [float(p) for p in prob[:, 0]]
        for index, stream in enumerate(own):
            stream._state = new_states[:, index : index + 1, :]
            stream._probability = probabilities[index]
        return probabilities


def _own(stream: VadStream) -> SileroStream:
    if not isinstance(stream, SileroStream):
        raise TypeError(f"silero cannot step a {type(stream).__name__}")
    return stream
