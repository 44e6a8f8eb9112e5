"""The hibari synthesizer: real audio, voices that never download, speed, streaming per clause,
barge-in, concurrent calls, and an event loop that keeps running while it speaks."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

pytest.importorskip("hibari")

from openrealtime.backends.errors import BackendError
from openrealtime.backends.tts import hibari as hibari_backend
from openrealtime.backends.tts.base import OPENAI_VOICES
from openrealtime.backends.tts.hibari import SHIPPED_VOICE, HibariSynthesizer

SENTENCE = "The quick brown fox jumps over the lazy dog."
# A minute or so of speech, several seconds of synthesis: streaming and aborts are obvious.
LONG_TEXT = " ".join(f"This is sentence number {i} of a rather long answer." for i in range(30))


@pytest.fixture(scope="module")
def synth() -> HibariSynthesizer:
    return HibariSynthesizer()


async def speak(synth: HibariSynthesizer, text: str, speed: float = 1.0) -> np.ndarray:
    chunks = [chunk async for chunk in synth.synthesize(text, SHIPPED_VOICE, speed)]
    assert all(0 < len(chunk) <= synth.sample_rate // 10 * 2 for chunk in chunks)
    return np.frombuffer(b"".join(chunks), dtype=np.int16)


def rms(pcm: np.ndarray) -> float:
    return float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2)))


async def test_speech_is_loud_and_about_as_long_as_the_text(synth: HibariSynthesizer) -> None:
    assert synth.sample_rate == 24000
    pcm = await speak(synth, SENTENCE)
    assert rms(pcm) > 1000
    ms_per_char = len(pcm) / synth.sample_rate * 1000 / len(SENTENCE)
    assert 30 < ms_per_char < 150


async def test_same_text_same_audio(synth: HibariSynthesizer) -> None:
    # A fixed noise seed by default: repeatable output, for tests and caches.
    assert np.array_equal(await speak(synth, SENTENCE), await speak(synth, SENTENCE))


async def test_empty_text_yields_nothing(synth: HibariSynthesizer) -> None:
    assert [chunk async for chunk in synth.synthesize("  ", SHIPPED_VOICE)] == []


def test_every_openai_voice_maps_to_the_shipped_voice(synth: HibariSynthesizer) -> None:
    assert {synth.resolve_voice(name) for name in OPENAI_VOICES} == {SHIPPED_VOICE}
    assert synth.resolve_voice(" Alloy ") == SHIPPED_VOICE
    assert synth.resolve_voice("heart") == SHIPPED_VOICE


@pytest.mark.parametrize("voice", ["fenrir", "emma", "fable", "kore", "en-us", ""])
async def test_voices_that_would_download_are_refused(
    synth: HibariSynthesizer, voice: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hibari.voices

    def no_download(*args: object) -> str:
        raise AssertionError("hibari tried to download a voice")

    monkeypatch.setattr(hibari.voices, "download", no_download)
    assert synth.resolve_voice(voice) is None
    with pytest.raises(BackendError, match="offline") as caught:
        await anext(aiter(synth.synthesize(SENTENCE, voice)))
    assert caught.value.backend == "tts"


def test_loading_never_downloads(monkeypatch: pytest.MonkeyPatch) -> None:
    import hibari.voices

    def no_download(*args: object) -> str:
        raise AssertionError("hibari tried to download a voice")

    monkeypatch.setattr(hibari.voices, "download", no_download)
    monkeypatch.setenv("HIBARI_HOME", "/nonexistent")
    engine = hibari_backend._Engine(threads=1)  # a fresh load, not the shared one
    clauses: list[np.ndarray] = []
    engine.synthesize("Loaded offline.", 1.0, 0, lambda audio: clauses.append(audio) or True)
    assert len(clauses) == 1 and len(clauses[0]) > 0.3 * hibari_backend.SAMPLE_RATE


async def test_speed_changes_the_duration(synth: HibariSynthesizer) -> None:
    normal = len(await speak(synth, SENTENCE))
    fast = len(await speak(synth, SENTENCE, 1.5))
    slowest = len(await speak(synth, SENTENCE, 0.1))  # clamped to hibari's 0.5
    assert fast < normal * 0.8
    assert slowest == len(await speak(synth, SENTENCE, 0.5))
    assert slowest > normal * 1.5


async def test_audio_streams_clause_by_clause(synth: HibariSynthesizer) -> None:
    text = "First, a short clause; " + LONG_TEXT
    started = time.perf_counter()
    first = None
    total = 0
    async for chunk in synth.synthesize(text, SHIPPED_VOICE):
        if first is None:
            first = time.perf_counter() - started
        total += len(chunk)
    elapsed = time.perf_counter() - started
    assert first is not None
    assert first < elapsed / 5, (first, elapsed)
    assert total / 2 / synth.sample_rate > 60  # a minute of speech, not one clause


async def test_closing_the_stream_stops_synthesis_at_once(synth: HibariSynthesizer) -> None:
    stream = synth.synthesize(LONG_TEXT, SHIPPED_VOICE)
    await anext(aiter(stream))
    started = time.perf_counter()
    await stream.aclose()  # returns once the worker has let go of the clause in hand
    assert time.perf_counter() - started < 1.0
    pcm = await speak(synth, SENTENCE)  # the synthesizer is free and unharmed
    assert rms(pcm) > 1000


async def test_cancelling_the_consumer_stops_synthesis(synth: HibariSynthesizer) -> None:
    got: list[bytes] = []

    async def consume() -> None:
        async for chunk in synth.synthesize(LONG_TEXT, SHIPPED_VOICE):
            got.append(chunk)

    task = asyncio.create_task(consume())
    while not got:
        await asyncio.sleep(0.005)
    started = time.perf_counter()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.perf_counter() - started < 1.0


async def test_concurrent_calls_give_the_same_audio_as_one_at_a_time(
    synth: HibariSynthesizer,
) -> None:
    texts = [SENTENCE, "Hello there, how can I help?", "Your order number is 4721."]
    alone = [await speak(synth, t) for t in texts]
    together = await asyncio.gather(*(speak(synth, t) for t in texts * 2))
    for expected, got in zip(alone * 2, together, strict=True):
        assert np.array_equal(expected, got)


async def test_the_event_loop_keeps_running_during_synthesis(synth: HibariSynthesizer) -> None:
    gaps: list[float] = []
    stop = asyncio.Event()

    async def tick() -> None:
        last = time.perf_counter()
        while not stop.is_set():
            await asyncio.sleep(0.005)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    ticker = asyncio.create_task(tick())
    started = time.perf_counter()
    await speak(synth, LONG_TEXT)
    elapsed = time.perf_counter() - started
    stop.set()
    await ticker
    # Synthesis takes seconds. On the loop, it would hold the loop for nearly all of them; on
    # worker threads the loop only waits now and then for the GIL (or, on a busy machine, a core).
    held = sum(gap for gap in gaps if gap > 0.05)
    assert held < elapsed / 3, (held, max(gaps), elapsed)


async def test_a_failing_model_raises_backend_error(
    synth: HibariSynthesizer, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object) -> np.ndarray:
        raise RuntimeError("onnx exploded")

    monkeypatch.setattr(synth._engine._tts, "from_ids", broken)
    with pytest.raises(BackendError, match="onnx exploded") as caught:
        await speak(synth, SENTENCE)
    assert caught.value.backend == "tts"


@pytest.mark.parametrize("text", [SENTENCE, "Hello.", "Sixty-five degrees and sunny."])
async def test_speech_starts_at_once_and_only_silence_is_trimmed(
    synth: HibariSynthesizer, text: str
) -> None:
    """hibari's own output starts with ~0.25 s of silence; the first delta is audible (-54 dBFS) within 60 ms
    of the first phoneme, and what was cut is silence: the audio is the model's, minus a
    head below -72 dBFS."""
    pcm = await speak(synth, text)
    audible = np.flatnonzero(np.abs(pcm) > 64)  # -54 dBFS
    assert audible[0] / synth.sample_rate < 0.06, f"{audible[0] / 24} ms of silence first"
    synth.load()
    engine = hibari_backend._engine
    assert engine is not None
    model = engine._tts
    raw = model.from_ids(model.ids(model.phonemize(text)[0]), 1.0, np.random.default_rng(0))
    raw16 = (np.clip(raw, -1.0, 1.0) * 32767.0).astype("<i2")
    assert np.flatnonzero(np.abs(raw16) > 64)[0] / synth.sample_rate > 0.15, "no silence to cut"
    cut = len(raw16) - len(pcm)
    assert cut > 0
    assert np.array_equal(raw16[cut:], pcm), "more than the head was changed"
    assert np.abs(raw16[:cut]).max() <= 8, "something louder than silence was cut"
