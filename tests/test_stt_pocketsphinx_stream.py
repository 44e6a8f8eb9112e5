"""The streaming pocketsphinx decoder: partial transcripts while audio arrives."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from speech_fixtures import speak, with_silence

from openrealtime.backends.stt.base import TranscriptionOptions
from openrealtime.backends.stt.pocketsphinx import PocketsphinxTranscriber

SENTENCE = "hello world, what is the weather like today in the city"


async def test_partials_grow_while_speaking_and_the_end_is_quick() -> None:
    transcriber = PocketsphinxTranscriber(workers=1)
    transcriber.load()
    pcm = speak(SENTENCE, 16000)
    stream = transcriber.open_stream(TranscriptionOptions())
    partials: list[tuple[float, str]] = []
    for start in range(0, len(pcm), 320):  # 20 ms chunks, as a live stream arrives
        text = await stream.feed(pcm[start : start + 320].tobytes())
        if text is not None:
            partials.append((start / 16000, text))
    began = time.perf_counter()
    done = await stream.finish()
    finish_seconds = time.perf_counter() - began

    assert partials, "no partial transcript while the audio was arriving"
    assert partials[0][0] < len(pcm) / 16000  # the first one came before the end of the audio
    assert {"weather", "world", "what"} & set(done.text.split())
    assert abs(done.audio_seconds - len(pcm) / 16000) < 0.01
    # Everything was decoded as it came: the end costs a fraction of a batch decode.
    assert finish_seconds < 0.5
    assert transcriber.decoders_created == 1  # the stream's decoder went back to the pool
    await transcriber.aclose()


async def test_silence_and_dropped_streams_give_nothing_and_free_the_decoder() -> None:
    transcriber = PocketsphinxTranscriber(workers=1)
    silence = with_silence(speak("hi", 16000)[:0], 0, 1000, 16000)
    stream = transcriber.open_stream(TranscriptionOptions())
    await stream.feed(silence.tobytes())
    assert (await stream.finish()).text == ""

    dropped = transcriber.open_stream(TranscriptionOptions())
    await dropped.feed(speak("good morning", 16000).tobytes())
    await dropped.aclose()
    again = transcriber.open_stream(TranscriptionOptions())
    await again.feed(speak("good morning", 16000).tobytes())
    assert (await again.finish()).text
    assert transcriber.decoders_created == 1
    await transcriber.aclose()


async def test_a_cancelled_feed_is_not_overlapped_by_the_close(monkeypatch) -> None:
    """Clearing a turn cancels its feed while the decoder still works on the pool (with 2
    workers); the close must wait for that call, not use the decoder alongside it."""
    from openrealtime.backends.stt import pocketsphinx

    inside: list[str] = []
    overlaps: list[tuple[str, list[str]]] = []

    def guarded(name: str, method: Any) -> Any:
        def call(self: Any, *args: Any) -> Any:
            if inside:
                overlaps.append((name, list(inside)))
            inside.append(name)
            try:
                return method(self, *args)
            finally:
                inside.remove(name)

        return call

    for name in ("feed", "end_stream"):
        monkeypatch.setattr(
            pocketsphinx._Decoder, name, guarded(name, getattr(pocketsphinx._Decoder, name))
        )
    transcriber = PocketsphinxTranscriber(workers=2)
    transcriber.load()
    stream = transcriber.open_stream(TranscriptionOptions())
    await stream.feed(speak("one", 16000).tobytes())  # the decoder is taken
    feeding = asyncio.create_task(stream.feed(speak(SENTENCE * 3, 16000).tobytes()))
    while not inside:  # the long feed is running on the pool
        await asyncio.sleep(0.001)
    feeding.cancel()
    await stream.aclose()
    assert inside == [] and overlaps == []
    await transcriber.aclose()
