"""The embedded espeak-ng synthesizer: real audio, voices, speed, streaming, barge-in, locking."""

from __future__ import annotations

import asyncio
import sys
import time

import numpy as np
import pytest

from openrealtime.backends.errors import BackendError, MissingDependencyError
from openrealtime.backends.tts import espeak
from openrealtime.backends.tts.base import OPENAI_VOICES
from openrealtime.backends.tts.espeak import VOICE_MAP, EspeakSynthesizer

SENTENCE = "The quick brown fox jumps over the lazy dog."
# ~5 minutes of speech: a second or so of synthesis, so an abort that works is obvious.
LONG_TEXT = " ".join(f"This is sentence number {i} of a very long answer." for i in range(120))
FEMALE = {"alloy", "coral", "sage", "shimmer", "marin"}


@pytest.fixture(scope="module")
def synth() -> EspeakSynthesizer:
    return EspeakSynthesizer()


async def speak(synth: EspeakSynthesizer, text: str, voice: str = "en-us", speed: float = 1.0):
    backend_voice = synth.resolve_voice(voice)
    assert backend_voice is not None
    chunks = [chunk async for chunk in synth.synthesize(text, backend_voice, speed)]
    assert all(len(chunk) % 2 == 0 for chunk in chunks)
    return np.frombuffer(b"".join(chunks), dtype=np.int16)


def rms(pcm: np.ndarray) -> float:
    return float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2)))


def median_pitch(pcm: np.ndarray, sample_rate: int) -> float:
    """Median F0 in Hz of the voiced 40 ms frames, by autocorrelation."""
    frame = int(0.04 * sample_rate)
    low, high = sample_rate // 400, sample_rate // 60
    pitches = []
    for start in range(0, len(pcm) - frame, frame // 2):
        x = pcm[start : start + frame].astype(np.float64)
        x -= x.mean()
        if rms(x) < 500:
            continue
        ac = np.correlate(x, x, "full")[frame - 1 :]
        lag = low + int(np.argmax(ac[low:high]))
        if ac[lag] > 0.3 * ac[0]:
            pitches.append(sample_rate / lag)
    return float(np.median(pitches))


def engine_is_free() -> bool:
    lock = espeak._get_engine().lock
    if lock.acquire(blocking=False):
        lock.release()
        return True
    return False


async def test_speech_is_loud_and_about_as_long_as_the_text(synth: EspeakSynthesizer) -> None:
    assert synth.sample_rate == 22050
    pcm = await speak(synth, SENTENCE)
    assert rms(pcm) > 1000  # full-scale speech, far above any noise floor
    ms_per_char = len(pcm) / synth.sample_rate * 1000 / len(SENTENCE)
    assert 30 < ms_per_char < 150


async def test_empty_text_yields_nothing(synth: EspeakSynthesizer) -> None:
    assert [chunk async for chunk in synth.synthesize("  ", "en-us")] == []


async def test_every_openai_voice_resolves_to_its_own_sound(synth: EspeakSynthesizer) -> None:
    resolved = {name: synth.resolve_voice(name) for name in OPENAI_VOICES}
    assert None not in resolved.values()
    assert len(set(resolved.values())) == len(OPENAI_VOICES)
    assert synth.resolve_voice(" Alloy ") == VOICE_MAP["alloy"]

    audio = {name: await speak(synth, SENTENCE, name) for name in OPENAI_VOICES}
    signatures = {a.tobytes() for a in audio.values()}
    assert len(signatures) == len(OPENAI_VOICES)
    for name, pcm in audio.items():
        pitch = median_pitch(pcm, synth.sample_rate)
        if name in FEMALE:
            assert pitch > 150, (name, pitch)
        else:
            assert pitch < 130, (name, pitch)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("en-us", "gmw/en-US"),
        ("EN-US+f3", "gmw/en-US+f3"),
        ("en-gb", "gmw/en"),  # a language code espeak_SetVoiceByName itself rejects
        ("English (America)", "gmw/en-US"),
        ("de", "gmw/de"),
        ("en-us+mr serious", "gmw/en-US+Mr serious"),  # variant files are case-sensitive
        ("nonexistent", None),
        ("en-us+nonexistent", None),
        ("+f3", None),
        ("", None),
    ],
)
def test_espeak_voice_names(synth: EspeakSynthesizer, name: str, expected: str | None) -> None:
    assert synth.resolve_voice(name) == expected


