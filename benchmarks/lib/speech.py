"""Real speech for tests and benchmarks, made by the embedded espeak-ng synthesizer (no
downloads, ~ms each).

Usage: `pcm = with_silence(speak("turn on the lights", 16000), 300, 800, 16000)`.
"""

from __future__ import annotations

import asyncio
import functools
import threading

import numpy as np
import soxr

from openrealtime.backends.tts.espeak import EspeakSynthesizer


@functools.cache
def _synthesizer() -> EspeakSynthesizer:
    return EspeakSynthesizer()


@functools.lru_cache(maxsize=256)
def _espeak_pcm(text: str, voice: str, speed: float) -> bytes:
    synth = _synthesizer()
    backend_voice = synth.resolve_voice(voice)
    if backend_voice is None:
        raise ValueError(f"espeak has no voice {voice!r}")

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
    text: str, sample_rate: int = 24000, voice: str = "en-us", speed: float = 1.0
) -> np.ndarray:
    """`text` spoken by espeak-ng as mono int16 at `sample_rate`.

    `voice` is an espeak voice ("en-us", "en-us+f3") or an OpenAI voice name ("alloy").
    """
    pcm = np.frombuffer(_espeak_pcm(text, voice, speed), dtype=np.int16)
    source_rate = _synthesizer().sample_rate
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
