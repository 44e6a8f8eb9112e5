"""Idle RSS and start time: heavy modules load when first needed, not when the server starts
(issue 9: aiortc/av with the first WebRTC call, redis with --redis-url, onnxruntime with the
first frame the VAD detects, aiohttp with the first backend request; numpy, the session core
and the wire models' validators on the warm-up's thread once the server listens). Each check
runs in a fresh interpreter with this test's sys.path."""

from __future__ import annotations

import os
import subprocess
import sys

HEAVY = ("aiortc", "av", "redis", "onnxruntime")
# What `openrealtime serve` with HTTP speech backends does before it listens, and what it
# must not import by then.
SERVE_HTTP = """
import sys
from openrealtime.backends.registry import check_settings, create_backends
from openrealtime.cli import parse_settings
from openrealtime.server.app import create_app
from openrealtime.server.run import uvicorn_config
url = "http://127.0.0.1:9/v1"
settings = parse_settings(["serve", "--llm-base-url", url, "--stt", "openai",
                           "--stt-base-url", url, "--tts", "openai", "--tts-base-url", url])
check_settings(settings)
uvicorn_config(settings, create_app(settings))
create_backends(settings)
"""
NOT_AT_START = (
    *HEAVY,
    "numpy",
    "soxr",
    "aiohttp",
    "mcp",
    "ctranslate2",
    "faster_whisper",
    "openrealtime.core.session",
    "openrealtime.runtime.driver",
    "pydantic.v1",  # FastAPI imported it for a typed path parameter
    "fastapi",  # the app is plain Starlette: FastAPI's import was ~0.3 s of start
)
START = """
import sys
import numpy as np
import openrealtime.cli, openrealtime.server.app
from openrealtime.backends.vad.silero import SileroVad
stream = SileroVad().new_stream()
"""


def _loaded_after(program: str, modules: tuple[str, ...] = HEAVY) -> str:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    loaded = f"print(','.join(m for m in {modules!r} if m in sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", program + loaded],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    return out.stdout.strip()


def test_starting_the_server_loads_none_of_the_heavy_modules() -> None:
    assert _loaded_after(START) == ""


def test_the_server_answers_before_numpy_aiohttp_or_the_session_core_load() -> None:
    assert _loaded_after(SERVE_HTTP, NOT_AT_START) == ""


def test_making_the_default_backends_imports_none_of_their_models() -> None:
    """Checked, then made, as before the server listens: numpy and the models load on the
    warm-up's threads once it does."""
    program = (
        "import sys\nfrom openrealtime.backends.registry import check_settings, create_backends\n"
        "from openrealtime.config import Settings\ncheck_settings(Settings())\n"
        "create_backends(Settings())\n"
    )
    modules = ("onnxruntime", "ctranslate2", "faster_whisper", "hibari_tts", "numpy")
    assert _loaded_after(program, modules) == ""


def test_the_warm_up_loads_the_session_code_and_builds_every_validator() -> None:
    unbuilt = """
from openrealtime.protocol.base import WireModel
def unbuilt():
    todo, out = [WireModel], []
    while todo:
        model = todo.pop()
        todo += model.__subclasses__()
        out += [] if model.__pydantic_complete__ else [model.__name__]
    return out
"""
    program = (
        SERVE_HTTP
        + unbuilt
        + (
            "assert len(unbuilt()) > 20, unbuilt()  # deferred, not built at start\n"
            "from openrealtime.server.lifecycle import load_session_code\n"
            "load_session_code()\n"
            "assert unbuilt() == [], unbuilt()\n"
        )
    )
    assert _loaded_after(program, ("numpy", "openrealtime.runtime.driver")) == (
        "numpy,openrealtime.runtime.driver"
    )


def test_the_vad_model_loads_with_the_first_frame() -> None:
    assert _loaded_after(START + "stream.process(np.full(512, 3000, np.int16))\n") == "onnxruntime"


def test_the_first_backend_request_loads_aiohttp() -> None:
    program = SERVE_HTTP + (
        "import asyncio\nbackends = create_backends(settings)\nasyncio.run(backends.llm.check())\n"
    )
    assert _loaded_after(program, ("aiohttp",)) == "aiohttp"
