"""PocketSphinx backend on real (espeak-ng) speech.

Its accuracy is low, so the assertions are about recognising *something* of the sentence, not
about the words: "hello world, what is the weather today" comes back as
"hello world what is that whether to do yeah".
"""

from __future__ import annotations

import asyncio
import re
import time

import numpy as np
import pytest
from speech_fixtures import speak, with_silence

from openrealtime.backends.stt.base import (
    Transcriber,
    TranscriptDelta,
    TranscriptDone,
    TranscriptEvent,
    TranscriptionOptions,
)
from openrealtime.backends.stt.pocketsphinx import PocketsphinxTranscriber

RATE = 16000
OPTIONS = TranscriptionOptions()
SENTENCE = "hello world, what is the weather today"
CONTENT_WORDS = {"hello", "world", "weather", "today"}


def spoken(text: str) -> bytes:
    # A little silence around the words, as a VAD-cut utterance has.
    return with_silence(speak(text, RATE), 300, 800, RATE).tobytes()


def words(text: str) -> list[str]:
    return re.findall(r"[a-z']+", text.lower())


async def collect(t: Transcriber, pcm: bytes) -> list[TranscriptEvent]:
    return [event async for event in t.transcribe(pcm, OPTIONS)]


@pytest.fixture(scope="module")
def transcriber() -> PocketsphinxTranscriber:
    return PocketsphinxTranscriber(workers=2)


async def test_clear_sentence(transcriber: PocketsphinxTranscriber) -> None:
    pcm = spoken(SENTENCE)
    events = await collect(transcriber, pcm)

    delta, done = events
    assert isinstance(delta, TranscriptDelta) and isinstance(done, TranscriptDone)
    assert delta.text == done.text
    assert done.audio_seconds == pytest.approx(len(pcm) / 2 / RATE)
    heard = set(words(done.text))
    # Measured: 4 of the reference words come back, 2 of them content words.
    assert heard & CONTENT_WORDS, done.text
    assert len(heard & set(words(SENTENCE))) >= 2, done.text


@pytest.mark.parametrize(
    "pcm",
    [b"", b"\x01", b"\x00\x00" * 160, b"\x00\x00" * 2 * RATE],
    ids=["empty", "odd-byte", "10ms", "2s-silence"],
)
async def test_silence_and_short_audio_give_empty_transcript(
    transcriber: PocketsphinxTranscriber, pcm: bytes
) -> None:
    assert await collect(transcriber, pcm) == [TranscriptDone("", len(pcm) // 2 / RATE)]


async def test_quiet_noise_gives_empty_transcript(transcriber: PocketsphinxTranscriber) -> None:
    noise = (np.random.default_rng(0).standard_normal(RATE) * 30).astype("<i2")
    assert await collect(transcriber, noise.tobytes()) == [TranscriptDone("", 1.0)]


async def test_concurrent_transcriptions_share_a_few_decoders() -> None:
    t = PocketsphinxTranscriber(workers=2)
    clips = [spoken(SENTENCE), spoken("please turn off the lights in the kitchen")]

    results = await asyncio.gather(*(collect(t, clips[i % 2]) for i in range(4)))

    texts = [r[-1].text for r in results]
    # The same audio gives the same transcript, whichever decoder it got.
    assert texts[0] == texts[2] and texts[1] == texts[3], texts
    assert texts[0] != texts[1] and set(words(texts[0])) & CONTENT_WORDS, texts
    assert t.decoders_created == 2  # one per worker, not one per utterance

    assert (await collect(t, clips[0]))[-1].text == texts[0]
    assert t.decoders_created == 2  # returned to the pool and reused
    await t.aclose()


async def test_a_decoder_forgets_the_previous_utterance() -> None:
    """A pooled decoder must not carry one session's audio into the next transcript."""
    t = PocketsphinxTranscriber(workers=1)
    clip = spoken(SENTENCE)
    first = (await collect(t, clip))[-1].text
    loud_noise = (np.random.default_rng(1).standard_normal(RATE) * 3000).astype("<i2")
    await collect(t, loud_noise.tobytes())
    await collect(t, spoken("please turn off the lights in the kitchen"))
    assert (await collect(t, clip))[-1].text == first
    assert t.decoders_created == 1
    await t.aclose()


async def test_decoding_does_not_stall_the_event_loop(
    transcriber: PocketsphinxTranscriber,
) -> None:
    """The binding holds the GIL while decoding, so the transcriber feeds it short blocks."""
    pcm = spoken(SENTENCE)
    transcriber.load()
    lags: list[float] = []

    async def tick() -> None:
        last = time.perf_counter()
        while True:
            await asyncio.sleep(0.005)
            now = time.perf_counter()
            lags.append(now - last)
            last = now

    ticker = asyncio.create_task(tick())
    started = time.perf_counter()
    await collect(transcriber, pcm)
    decode_seconds = time.perf_counter() - started
    ticker.cancel()

    # Measured ~50 ms at worst while the decode takes ~1 s.
    assert max(lags) < min(0.5, decode_seconds / 2), (max(lags), decode_seconds)
