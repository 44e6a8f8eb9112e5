"""Batched VAD: the same probabilities as running each stream alone, in order, off the loop;
and a failing batch or a raising callback touches only its own sessions."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import numpy as np
from speech_fixtures import speak, with_silence

from openrealtime.backends.vad.base import VadStream, VoiceActivityDetector
from openrealtime.backends.vad.silero import SileroVad
from openrealtime.runtime.vad_scheduler import VadResult, VadScheduler


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


class FailsOnce:
    """Silero, except that the next batch after `arm()` raises."""

    def __init__(self, vad: SileroVad) -> None:
        self._vad = vad
        self.name, self.capabilities = vad.name, vad.capabilities
        self.sample_rate, self.frame_samples = vad.sample_rate, vad.frame_samples
        self.armed = False

    def new_stream(self) -> VadStream:
        return self._vad.new_stream()

    def infer_batch(
        self, streams: Sequence[VadStream], frames: Sequence[np.ndarray]
    ) -> list[float]:
        if self.armed:
            self.armed = False
            raise RuntimeError("injected VAD failure")
        return self._vad.infer_batch(streams, frames)


async def _settled(results: list[list[VadResult]], counts: list[int]) -> None:
    for _ in range(500):
        if all(len(r) >= n for r, n in zip(results, counts, strict=True)):
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"results {results} never reached {counts}")


async def test_a_failing_batch_fails_its_sessions_once_and_the_next_ones_run() -> None:
    vad = FailsOnce(SileroVad())
    detector: VoiceActivityDetector = vad  # the fake fits the contract
    scheduler = VadScheduler(detector)
    streams = [vad.new_stream() for _ in range(3)]
    results: list[list[VadResult]] = [[] for _ in streams]
    vad.armed = True
    for stream, result in zip(streams[:2], results[:2], strict=True):
        scheduler.submit(stream, _audio(0)[:1024], result.append)  # two frames each
    await _settled(results, [1, 1, 0])
    assert all(isinstance(r[0], RuntimeError) for r in results[:2])

    # The same streams, and a new one, are detected as usual afterwards.
    for stream, result in zip(streams, results, strict=True):
        scheduler.submit(stream, _audio(1), result.append)
    await _settled(results, [2, 2, 1])
    await scheduler.aclose()
    for result in results:
        assert isinstance(result[-1], list) and len(result[-1]) > 10
    assert len(results[0]) == 2 and len(results[2]) == 1  # each failure was reported once


async def test_a_raising_callback_affects_no_other_session() -> None:
    vad = SileroVad()
    scheduler = VadScheduler(vad)
    broken, healthy = vad.new_stream(), vad.new_stream()
    calls: list[VadResult] = []

    def raises(result: VadResult) -> None:
        calls.append(result)
        raise RuntimeError("a bug in one session")

    answered: list[VadResult] = []
    for _ in range(2):
        scheduler.submit(broken, _audio(1)[:2048], raises)
        scheduler.submit(healthy, _audio(2)[:2048], answered.append)
    await _settled([calls, answered], [2, 2])
    await scheduler.aclose()
    assert all(isinstance(r, list) and len(r) == 4 for r in [*calls, *answered])


async def test_a_request_takes_the_audio_when_its_tick_starts_and_is_answered_once() -> None:
    """`request`: the audio is pulled on the loop when the tick starts (all of it, however
    much came meanwhile); a pull that completes no frame is answered at once with nothing;
    one that raises is answered with its exception, and other sessions go on."""
    vad = SileroVad()
    audio = _audio(1)
    expected = vad.new_stream().process(audio)
    scheduler = VadScheduler(vad)
    stream, results, pulls = vad.new_stream(), [], []

    def pull() -> np.ndarray:
        pulls.append(len(audio))
        return audio

    scheduler.request(stream, pull, results.append)
    assert pulls == []  # not before the tick
    short, short_results = vad.new_stream(), []
    scheduler.request(short, lambda: audio[:100], short_results.append)
    broken, broken_results = vad.new_stream(), []

    def fails() -> np.ndarray:
        raise RuntimeError("injected pull failure")

    scheduler.request(broken, fails, broken_results.append)
    await _settled([results, short_results, broken_results], [1, 1, 1])
    await scheduler.aclose()
    assert pulls == [len(audio)]
    assert np.allclose(results[0], expected, atol=1e-4) and len(expected) > 10
    assert short_results == [[]]  # 100 samples: no frame yet, and no wait for one
    assert len(broken_results) == 1 and isinstance(broken_results[0], RuntimeError)


async def test_a_request_made_by_an_answer_has_its_audio_taken_before_it_is_detected() -> None:
    """Silence is answered on the loop; a session answered may request again at once (its
    next audio came meanwhile): that audio is taken, not sent to the thread untaken."""
    vad = SileroVad()
    speech = _audio(2)
    scheduler = VadScheduler(vad)
    stream, results = vad.new_stream(), []

    def answered(result: VadResult) -> None:
        results.append(result)
        if len(results) == 1:
            scheduler.request(stream, lambda: speech, results.append)

    scheduler.request(stream, lambda: np.zeros(1024, np.int16), answered)
    await _settled([results], [2])
    await scheduler.aclose()
    assert results[0] == [0.0, 0.0]  # two silent frames, under the energy gate
    assert isinstance(results[1], list) and len(results[1]) == len(speech) // 512
    assert max(results[1]) > 0.5  # the speech was detected


def test_the_tick_grows_with_the_sessions_served_between_its_bounds() -> None:
    from openrealtime.runtime.vad_scheduler import MAX_TICK_S, MIN_TICK_S, tick_s

    ticks = [tick_s(n) for n in (0, 1, 40, 60, 100, 1000)]
    assert ticks[0] == ticks[1] == MIN_TICK_S and ticks[-1] == MAX_TICK_S
    assert ticks == sorted(ticks) and MIN_TICK_S < ticks[2] < ticks[3] < MAX_TICK_S
