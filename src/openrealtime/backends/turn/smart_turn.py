"""Smart Turn v3.2 (Daily, BSD-2-Clause): an 8.7 MB ONNX classifier of whether a turn is finished.

It judges from the sound of the last 8 s of the turn (mostly intonation), not from the words:
on real read speech it was right about 85% of the time, but synthetic speech misleads it,
since TTS ends a cut-off phrase on a falling, finished-sounding tone.

The model file and its licence are vendored next to the Silero model
(`backends/vad/data/smart-turn-v3.2-cpu.onnx`, `SMART_TURN_LICENSE`). One inference session per
process, shared: `InferenceSession.run` is thread-safe and releases the GIL, so any number of
worker threads may call `probability_complete` at once.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Sequence
from importlib import resources
from typing import Any

import numpy as np

from openrealtime.backends.errors import BackendError, MissingDependencyError
from openrealtime.backends.turn.features import N_FRAMES, N_MELS, SAMPLE_RATE, last_window, log_mel

log = logging.getLogger(__name__)

_MODEL = "smart-turn-v3.2-cpu.onnx"
_DATA_PACKAGE = "openrealtime.backends.vad"


@functools.cache
def _session(threads: int) -> Any:
    try:
        import onnxruntime as ort
    except ImportError:
        raise MissingDependencyError("smart-turn", "onnxruntime") from None
    opts = ort.SessionOptions()
    # The parallelism is several sessions' calls at once; a second thread per call saves
    # little on a 2-core machine (see docs/models.md).
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    start = time.perf_counter()
    try:
        model = resources.files(_DATA_PACKAGE).joinpath("data", _MODEL).read_bytes()
        sess = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise BackendError("smart-turn", f"cannot load {_MODEL}: {exc}") from exc
    inputs = [(i.name, i.shape[1:]) for i in sess.get_inputs()]
    if inputs != [("input_features", [N_MELS, N_FRAMES])]:
        raise BackendError("smart-turn", f"{_MODEL} has inputs {inputs}; expected Smart Turn v3")
    log.info(
        "smart-turn model loaded", extra={"model": _MODEL, "seconds": time.perf_counter() - start}
    )
    return sess


class SmartTurn:
    """The shared model (an `EndOfTurnModel`); construct once, call from worker threads."""

    name = "smart-turn-v3.2"
    sample_rate = SAMPLE_RATE

    def __init__(self, threads: int = 1) -> None:
        self._session = _session(threads)

    def probability_complete(self, pcm16k: np.ndarray) -> float:
        """The probability that the turn in `pcm16k` (16 kHz mono int16) is finished.

        Only the last 8 s count; shorter audio is padded with silence before it.
        """
        return float(self.probabilities_complete([pcm16k])[0])

    def probabilities_complete(self, turns: Sequence[np.ndarray]) -> np.ndarray:
        """`probability_complete` for several turns in one model call (for batching sessions)."""
        if not turns:
            return np.zeros(0)
        features = np.stack([log_mel(last_window(pcm)) for pcm in turns])
        # The exported graph ends in a sigmoid, despite its output's name ("logits").
        (probabilities,) = self._session.run(None, {"input_features": features})
        return np.asarray(probabilities, dtype=np.float64)[:, 0]
