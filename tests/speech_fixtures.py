"""Real speech for tests: the tests' name for `benchmarks.lib.speech`, which the benchmarks
share (the repository root is on pytest's `pythonpath`)."""

from __future__ import annotations

import functools
import io
import os
import subprocess
import sys

import numpy as np

from benchmarks.lib.speech import speak, with_silence

__all__ = ["first_rendering", "speak", "with_silence"]

_RENDER = """
import io, sys
import numpy as np
from benchmarks.lib.speech import speak
rate, voice, *texts = sys.argv[1:]
out = io.BytesIO()
np.savez(out, *[speak(text, int(rate), voice=voice) for text in texts])
sys.stdout.buffer.write(out.getvalue())
"""


@functools.cache
def first_rendering(texts: tuple[str, ...], sample_rate: int, voice: str) -> list[np.ndarray]:
    """`texts` spoken by espeak-ng in a fresh process. espeak-ng's output for a text varies with
    what the process spoke before, which moves the assertions of tests that hinge on Whisper
    hearing robotic speech (its language detection); a fresh process renders the same audio on
    every run, whatever tests ran first."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, *sys.path])}
    done = subprocess.run(
        [sys.executable, "-c", _RENDER, str(sample_rate), voice, *texts],
        capture_output=True,
        check=True,
        env=env,
        timeout=120,
    )
    arrays = np.load(io.BytesIO(done.stdout))
    return [arrays[f"arr_{i}"] for i in range(len(texts))]
