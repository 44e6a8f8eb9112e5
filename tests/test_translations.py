"""Translation sessions (`/v1/realtime/translations`) through the official SDK's
`client.realtime.translations.connect`, every server event validated against the SDK's
`RealtimeTranslationServerEvent` types.

The speech is real Spanish (espeak-ng's "es" voice) and so are the VAD (Silero) and the voice
(the default synthesizer). The recognizer is scripted: the embedded default (tiny.en) is
English-only (tests/test_translation_embedded.py runs the embedded Whisper base). The LLM is
the scripted Chat Completions server: translations are deterministic.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import numpy as np
import openai
import orjson
import pytest
import websockets.exceptions
from conftest import API_KEY, _by_type
from openai.types.realtime import (
    RealtimeTranslationClientSecretCreateResponse,
    RealtimeTranslationServerEvent,
)
from scripted_llm import Fail, ScriptedLLM, Text
from servers import ServerThread
from speech_fixtures import first_rendering, speak

from openrealtime.backends.registry import Backends
from openrealtime.backends.stt.base import (
    TranscriptEvent,
    TranscriptionOptions,
    audio_seconds,
    whole_transcript,
)
from openrealtime.backends.stt.streaming import BatchTranscriber
from openrealtime.config import Settings
from openrealtime.server.app import create_app

RATE = 24_000
CHUNK_BYTES = RATE // 5 * 2  # 200 ms, the chunk OpenAI recommends
EVENTS = _by_type(RealtimeTranslationServerEvent)
SPANISH = ("hola, ¿cómo estás?", "me llamo Carlos y vivo en Madrid")
HEARD = ("Hola, ¿cómo estás?", "Me llamo Carlos y vivo en Madrid.")
TIMEOUT_S = 120


class ScriptedTranscriber(BatchTranscriber):
    """The model boundary for speech to text: each phrase, in order, is heard as the next
    scripted text; the audio it was given is kept, so tests can check the phrases' cuts."""

    name = "scripted"

    def __init__(self) -> None:
        self.texts: list[str] = []
        self.heard: list[bytes] = []

    async def transcribe(
        self, pcm16k: bytes, options: TranscriptionOptions
    ) -> AsyncIterator[TranscriptEvent]:
        self.heard.append(pcm16k)
        text = self.texts[len(self.heard) - 1] if len(self.heard) <= len(self.texts) else ""
        for event in whole_transcript(text, pcm16k):
            yield event


@pytest.fixture(scope="module")
def stt() -> ScriptedTranscriber:
    return ScriptedTranscriber()


@pytest.fixture(scope="module")
def server(
    settings: Settings, backends: Backends, stt: ScriptedTranscriber
) -> Iterator[ServerThread]:
    with ServerThread(
        create_app(settings, dataclasses.replace(backends, stt=stt, translation_stt=None))
    ) as thread:
        yield thread


@pytest.fixture
def scripted(stt: ScriptedTranscriber, llm: ScriptedLLM) -> ScriptedTranscriber:
    stt.texts, stt.heard = [], []
    return stt


def _validated(raw: bytes | str) -> Any:
    event_type = orjson.loads(raw)["type"]
    assert event_type in EVENTS, f"{event_type} is not a translation server event"
    return EVENTS[event_type].validate_json(raw)


def _recv(conn: Any) -> Any:
    return _validated(conn.recv_bytes())


