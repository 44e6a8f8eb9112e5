"""The 10 s encoder window for short utterances (backends/stt/whisper_window.py), with the real
packaged Whisper tiny.en: it hears the same words as the full 30 s decode, says nothing on
silence, and hands anything it cannot keep back to the full decode; with the packaged
multilingual base, it detects the language itself."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import numpy as np
import pytest
import soxr
from speech_fixtures import first_rendering, speak

from openrealtime.backends.stt.base import TranscriptDone, TranscriptionOptions
from openrealtime.backends.stt.faster_whisper import FasterWhisperTranscriber
from openrealtime.backends.stt.whisper_window import SHORT_AUDIO_S, Heard, ShortWindow

pytest.importorskip("faster_whisper")


def words(text: str) -> list[str]:
    return re.findall(r"[a-z']+", text.lower())


@pytest.fixture(scope="module")
def transcriber() -> FasterWhisperTranscriber:
    t = FasterWhisperTranscriber("tiny.en", short_window=True)
    t.load()
    return t


def window_of(t: FasterWhisperTranscriber) -> ShortWindow:
    window = t._window
    assert window is not None, "a real model has a short window"
    return window


def spoken(text: str) -> np.ndarray:
    pcm = soxr.resample(speak(text, 24000), 24000, 16000)
    return np.asarray(pcm, np.float32) / 32768.0


def full_decode(t: FasterWhisperTranscriber, audio: np.ndarray) -> str:
    model: Any = t._model
    segments, _ = model.transcribe(audio, beam_size=1, vad_filter=False)
    return " ".join(s.text.strip() for s in segments)


@pytest.mark.parametrize(
    "text", ["Turn on the lights in the kitchen please.", "Can you remind me to call my mother"]
)
def test_the_short_window_hears_the_words_of_the_full_decode(
    transcriber: FasterWhisperTranscriber, text: str
) -> None:
    audio = spoken(text)
    short = window_of(transcriber).decode(audio, None, None)
    assert short is not None
    assert words(short) == words(full_decode(transcriber, audio))
    assert len(words(short)) >= 4, short


def test_silence_is_no_words(transcriber: FasterWhisperTranscriber) -> None:
    assert window_of(transcriber).decode(np.zeros(16000, np.float32), None, None) == ""


def test_audio_longer_than_the_window_allows_is_left_to_the_full_decode(
    transcriber: FasterWhisperTranscriber,
) -> None:
    audio = np.zeros(int((SHORT_AUDIO_S + 0.5) * 16000), np.float32)
    assert window_of(transcriber).decode(audio, None, None) is None


def test_a_turn_is_decoded_in_the_short_window_and_falls_back_when_it_declines(
    transcriber: FasterWhisperTranscriber, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`transcribe` reports the short window's text; when the window declines (None), the full
    decode runs and gives the words."""
    pcm = (spoken("Play some relaxing music") * 32768).astype("<i2").tobytes()
    window = window_of(transcriber)
    calls: list[str | None] = []
    hear = window.hear

    def spy(*args: Any) -> Heard | None:
        heard = hear(*args)
        calls.append(heard.text if heard is not None else None)
        return heard

    async def done() -> TranscriptDone:
        events = [e async for e in transcriber.transcribe(pcm, TranscriptionOptions())]
        assert isinstance(events[-1], TranscriptDone)
        return events[-1]

    monkeypatch.setattr(window, "hear", spy)
    fast = asyncio.run(done())
    assert calls and calls[0] is not None and fast.text == calls[0]
    monkeypatch.setattr(window, "hear", lambda *args: Heard(None, "en"))
    slow = asyncio.run(done())
    assert words(slow.text) == words(fast.text) == ["play", "some", "relaxing", "music"]


def test_a_decode_that_says_the_utterance_twice_is_left_to_the_full_decode(
    transcriber: FasterWhisperTranscriber, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A short window's way of going astray: the words again, too few of them for the
    compression ratio to show it. Such a decode is not kept."""
    window = window_of(transcriber)
    model: Any = window._model
    inner = model.model  # the CTranslate2 model
    text = " Turn on the lights in the kitchen. Turn on the lights in the kitchen."
    doubled = window._tokenizer_class(model.hf_tokenizer, False, task="transcribe").encode(text)

    class Doubled:
        def __init__(self, result: Any) -> None:
            self.sequences_ids = [doubled]
            self.scores = [-0.1]
            self.no_speech_prob = 0.01

    class Model:
        def __getattr__(self, name: str) -> Any:
            return getattr(inner, name)

        def generate(self, *args: Any, **kwargs: Any) -> list[Any]:
            return [Doubled(r) for r in inner.generate(*args, **kwargs)]

    monkeypatch.setattr(model, "model", Model())
    assert window.decode(spoken("Turn on the lights in the kitchen."), None, None) is None


@pytest.fixture(scope="module")
def base() -> FasterWhisperTranscriber:
    t = FasterWhisperTranscriber("base", short_window=True)
    t.load()
    return t


def _spanish(text: str) -> bytes:
    """16 kHz PCM16 of espeak-ng's Spanish, rendered the same on every run."""
    return first_rendering((text,), 16000, "es")[0].astype("<i2").tobytes()


def test_a_multilingual_model_detects_the_language_in_the_short_window(
    base: FasterWhisperTranscriber, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Told no language, Whisper base hears a Spanish phrase in the 10 s window and reports the
    language it detected there: faster-whisper's 30 s path (a second 30 s encoding just to
    detect the language, then retries at higher temperatures: seconds per phrase) never runs."""
    pcm = _spanish("me llamo Carlos y vivo en Madrid")
    model: Any = base._model

    def no_full_decode(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the 30 s path ran")

    monkeypatch.setattr(model, "transcribe", no_full_decode)

    async def done() -> TranscriptDone:
        events = [e async for e in base.transcribe(pcm, TranscriptionOptions())]
        assert isinstance(events[-1], TranscriptDone)
        return events[-1]

    heard = asyncio.run(done())
    assert heard.extra == {"language": "es"}
    assert {"llamo", "madrid"} <= set(words(heard.text)), heard.text


def test_a_declined_multilingual_decode_falls_back_once_in_the_detected_language(
    base: FasterWhisperTranscriber, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the short window declines, the 30 s decode is told the language the window detected
    (no second detection) and decodes once, at temperature 0."""
    pcm = _spanish("hoy hace mucho calor en la ciudad")
    window = base._window
    assert window is not None
    hear = window.hear

    def declined(*args: Any) -> Heard:
        heard = hear(*args)
        assert heard is not None
        return Heard(None, heard.language)

    monkeypatch.setattr(window, "hear", declined)
    model: Any = base._model
    calls: list[dict[str, Any]] = []
    transcribe = model.transcribe

    def spy(audio: Any, **kwargs: Any) -> Any:
        calls.append(kwargs)
        return transcribe(audio, **kwargs)

    monkeypatch.setattr(model, "transcribe", spy)

    async def done() -> TranscriptDone:
        events = [e async for e in base.transcribe(pcm, TranscriptionOptions())]
        assert isinstance(events[-1], TranscriptDone)
        return events[-1]

    heard = asyncio.run(done())
    [call] = calls
    assert (call["language"], call["temperature"]) == ("es", 0.0)
    assert heard.extra == {"language": "es"}
    assert {"calor"} <= set(words(heard.text)), heard.text
