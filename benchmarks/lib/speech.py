"""Real speech for tests and benchmarks, made by the embedded synthesizers (no downloads):
espeak-ng (~ms each; robotic, many voices and variants) and hibari (a natural voice, ~1% of
real time; one voice offline, "heart"), and by Festival when the system has it (Debian
`festival` with `festvox-kallpc16k`, a diphone voice, and `festvox-us-slt-hts`, an HMM voice:
other voices than ours, not used by the server; see `festival_voices()`).

Usage: `pcm = with_silence(speak("turn on the lights", 16000), 300, 800, 16000)`,
`speak("turn on the lights", engine="hibari", speed=1.3)`,
`speak("turn on the lights", voice="cmu_us_slt_arctic_hts", engine="festival")`.
"""

from __future__ import annotations

import asyncio
import functools
import os
import re
import shutil
import subprocess
import tempfile
import threading
import wave
from typing import Literal

import numpy as np
import soxr

from openrealtime.backends.tts.base import Synthesizer

Engine = Literal["espeak", "hibari", "festival"]
Synthesized = Literal["espeak", "hibari"]  # through openrealtime's own Synthesizer classes


@functools.cache
def festival_voices() -> frozenset[str]:
    """The voices Festival has here (empty when it is not installed)."""
    if shutil.which("festival") is None or shutil.which("text2wave") is None:
        return frozenset()
    listed = subprocess.run(
        ["festival", "-b", "(print (voice.list))"], capture_output=True, text=True, timeout=60
    )
    return frozenset(re.findall(r"[\w-]+", listed.stdout))


@functools.lru_cache(maxsize=256)
def _festival(text: str, voice: str, speed: float) -> tuple[bytes, int]:
    """Mono int16 PCM and its rate, from Festival's text2wave (a subprocess; ~0.5 s each)."""
    if voice not in festival_voices():
        raise ValueError(
            f"festival has no voice {voice!r} (installed: {sorted(festival_voices())})"
        )
    with tempfile.TemporaryDirectory(prefix="festival-") as tmp:
        source, out = os.path.join(tmp, "text.txt"), os.path.join(tmp, "speech.wav")
        with open(source, "w") as f:
            f.write(text)
        command = ["text2wave", "-eval", f"(voice_{voice})"]
        if speed != 1.0:  # the duration factor of the diphone voices; HTS voices ignore it
            command += ["-eval", f"(Parameter.set 'Duration_Stretch {1 / speed:.4f})"]
        # Through a file: written to stdout, text2wave leaves the WAV header's sizes empty.
        subprocess.run([*command, source, "-o", out], check=True, capture_output=True, timeout=120)
        with wave.open(out, "rb") as w:
            if w.getnchannels() != 1 or w.getsampwidth() != 2:
                raise ValueError(
                    f"text2wave gave {w.getnchannels()} channels, {w.getsampwidth()} B"
                )
            return w.readframes(w.getnframes()), w.getframerate()


@functools.cache
def _synthesizer(engine: Synthesized) -> Synthesizer:
    # Imported here: a caller of espeak alone does not load hibari's model, nor the reverse.
    if engine == "hibari":
        from openrealtime.backends.tts.hibari import HibariSynthesizer

        return HibariSynthesizer()
    from openrealtime.backends.tts.espeak import EspeakSynthesizer

    return EspeakSynthesizer()


@functools.lru_cache(maxsize=256)
def _pcm(engine: Synthesized, text: str, voice: str, speed: float) -> bytes:
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
    default and only voice), an OpenAI voice name ("alloy"; hibari speaks them all as heart),
    or a Festival voice ("kal_diphone", the default, or "cmu_us_slt_arctic_hts").
    """
    if engine == "festival":
        raw, source_rate = _festival(text, voice or "kal_diphone", speed)
    else:
        voice = voice or ("heart" if engine == "hibari" else "en-us")
        raw, source_rate = _pcm(engine, text, voice, speed), _synthesizer(engine).sample_rate
    pcm = np.frombuffer(raw, dtype=np.int16)
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
