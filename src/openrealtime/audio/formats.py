"""The Realtime API's audio wire formats and their conversion to and from int16 samples.

Samples stay at the format's own rate here; resampling to what a backend wants is the
caller's step (see `resample.py`), so each conversion does one thing.
"""

from __future__ import annotations

from enum import StrEnum

import numpy as np

from openrealtime.audio import g711


class AudioFormat(StrEnum):
    PCM = "audio/pcm"  # PCM16 mono little-endian, 24 kHz
    PCMU = "audio/pcmu"  # G.711 μ-law, 8 kHz
    PCMA = "audio/pcma"  # G.711 A-law, 8 kHz


class AudioFormatError(ValueError):
    """Audio bytes that do not fit their declared format; the message says what to fix."""


_RATE = {AudioFormat.PCM: 24000, AudioFormat.PCMU: 8000, AudioFormat.PCMA: 8000}
_WIDTH = {AudioFormat.PCM: 2, AudioFormat.PCMU: 1, AudioFormat.PCMA: 1}


def sample_rate(fmt: AudioFormat) -> int:
    return _RATE[fmt]


def bytes_per_sample(fmt: AudioFormat) -> int:
    return _WIDTH[fmt]


def duration_ms(fmt: AudioFormat, nbytes: int) -> float:
    return nbytes / (_WIDTH[fmt] * _RATE[fmt]) * 1000.0


def decode(fmt: AudioFormat, data: bytes) -> np.ndarray:
    """Wire bytes → int16 samples at `sample_rate(fmt)`. PCM16 is a zero-copy view."""
    width = _WIDTH[fmt]
    if len(data) % width:
        raise AudioFormatError(
            f"{fmt} needs a whole number of {width}-byte samples; got {len(data)} bytes"
        )
    if fmt == AudioFormat.PCM:
        return np.frombuffer(data, "<i2")
    if fmt == AudioFormat.PCMU:
        return g711.ulaw_decode(data)
    return g711.alaw_decode(data)


def encode(fmt: AudioFormat, pcm: np.ndarray) -> bytes:
    """int16 samples at `sample_rate(fmt)` → wire bytes."""
    if fmt == AudioFormat.PCM:
        if pcm.dtype != np.int16:
            raise TypeError(f"audio/pcm encode needs int16 samples; got {pcm.dtype}")
        return pcm.astype("<i2", copy=False).tobytes()
    if fmt == AudioFormat.PCMU:
        return g711.ulaw_encode(pcm)
    return g711.alaw_encode(pcm)
