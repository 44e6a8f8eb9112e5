"""The default embedded pipeline (Whisper tiny.en and hibari, `Settings()` unchanged) through the
official SDK: the transcript has the spoken WORDS, for a hibari voice and for espeak's, and the
answer is spoken in hibari's voice, which Whisper understands back."""

from __future__ import annotations

import asyncio
import base64
import re
from typing import Any

import httpx
import numpy as np
import soxr
from conftest import API_KEY, recv, recv_until
from scripted_llm import Text
from servers import ServerThread
from speech_fixtures import speak, with_silence

from openrealtime.backends.registry import Backends
from openrealtime.backends.stt.base import TranscriptDone, TranscriptionOptions
from openrealtime.config import Settings

RATE = 24000
CHUNK = RATE // 50 * 2  # 20 ms of audio/pcm
ANSWER = "Sure, the lights in the kitchen are now on."


def words(text: str) -> list[str]:
    return re.findall(r"[a-z']+", text.lower())


def hibari_said(backends: Backends, text: str) -> np.ndarray:
    async def synthesize() -> bytes:
        voice = backends.tts.resolve_voice("alloy")
        assert voice is not None
        return b"".join([c async for c in backends.tts.synthesize(text, voice)])

    assert backends.tts.sample_rate == RATE
    return np.frombuffer(asyncio.run(synthesize()), np.int16)


def transcribed(conn: Any, pcm: np.ndarray) -> str:
    """Commit `pcm` (24 kHz) by hand; the completed transcript of its item."""
    raw = with_silence(pcm, 200, 200, RATE).tobytes()
    for start in range(0, len(raw), CHUNK):
        conn.input_audio_buffer.append(audio=base64.b64encode(raw[start : start + CHUNK]).decode())
    conn.input_audio_buffer.commit()
    events = recv_until(conn, "conversation.item.input_audio_transcription.completed")
    assert not [e for e in events if e.type == "error"], events
    return events[-1].transcript


def test_the_defaults_are_whisper_tiny_en_and_hibari(
    settings: Settings, server: ServerThread
) -> None:
    assert (Settings().stt, Settings().tts, Settings().stt_model) == (
        "faster-whisper",
        "hibari",
        None,
    )
    assert (settings.stt, settings.tts) == ("faster-whisper", "hibari")
    answer = httpx.get(server.url + "/v1/models", headers={"Authorization": f"Bearer {API_KEY}"})
    pipeline = answer.json()["data"][0]["pipeline"]
    assert (pipeline["stt"], pipeline["tts"]) == ("faster-whisper", "hibari")


def test_the_transcript_has_the_words_of_a_hibari_and_an_espeak_voice(
    client, llm, backends: Backends
) -> None:
    with client.realtime.connect(model="gpt-realtime") as conn:
        assert recv(conn).type == "session.created"
        conn.session.update(
            session={
                "type": "realtime",
                "output_modalities": ["text"],
                "audio": {
                    "input": {"turn_detection": None, "transcription": {"model": "whisper-1"}}
                },
            }
        )
        assert recv(conn).type == "session.updated"
        hibari = transcribed(conn, hibari_said(backends, "What is the weather like today?"))
        espeak = transcribed(conn, speak("Turn on the lights in the kitchen.", RATE))
    assert words(hibari) == ["what", "is", "the", "weather", "like", "today"]
    assert words(espeak) == ["turn", "on", "the", "lights", "in", "the", "kitchen"]


def test_the_answer_is_spoken_in_hibaris_voice_and_understood_back(
    client, llm, backends: Backends
) -> None:
    llm.script(Text([ANSWER]))
    with client.realtime.connect(model="gpt-realtime") as conn:
        assert recv(conn).type == "session.created"
        conn.response.create()
        events = recv_until(conn, "response.done")
    assert events[-1].response.status == "completed", events[-1]
    audio = b"".join(
        base64.b64decode(e.delta) for e in events if e.type == "response.output_audio.delta"
    )
    pcm = np.frombuffer(audio, np.int16)
    assert len(pcm) / RATE > 1.0

    async def heard() -> str:
        pcm16k = np.asarray(soxr.resample(pcm, RATE, 16000), np.int16).tobytes()
        events = [e async for e in backends.stt.transcribe(pcm16k, TranscriptionOptions())]
        assert isinstance(events[-1], TranscriptDone)
        return events[-1].text

    assert words(asyncio.run(heard())) == words(ANSWER)