async def test_every_resolved_name_is_accepted_by_espeak(synth: EspeakSynthesizer) -> None:
    for name in ("en-gb", "de+m3", "English (America)"):
        voice = synth.resolve_voice(name)
        assert voice is not None
        assert rms(await speak(synth, "Hallo.", voice)) > 500


async def test_unknown_backend_voice_raises(synth: EspeakSynthesizer) -> None:
    with pytest.raises(BackendError, match="no voice"):
        _ = [chunk async for chunk in synth.synthesize("Hello.", "no-such-voice")]
    assert len(await speak(synth, "Hello.")) > 0  # the failed voice change left no damage


async def test_faster_speed_gives_shorter_audio(synth: EspeakSynthesizer) -> None:
    normal = await speak(synth, SENTENCE, speed=1.0)
    fast = await speak(synth, SENTENCE, speed=1.5)
    slow = await speak(synth, SENTENCE, speed=0.75)
    assert len(fast) < 0.8 * len(normal) < 0.8 * len(slow)


async def test_audio_streams_before_synthesis_ends(synth: EspeakSynthesizer) -> None:
    text = " ".join(f"Sentence {i} goes on for quite a while." for i in range(30))
    start = time.perf_counter()
    arrivals: list[float] = []
    sizes: list[int] = []
    async for chunk in synth.synthesize(text, "en-us"):
        arrivals.append(time.perf_counter() - start)
        sizes.append(len(chunk))
    assert len(arrivals) > 100
    assert max(sizes) <= 2 * synth.sample_rate * 0.1  # small chunks (60 ms each)
    assert arrivals[0] < 0.25 * arrivals[-1], (arrivals[0], arrivals[-1])


async def test_closing_early_stops_synthesis(synth: EspeakSynthesizer) -> None:
    stream = synth.synthesize(LONG_TEXT, "en-us")
    await anext(stream)
    started = time.perf_counter()
    await stream.aclose()  # type: ignore[attr-defined]
    assert time.perf_counter() - started < 0.1
    assert engine_is_free()
    assert rms(await speak(synth, SENTENCE)) > 1000


async def test_cancelling_the_consumer_stops_synthesis(synth: EspeakSynthesizer) -> None:
    first = asyncio.Event()

    async def consume() -> None:
        async for _ in synth.synthesize(LONG_TEXT, "en-us"):
            first.set()

    task = asyncio.create_task(consume())
    await first.wait()
    started = time.perf_counter()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.perf_counter() - started < 0.1
    assert engine_is_free()
    started = time.perf_counter()
    pcm = await speak(synth, SENTENCE)
    assert time.perf_counter() - started < 0.3  # not queued behind the rest of LONG_TEXT
    assert rms(pcm) > 1000


async def test_concurrent_calls_are_serialised(synth: EspeakSynthesizer) -> None:
    short, long = "One, two, three.", SENTENCE + " " + SENTENCE
    alone_short = await speak(synth, short, "cedar")
    alone_long = await speak(synth, long, "coral")

    both = await asyncio.gather(
        speak(synth, short, "cedar"),
        speak(synth, long, "coral"),
        speak(synth, short, "cedar"),
    )
    # espeak's output varies by a few samples between runs, so compare length and pitch.
    for pcm, alone in zip(both, (alone_short, alone_long, alone_short), strict=True):
        assert abs(len(pcm) - len(alone)) < 0.02 * len(alone)
    assert median_pitch(both[0], synth.sample_rate) < 130  # still the male voice
    assert median_pitch(both[1], synth.sample_rate) > 150  # still the female one
    assert engine_is_free()


def test_missing_library_gives_an_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "espeakng_loader", None)
    with pytest.raises(MissingDependencyError, match="pip install espeakng-loader"):
        espeak._load_library()
