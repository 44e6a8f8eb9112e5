"""Idle RSS: heavy modules load when first needed, not when the server starts (issue 9:
aiortc/av with the first WebRTC call, redis with --redis-url, onnxruntime with the first
frame the VAD detects). Each check runs in a fresh interpreter with this test's sys.path."""

from __future__ import annotations

import os
import subprocess
import sys

HEAVY = ("aiortc", "av", "redis", "onnxruntime")

START = """
import sys
import numpy as np
import openrealtime.cli, openrealtime.server.app
from openrealtime.backends.vad.silero import SileroVad
stream = SileroVad().new_stream()
"""
LOADED = f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))"


def _loaded_after(program: str) -> str:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    out = subprocess.run(
        [sys.executable, "-c", program + LOADED],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    return out.stdout.strip()


def test_starting_the_server_loads_none_of_the_heavy_modules() -> None:
    assert _loaded_after(START) == ""


def test_the_vad_model_loads_with_the_first_frame() -> None:
    assert _loaded_after(START + "stream.process(np.full(512, 3000, np.int16))\n") == "onnxruntime"
