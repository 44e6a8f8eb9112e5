"""The benchmarks' Festival voices: made by text2wave when Festival is installed, at the rate
asked for and the speed asked for; a voice it lacks is refused by name; without Festival the
transcription benchmark skips those voices with a note and keeps every other one."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks import transcription_quality
from benchmarks.lib import speech

TEXT = "Set a timer for fifteen minutes."


def _needs(voice: str) -> None:
    if voice not in speech.festival_voices():
        pytest.skip(f"festival voice {voice} is not installed (apt-get install festival festvox-*)")


@pytest.mark.parametrize("voice", ["kal_diphone", "cmu_us_slt_arctic_hts"])
def test_a_festival_voice_speaks_at_the_rate_asked_for(voice: str) -> None:
    _needs(voice)
    at_16k = speech.speak(TEXT, 16000, voice, engine="festival")
    at_24k = speech.speak(TEXT, 24000, voice, engine="festival")
    assert at_16k.dtype == np.int16
    assert 1.0 < len(at_16k) / 16000 < 5.0  # a short sentence, not silence nor a stuck process
    assert abs(len(at_24k) / 24000 - len(at_16k) / 16000) < 0.01
    assert np.abs(at_16k.astype(np.int32)).max() > 3000  # speech, not near-silence


def test_a_faster_diphone_voice_is_shorter() -> None:
    _needs("kal_diphone")
    normal = speech.speak(TEXT, 16000, "kal_diphone", engine="festival")
    faster = speech.speak(TEXT, 16000, "kal_diphone", 1.3, engine="festival")
    assert len(faster) < 0.9 * len(normal)


def test_a_voice_festival_lacks_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="festival has no voice 'no_such_voice'"):
        speech.speak(TEXT, 16000, "no_such_voice", engine="festival")


def test_without_festival_its_voices_are_skipped_with_a_note(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(transcription_quality, "festival_voices", frozenset)
    voices, skipped = transcription_quality.available_voices()
    festival = [v for v in transcription_quality.VOICES if v.engine == "festival"]
    assert festival and not any(v.engine == "festival" for v in voices)
    assert len(voices) + len(festival) == len(transcription_quality.VOICES)
    assert skipped == [f"{v.name}: festival voice {v.voice} is not installed" for v in festival]
