"""The translation session's sans-I/O core: phrases cut from VAD probabilities, in order, on
the input audio's timeline; settings merged as `session.update` merges them."""

from __future__ import annotations

import pytest

from openrealtime.core.translation import BYTES_PER_MS, MAX_PHRASE_MS, TranslationSession
from openrealtime.protocol.errors import ProtocolError
from openrealtime.protocol.translation import SessionUpdateRequest

FRAME_MS = 32.0


def _feed(session: TranslationSession, probabilities: list[float], done: list[float]) -> list:
    """Audio and its probabilities, one frame at a time; `done` holds the frames fed so far."""
    phrases = []
    for p in probabilities:
        session.audio(b"\x00\x00" * int(FRAME_MS * BYTES_PER_MS // 2))
        done.append(p)
        phrases += session.frames([p], FRAME_MS, len(done) * FRAME_MS)
    return phrases


def test_a_phrase_is_cut_where_speech_ends_and_carries_its_end_in_200_ms_frames() -> None:
    session, done = TranslationSession("sess_1", "m", 0), []
    phrases = _feed(session, [0.0] * 30 + [0.9] * 40 + [0.0] * 20, done)
    assert len(phrases) == 1
    (phrase,) = phrases
    speech_start, speech_end = 30 * FRAME_MS, 70 * FRAME_MS
    assert speech_start - 250 <= phrase.start_ms <= speech_start
    assert speech_end <= phrase.end_ms <= speech_end + 500
    assert len(phrase.pcm16k) == (phrase.end_ms - phrase.start_ms) * BYTES_PER_MS
    assert phrase.elapsed_ms % 200 == 0 and phrase.end_ms <= phrase.elapsed_ms < phrase.end_ms + 200


def test_a_monologue_is_cut_every_max_phrase_ms_and_flushed_at_the_end() -> None:
    session, done = TranslationSession("sess_1", "m", 0), []
    frames = int(MAX_PHRASE_MS * 2.5 / FRAME_MS)
    phrases = _feed(session, [0.9] * frames, done)
    assert len(phrases) == 2
    assert phrases[0].end_ms == phrases[1].start_ms  # nothing lost between the pieces
    last = session.flush()
    assert last is not None and last.start_ms == phrases[1].end_ms
    assert last.end_ms == session.received_ms
    assert session.flush() is None


def test_update_merges_and_refuses_an_unknown_language() -> None:
    session = TranslationSession("sess_1", "m", 0)
    session.update(
        SessionUpdateRequest.model_validate(
            {"audio": {"input": {"noise_reduction": {"type": "far_field", "strength": 0.4}}}}
        )
    )
    session.update(
        SessionUpdateRequest.model_validate(
            {"audio": {"input": {"noise_reduction": {"type": "near_field"}}}}
        )
    )
    assert session.noise_reduction == {"type": "near_field", "strength": 0.4}
    with pytest.raises(ProtocolError):
        session.update(
            SessionUpdateRequest.model_validate({"audio": {"output": {"language": "qq"}}})
        )
    assert session.language == "en"
    request = session.translation_request("hola")
    assert "English" in request.instructions and request.context[-1].text == "hola"


def test_the_source_language_is_the_named_one_else_the_one_most_phrases_were_heard_in() -> None:
    session = TranslationSession("sess_1", "m", 0)
    assert session.source_language is None  # the recognizer detects it
    session.heard_in("es")
    assert session.source_language is None  # one phrase is not enough to go by
    session.heard_in("th")
    assert session.source_language is None  # no majority
    session.heard_in("es")
    assert session.source_language == "es"
    session.update(
        SessionUpdateRequest.model_validate(
            {"audio": {"input": {"transcription": {"model": "m", "language": "FR"}}}}
        )
    )
    assert session.source_language == "fr"
    assert session.snapshot()["audio"]["input"]["transcription"] == {  # type: ignore[index]
        "model": "m",
        "language": "FR",
    }
