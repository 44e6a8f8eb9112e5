"""Real speech for tests and benchmarks, made by the embedded synthesizers (no downloads):
espeak-ng (~ms each; robotic, many voices and variants) and hibari (a natural voice, ~1% of
real time; one voice offline, "heart").

Usage: `pcm = with_silence(speak("turn on the lights", 16000), 300, 800, 16000)`,
`speak("turn on the lights", engine="hibari", speed=1.3)`.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from typing import Literal

import numpy as np
import soxr

from openrealtime.backends.tts.base import Synthesizer

Engine = Literal["espeak", "hibari"]


@functools.cache
def _synthesizer(engine: Engine) -> Synthesizer:
    # Imported here: a caller of espeak alone does not load hibari's model, nor the reverse.
    if engine == "hibari":
        from openrealtime.backends.tts.hibari import HibariSynthesizer

        return HibariSynthesizer()
    from openrealtime.backends.tts.espeak import EspeakSynthesizer

    return EspeakSynthesizer()


@functools.lru_cache(maxsize=256)
def _pcm(engine: Engine, text: str, voice: str, speed: float) -> bytes:
    synth = _synthesizer(engine)
    backend_voice = synth.resolve_voice(voice)
    if backend_voice is None:
        raise ValueError(f"{engine} has no voice {voice!r}")

    async def collect() -> bytes:
        return b"".join([chunk async for chunk in synth.synthesize(text, backend_voice, speed)])

    # A thread of its own, so this works whether or not the caller is inside an event loop.
    result: list[bytes] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            result.append(asyncio.run(collect()))
        except BaseException as e:
            errors.append(e)

    thread = threading.Thread(target=run, name="speak")
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return result[0]


def speak(
    text: str,
    sample_rate: int = 24000,
    voice: str | None = None,
    speed: float = 1.0,
    *,
    engine: Engine = "espeak",
) -> np.ndarray:
    """`text` spoken by `engine` as mono int16 at `sample_rate`.

    `voice` is an espeak voice ("en-us", the default, or "en-us+f3"), hibari's "heart" (its
    default and only voice), or an OpenAI voice name ("alloy"; hibari speaks them all as heart).
    """
    voice = voice or ("heart" if engine == "hibari" else "en-us")
    pcm = np.frombuffer(_pcm(engine, text, voice, speed), dtype=np.int16)
    source_rate = _synthesizer(engine).sample_rate
    if sample_rate == source_rate:
        return pcm.copy()
    return np.asarray(soxr.resample(pcm, source_rate, sample_rate), dtype=np.int16)


def with_silence(
    pcm: np.ndarray, before_ms: float = 0.0, after_ms: float = 0.0, sample_rate: int = 24000
) -> np.ndarray:
    """`pcm` with `before_ms` of digital silence before it and `after_ms` after it."""
    before = np.zeros(round(sample_rate * before_ms / 1000), dtype=np.int16)
    after = np.zeros(round(sample_rate * after_ms / 1000), dtype=np.int16)
    return np.concatenate([before, np.asarray(pcm, dtype=np.int16), after])
