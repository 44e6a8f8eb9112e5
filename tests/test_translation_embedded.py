"""Translation sessions on the embedded defaults: real Spanish speech (espeak-ng's "es" voice)
through the official SDK's `translations.connect` to a server whose recognizer is the one
`openrealtime serve` builds (tiny.en for voice sessions, so Whisper base, multilingual, for
translation sessions), the default voice (hibari) and the scripted LLM. Every server event is
validated against the SDK's types. The audio is sent at once, not paced in real time.
"""

from __future__ import annotations

import base64
import re
from typing import Any

import pytest
from scripted_llm import ScriptedLLM, Text
from servers import ServerThread
from test_translations import _append, _connect, _recv, _speech, _until_closed

from openrealtime.backends.registry import Backends, create_backends
from openrealtime.backends.stt.faster_whisper import FasterWhisperTranscriber
from openrealtime.config import Settings

SPANISH = ("me llamo Carlos y vivo en Madrid", "¿dónde está la estación de autobuses?")
ENGLISH = ("My name is Carlos and I live in Madrid.", "Where is the bus station?")


def _words(text: str) -> set[str]:
    """Lower-case words without accents' effect on matching: "estación" → "estacion"."""
    plain = text.lower().translate(str.maketrans("áéíóúñü", "aeiounu"))
    return set(re.findall(r"\w+", plain))


def test_the_default_server_hears_spanish_and_speaks_english(
    server: ServerThread, backends: Backends, llm: ScriptedLLM
) -> None:
    assert isinstance(backends.translation_recognizer, FasterWhisperTranscriber)
    assert backends.translation_recognizer.model == "base"
    llm.script(*(Text([text]) for text in ENGLISH))
    with _connect(server) as conn:
        assert _recv(conn).type == "session.created"
        conn.session.update(
            session={
                "audio": {
                    "input": {"transcription": {"model": "gpt-4o-transcribe"}},
                    "output": {"language": "en"},
                }
            }
        )
        assert _recv(conn).type == "session.updated"
        _append(conn, _speech(*SPANISH))
        conn.session.close()
        events = _until_closed(conn)

    source = "".join(e.delta for e in events if e.type == "session.input_transcript.delta")
    target = "".join(e.delta for e in events if e.type == "session.output_transcript.delta")
    # Whisper base mishears some of espeak's words ("Cádlo", "autoluses", "estará esta acción"
    # as the padding around a phrase shifts); these it heard in every cut tried.
    assert {"llamo", "madrid", "donde"} <= _words(source), source
    assert target == " ".join(ENGLISH)
    audio = [e for e in events if e.type == "session.output_audio.delta"]
    assert len({e.elapsed_ms for e in audio}) == 2, [e.type for e in events]
    assert sum(len(base64.b64decode(e.delta)) for e in audio) > backends.tts.sample_rate
    # Each phrase was recognized as Spanish, untold: the LLM got the Spanish words.
    [request] = [r for r in llm.requests if "madrid" in _words(str(r["messages"][-1]))]
    assert "English" in request["messages"][0]["content"]


def test_a_source_language_is_kept_and_an_unknown_one_is_refused(server: ServerThread) -> None:
    """`transcription.language`, an extension the SDK's type does not have, names the source
    language: a known one is echoed back; an unknown one is an `error` naming the parameter,
    and the session goes on as it was."""
    with _connect(server) as conn:
        assert _recv(conn).type == "session.created"
        known: Any = {"audio": {"input": {"transcription": {"model": "m", "language": "es"}}}}
        conn.session.update(session=known)
        updated = _recv(conn)
        assert updated.type == "session.updated"
        assert updated.session.audio.input.transcription.model_dump()["language"] == "es"
        unknown: Any = {"audio": {"input": {"transcription": {"model": "m", "language": "xx"}}}}
        conn.session.update(session=unknown, event_id="evt_bad")
        error = _recv(conn)
        assert error.type == "error"
        assert error.error.param == "session.audio.input.transcription.language"
        assert "'xx'" in error.error.message and "es" in error.error.message
        conn.session.update(session={"audio": {"output": {"language": "fr"}}})
        again = _recv(conn)
        assert again.type == "session.updated"
        assert again.session.audio.input.transcription.model_dump()["language"] == "es"


@pytest.mark.parametrize(
    ("stt", "stt_model", "flag", "expected"),
    [
        ("faster-whisper", None, None, "base"),  # tiny.en is English-only
        ("pocketsphinx", None, None, "base"),
        ("faster-whisper", "base", None, None),  # multilingual already: itself
        ("faster-whisper", None, "small", "small"),
    ],
)
def test_translation_sessions_get_a_multilingual_recognizer(
    stt: str, stt_model: str | None, flag: str | None, expected: str | None
) -> None:
    settings = Settings(stt=stt, stt_model=stt_model, translation_stt_model=flag)
    backends = create_backends(settings)
    if expected is None:
        assert backends.translation_stt is None
        assert backends.translation_recognizer is backends.stt
    else:
        recognizer = backends.translation_recognizer
        assert isinstance(recognizer, FasterWhisperTranscriber)
        assert recognizer.model == expected
        assert recognizer.capabilities.languages is None
