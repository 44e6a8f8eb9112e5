"""The streaming pocketsphinx decoder: partial transcripts while audio arrives."""

from __future__ import annotations

import time

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
