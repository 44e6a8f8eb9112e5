"""Batched VAD: the same probabilities as running each stream alone, in order, off the loop."""

from __future__ import annotations

import asyncio

import numpy as np
from speech_fixtures import speak, with_silence

from openrealtime.backends.vad.silero import SileroVad
from openrealtime.runtime.vad_scheduler import VadScheduler


def _audio(seed: int) -> np.ndarray:
    texts = ["hello there", "good morning to you", "what time is it"]
    pcm = with_silence(speak(texts[seed % 3], 16000), 200 * seed, 300, 16000)
    return pcm


async def test_batched_probabilities_equal_each_stream_run_alone() -> None:
    vad = SileroVad()
    audios = [_audio(seed) for seed in range(5)]
    expected = [vad.new_stream().process(audio) for audio in audios]

    scheduler = VadScheduler(vad)
    streams = [vad.new_stream() for _ in audios]
    got: list[list[float]] = [[] for _ in audios]
    for start in range(0, max(len(a) for a in audios), 320):  # 20 ms chunks, interleaved
        for index, (stream, audio) in enumerate(zip(streams, audios, strict=True)):
            chunk = audio[start : start + 320]
            if len(chunk):
                scheduler.submit(stream, chunk, got[index].extend)
        await asyncio.sleep(0)
    for _ in range(500):
        if all(len(g) == len(e) for g, e in zip(got, expected, strict=True)):
            break
        await asyncio.sleep(0.01)
    await scheduler.aclose()
    for mine, alone in zip(got, expected, strict=True):
        assert len(mine) == len(alone) > 10
        assert np.allclose(mine, alone, atol=1e-4)


async def test_a_forgotten_stream_gets_nothing_more() -> None:
    vad = SileroVad()
    scheduler = VadScheduler(vad)
    stream, delivered = vad.new_stream(), []
    scheduler.submit(stream, _audio(1), delivered.append)
    scheduler.forget(stream)
    other, answered = vad.new_stream(), []
    scheduler.submit(other, _audio(2), answered.append)
    for _ in range(200):
        if answered:
            break
        await asyncio.sleep(0.01)
    await scheduler.aclose()
    assert answered and not delivered
