"""Whisper-style log-mel features for Smart Turn v3, in numpy.

The model was trained on `transformers.WhisperFeatureExtractor(chunk_length=8)` features of the
last 8 s of a turn, so this reproduces that extractor's arithmetic step for step (as pipecat's
`_whisper_features.py` does): the float32 waveform normalised to zero mean and unit variance
over the whole padded window, a centred, reflect-padded STFT (periodic Hann, 400/160) in
float64, a Slaney mel filterbank (80 bands, 0-8 kHz), log10 with a floor, the last frame
dropped, a dynamic range of 8 (log10 units) below the peak, then (x + 4) / 4.
Any departure shifts the model's output, so the test checks it against values recorded
from pipecat's implementation.
"""

from __future__ import annotations

import functools

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

SAMPLE_RATE = 16_000
WINDOW_SAMPLES = 8 * SAMPLE_RATE  # the model sees the last 8 s of the turn
N_MELS = 80
N_FRAMES = WINDOW_SAMPLES // 160  # 800
_N_FFT = 400
_HOP = 160
_MEL_FLOOR = 1e-10
_VARIANCE_EPS = 1e-7


def last_window(pcm16k: np.ndarray) -> np.ndarray:
    """The last 8 s of 16 kHz int16 audio as float32 in [-1, 1), zero-padded at the start."""
    if pcm16k.dtype != np.int16 or pcm16k.ndim != 1:
        raise TypeError(f"need 1-D 16 kHz int16 samples; got {pcm16k.dtype} {pcm16k.shape}")
    tail = pcm16k[-WINDOW_SAMPLES:]
    window = np.zeros(WINDOW_SAMPLES, dtype=np.float32)
    if len(tail):
        window[-len(tail) :] = tail.astype(np.float32) / 32768.0
    return window


def log_mel(window: np.ndarray) -> np.ndarray:
    """Features [80, 800] (float32) of an 8 s float window from `last_window`."""
    if window.shape != (WINDOW_SAMPLES,):
        raise ValueError(f"need {WINDOW_SAMPLES} samples; got {window.shape}")
    x = window.astype(np.float32)
    # In float32, like the reference, which normalises before promoting to float64.
    x = (x - x.mean()) / np.sqrt(x.var() + _VARIANCE_EPS)
    padded = np.pad(x.astype(np.float64), _N_FFT // 2, mode="reflect")
    frames = sliding_window_view(padded, _N_FFT)[::_HOP]  # [801, 400], no copy
    power = np.abs(np.fft.rfft(frames * _hann(), axis=-1)) ** 2  # [801, 201]
    mel = np.maximum(_MEL_FLOOR, _mel_filters().T @ power.T)  # [80, 801]
    log_spec = np.log10(mel)[:, :-1]
    log_spec = np.maximum(log_spec, log_spec.max() - 8.0)
    return ((log_spec + 4.0) / 4.0).astype(np.float32)


@functools.cache
def _hann() -> np.ndarray:
    return np.hanning(_N_FFT + 1)[:-1]  # periodic, as torch.hann_window


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    # Slaney: linear below 1 kHz, logarithmic above.
    mel = 3.0 * hz / 200.0
    log_part = hz >= 1000.0
    mel[log_part] = 15.0 + np.log(hz[log_part] / 1000.0) * (27.0 / np.log(6.4))
    return mel


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    hz = 200.0 * mel / 3.0
    log_part = mel >= 15.0
    hz[log_part] = 1000.0 * np.exp((np.log(6.4) / 27.0) * (mel[log_part] - 15.0))
    return hz


@functools.cache
def _mel_filters() -> np.ndarray:
    """Slaney-normalised triangular filters [201 FFT bins, 80 bands], as transformers builds them."""
    low, high = _hz_to_mel(np.array([0.0, SAMPLE_RATE / 2]))
    edges_mel = np.linspace(low, high, N_MELS + 2)
    edges = _mel_to_hz(edges_mel)
    bins = np.linspace(0, SAMPLE_RATE // 2, _N_FFT // 2 + 1)
    slopes = edges[None, :] - bins[:, None]
    widths = np.diff(edges)
    down = -slopes[:, :-2] / widths[:-1]
    up = slopes[:, 2:] / widths[1:]
    filters = np.maximum(0.0, np.minimum(down, up))
    return filters * (2.0 / (edges[2:] - edges[:-2]))[None, :]