@functools.cache
def _speech(*texts: str) -> bytes:
    """Each Spanish text after 1 s of silence, then 1.5 s of silence to end the last."""
    silence = np.zeros(RATE, np.int16)
    spoken = first_rendering(texts, RATE, "es")  # the same audio on every run
    parts = [np.concatenate([silence, pcm]) for pcm in spoken]
    return np.concatenate([*parts, np.zeros(RATE * 3 // 2, np.int16)]).tobytes()


def _append(conn: Any, raw: bytes) -> None:
    for i in range(0, len(raw), CHUNK_BYTES):
        conn.session.input_audio_buffer.append(
            audio=base64.b64encode(raw[i : i + CHUNK_BYTES]).decode()
        )


def _until_closed(conn: Any) -> list[Any]:
    """Every event up to `session.closed`; a watchdog fails a test that never gets there."""
    events: list[Any] = []
    watchdog = threading.Timer(TIMEOUT_S, conn.close)
    watchdog.start()
    try:
        while not events or events[-1].type != "session.closed":
            events.append(_recv(conn))
    except websockets.exceptions.ConnectionClosed:
        pytest.fail(f"no session.closed within {TIMEOUT_S} s: {[e.type for e in events]}")
    finally:
        watchdog.cancel()
    return events


def _connect(server: ServerThread) -> Any:
    client = openai.OpenAI(base_url=server.url + "/v1", api_key=API_KEY)
    return client.realtime.translations.connect(model="gpt-realtime-translate")


def test_spanish_speech_is_heard_in_english(
    server: ServerThread, scripted: ScriptedTranscriber, llm: ScriptedLLM, backends: Backends
) -> None:
    scripted.texts = list(HEARD)
    llm.script(
        Text(["Hello, ", "how are you?"]), Text(["My name is Carlos ", "and I live in Madrid."])
    )
    with _connect(server) as conn:
        created = _recv(conn)
        assert created.type == "session.created"
        assert created.session.type == "translation"
        assert created.session.model == "gpt-realtime-translate"
        conn.session.update(
            session={
                "audio": {
                    "input": {
                        "transcription": {"model": "gpt-4o-transcribe"},
                        "noise_reduction": {"type": "near_field"},
                    },
                    "output": {"language": "en"},
                }
            }
        )
        updated = _recv(conn)
        assert updated.type == "session.updated"
        assert updated.session.audio.output.language == "en"
        assert updated.session.audio.input.transcription.model == "gpt-4o-transcribe"
        assert updated.session.audio.input.noise_reduction.strength == 1.0
        _append(conn, _speech(*SPANISH))
        conn.session.close()
        events = _until_closed(conn)

    source = "".join(e.delta for e in events if e.type == "session.input_transcript.delta")
    target = "".join(e.delta for e in events if e.type == "session.output_transcript.delta")
    assert source == " ".join(HEARD)
    assert target == "Hello, how are you? My name is Carlos and I live in Madrid."
    audio = [e for e in events if e.type == "session.output_audio.delta"]
    assert audio, [e.type for e in events]
    assert {(e.sample_rate, e.channels, e.format) for e in audio} == {
        (backends.tts.sample_rate, 1, "pcm16")
    }
    assert sum(len(base64.b64decode(e.delta)) for e in audio) > backends.tts.sample_rate  # > 0.5 s
    # Two phrases, cut where the speech is: each about as long as its Spanish, in order on the
    # input timeline (elapsed_ms in whole 200 ms frames, the second after the first).
    assert len(scripted.heard) == 2
    for pcm, text in zip(scripted.heard, SPANISH, strict=True):
        spoken = len(speak(text, RATE, voice="es")) / RATE
        assert spoken - 0.3 < audio_seconds(pcm) < spoken + 1.2
    elapsed = sorted({e.elapsed_ms for e in audio})
    assert len(elapsed) == 2 and all(ms % 200 == 0 for ms in elapsed)
    first_end = 1 + len(speak(SPANISH[0], RATE, voice="es")) / RATE
    assert first_end * 1000 <= elapsed[0] <= first_end * 1000 + 1200
    # The LLM is asked to translate into English, with the first phrase as the second's context.
    request = llm.last_request
    messages = [(m["role"], m["content"]) for m in request["messages"]]
    assert "English" in messages[0][1]
    assert messages[1:] == [
        ("user", HEARD[0]),
        ("assistant", "Hello, how are you?"),
        ("user", HEARD[1]),
    ]


def test_no_input_transcript_unless_configured(
    server: ServerThread, scripted: ScriptedTranscriber, llm: ScriptedLLM
) -> None:
    scripted.texts = [HEARD[0]]
    llm.script(Text(["Hola, ¿qué tal?"]))
    with _connect(server) as conn:
        assert _recv(conn).type == "session.created"
        conn.session.update(session={"audio": {"output": {"language": "es"}}})
        assert _recv(conn).session.audio.output.language == "es"
        _append(conn, _speech(SPANISH[0]))
        conn.session.close()
        events = _until_closed(conn)
    types = [e.type for e in events]
    assert "session.input_transcript.delta" not in types
    assert "session.output_audio.delta" in types
    assert "Spanish" in llm.last_request["messages"][0]["content"]


def test_bad_input_gets_errors_and_the_session_goes_on(server: ServerThread) -> None:
    with _connect(server) as conn:
        assert _recv(conn).type == "session.created"
        conn.session.update(session={"audio": {"output": {"language": "klingon"}}}, event_id="e1")
        error = _recv(conn)
        assert error.type == "error"
        assert error.error.param == "session.audio.output.language"
        assert error.error.event_id == "e1"
        conn.session.input_audio_buffer.append(audio="not base64!", event_id="e2")
        error = _recv(conn)
        assert (error.type, error.error.code, error.error.event_id) == (
            "error",
            "invalid_audio",
            "e2",
        )
        conn.session.input_audio_buffer.append(audio=base64.b64encode(b"\x01\x02\x03").decode())
        assert _recv(conn).error.code == "invalid_audio"  # not whole PCM16 samples
        conn.send_raw(orjson.dumps({"type": "response.create"}).decode())
        error = _recv(conn)
        assert error.type == "error" and error.error.param == "type"
        conn.send_raw(orjson.dumps({"type": "session.update", "session": {"voice": "x"}}).decode())
        error = _recv(conn)
        assert error.error.code == "unknown_parameter" and error.error.param == "session.voice"
        conn.session.update(session={"audio": {"output": {"language": "fr"}}})
        updated = _recv(conn)
        assert updated.type == "session.updated" and updated.session.audio.output.language == "fr"


def test_a_dead_llm_gives_an_error_and_the_next_phrase_is_translated(
    server: ServerThread, scripted: ScriptedTranscriber, llm: ScriptedLLM
) -> None:
    scripted.texts = list(HEARD)
    llm.script(Fail(), Text(["My name is Carlos."]))
    with _connect(server) as conn:
        assert _recv(conn).type == "session.created"
        _append(conn, _speech(*SPANISH))
        conn.session.close()
        events = _until_closed(conn)
    errors = [e for e in events if e.type == "error"]
    assert len(errors) == 1 and errors[0].error.type == "server_error"
    target = "".join(e.delta for e in events if e.type == "session.output_transcript.delta")
    assert target == "My name is Carlos."
    assert any(e.type == "session.output_audio.delta" for e in events)


def test_a_wrong_key_is_refused(server: ServerThread) -> None:
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="sk-wrong")
    connection = client.realtime.translations.connect(model="gpt-realtime-translate")
    with pytest.raises(websockets.exceptions.InvalidStatus) as refused, connection:
        pass
    assert refused.value.response.status_code == 401


def test_a_client_secret_opens_a_translation_session_with_its_settings(
    server: ServerThread,
) -> None:
    client = openai.OpenAI(base_url=server.url + "/v1", api_key=API_KEY)
    raw = client.realtime.translations.client_secrets.with_raw_response.create(
        session={
            "model": "gpt-realtime-translate",
            "audio": {
                "input": {"transcription": {"model": "gpt-4o-transcribe"}},
                "output": {"language": "fr"},
            },
        },
        expires_after={"anchor": "created_at", "seconds": 600},
    )
    minted = RealtimeTranslationClientSecretCreateResponse.model_validate_json(raw.content)
    assert minted.value.startswith("ek_")
    assert minted.session.audio.output.language == "fr"
    browser = openai.OpenAI(base_url=server.url + "/v1", api_key=minted.value)
    with browser.realtime.translations.connect(model="ignored") as conn:
        created = _recv(conn)
        assert created.type == "session.created"
        assert created.session.model == "gpt-realtime-translate"
        assert created.session.audio.output.language == "fr"
        assert created.session.audio.input.transcription.model == "gpt-4o-transcribe"


def test_a_client_secret_for_an_unknown_language_is_refused(server: ServerThread) -> None:
    client = openai.OpenAI(base_url=server.url + "/v1", api_key=API_KEY)
    with pytest.raises(openai.BadRequestError) as refused:
        client.realtime.translations.client_secrets.create(
            session={"model": "gpt-realtime-translate", "audio": {"output": {"language": "xx"}}}
        )
    assert refused.value.status_code == 400
    assert "xx" in refused.value.message


def test_the_age_limit_ends_a_translation_session(settings: Settings, backends: Backends) -> None:
    short = settings.model_copy(update={"max_session_minutes": 0.02})  # 1.2 s
    with ServerThread(create_app(short, backends)) as thread, _connect(thread) as conn:
        assert _recv(conn).type == "session.created"
        error = _recv(conn)
        assert (error.type, error.error.code) == ("error", "session_expired")
        with pytest.raises(websockets.exceptions.ConnectionClosed):
            conn.recv_bytes()
