"""semantic_vad and early decoding in the session core, driven directly with scripted VAD
probabilities, end-of-turn answers and transcripts."""

from __future__ import annotations

from typing import Any

from core_harness import Core, only, types

from openrealtime.core.effects import JudgeTurnEnd, SpeculateTranscript
from openrealtime.core.turns import (
    EARLY_DECODE_AFTER_MS,
    FINISHED_SILENCE_MS,
    JUDGE_PAUSE_MS,
    RELEASE_MS,
    SEMANTIC_MAX_WAIT_MS,
    SEMANTIC_SILENCE_MS,
)

FRAME_MS = 32
SPEECH_END_MS = 10 * FRAME_MS - RELEASE_MS  # `spoken`: ten frames of speech, less the release


def semantic(eagerness: str = "high", **options: Any) -> Core:
    core = Core(**options)
    detection = {"type": "semantic_vad", "eagerness": eagerness, "create_response": False}
    core.send(
        {
            "type": "session.update",
            "session": {"type": "realtime", "audio": {"input": {"turn_detection": detection}}},
        }
    )
    core.append(10_000)
    return core


def spoken(core: Core, frames: int = 10) -> str:
    return only(core.vad(0.9, frames), "input_audio_buffer.speech_started")["item_id"]


def until(core: Core, type_: str, limit: int = 400) -> tuple[int, Any]:
    """Silent frames until `type_` comes out: how many, and the output."""
    for n in range(1, limit + 1):
        out = core.vad(0.0, 1)
        if type_ in types(out):
            return n, only(out, type_)
    raise AssertionError(f"no {type_} in {limit} silent frames")


def test_the_model_is_asked_early_in_a_pause_and_a_finished_turn_ends_after_a_short_wait() -> None:
    core = semantic()
    item_id = spoken(core)  # speech ends at SPEECH_END_MS
    frames, judge = until(core, "JudgeTurnEnd")
    assert isinstance(judge, JudgeTurnEnd) and judge.item_id == item_id
    analysed_ms = (10 + frames) * FRAME_MS
    assert (
        analysed_ms + FRAME_MS / 2 - SPEECH_END_MS >= JUDGE_PAUSE_MS
    )  # asked once the pause is 100 ms
    assert (
        analysed_ms + FRAME_MS / 2 - SPEECH_END_MS < FINISHED_SILENCE_MS
    )  # ...before the short wait
    assert len(judge.pcm16k) == analysed_ms * 16  # the whole turn up to the frame analysed
    core.session.on_turn_judged(item_id, judge.speech_end_ms, 0.95)
    assert "input_audio_buffer.speech_stopped" not in types(core.drain())  # not yet
    more, stopped = until(core, "input_audio_buffer.speech_stopped")
    assert stopped["item_id"] == item_id
    assert stopped["audio_end_ms"] == SPEECH_END_MS + FINISHED_SILENCE_MS
    assert (10 + frames + more) * FRAME_MS + FRAME_MS / 2 >= SPEECH_END_MS + FINISHED_SILENCE_MS
    assert (10 + frames + more - 1) * FRAME_MS + FRAME_MS / 2 < SPEECH_END_MS + FINISHED_SILENCE_MS


def test_a_finished_answer_that_comes_after_the_short_wait_ends_the_turn_at_once() -> None:
    core = semantic()
    item_id = spoken(core)
    frames, judge = until(core, "JudgeTurnEnd")
    more = 6  # the model is slow: the pause goes on while it thinks
    assert "input_audio_buffer.speech_stopped" not in types(core.vad(0.0, more))
    core.session.on_turn_judged(item_id, judge.speech_end_ms, 0.95)
    out = core.drain()
    stopped = only(out, "input_audio_buffer.speech_stopped")
    assert (stopped["item_id"], stopped["audio_end_ms"]) == (item_id, (10 + frames + more) * 32)
    assert only(out, "input_audio_buffer.committed")["item_id"] == item_id


def test_an_unfinished_turn_waits_for_the_longest_silence() -> None:
    core = semantic("high")
    item_id = spoken(core)
    frames, judge = until(core, "JudgeTurnEnd")
    core.session.on_turn_judged(item_id, judge.speech_end_ms, 0.1)
    assert "input_audio_buffer.speech_stopped" not in types(core.drain())
    more, stopped = until(core, "input_audio_buffer.speech_stopped")
    assert stopped["audio_end_ms"] == SPEECH_END_MS + SEMANTIC_MAX_WAIT_MS["high"]
    assert (10 + frames + more) * FRAME_MS + FRAME_MS / 2 >= SPEECH_END_MS + SEMANTIC_MAX_WAIT_MS[
        "high"
    ]


def test_eagerness_sets_the_threshold() -> None:
    answers = {}
    for eagerness in ("low", "medium", "high"):
        core = semantic(eagerness)
        item_id = spoken(core)
        _, judge = until(core, "JudgeTurnEnd")
        core.session.on_turn_judged(item_id, judge.speech_end_ms, 0.6)
        out = core.drain() + core.vad(0.0, FINISHED_SILENCE_MS // FRAME_MS)
        answers[eagerness] = "input_audio_buffer.speech_stopped" in types(out)
    assert answers == {"low": False, "medium": True, "high": True}


def test_an_answer_about_a_pause_the_speaker_ended_is_ignored() -> None:
    core = semantic()
    item_id = spoken(core)
    _, judge = until(core, "JudgeTurnEnd")
    core.vad(0.9, 3)  # speech resumes while the model thinks
    core.session.on_turn_judged(item_id, judge.speech_end_ms, 0.99)
    assert types(core.drain()) == []
    _, again = until(core, "JudgeTurnEnd")  # the next pause is asked about in its turn
    assert again.speech_end_ms > judge.speech_end_ms


def test_without_a_model_the_pause_falls_back_to_a_silence_wait() -> None:
    core = semantic("high")
    item_id = spoken(core)
    _frames, judge = until(core, "JudgeTurnEnd")
    core.session.on_turn_judged(item_id, judge.speech_end_ms, None)
    _, stopped = until(core, "input_audio_buffer.speech_stopped")
    assert stopped["audio_end_ms"] == SPEECH_END_MS + SEMANTIC_SILENCE_MS["high"]


# --- early decoding -------------------------------------------------------------------------


def server_vad(**options: Any) -> Core:
    core = Core(**options)
    detection = {"type": "server_vad", "silence_duration_ms": 500}
    core.send(
        {
            "type": "session.update",
            "session": {
                "type": "realtime",
                "output_modalities": ["text"],
                "audio": {
                    "input": {
                        "turn_detection": detection,
                        "transcription": {"model": "whisper-1"},
                    }
                },
            },
        }
    )
    core.append(10_000)
    return core


def test_a_turn_is_decoded_from_its_pause_and_the_result_held_until_it_ends() -> None:
    core = server_vad()
    spoken(core)
    frames, early = until(core, "SpeculateTranscript")
    assert isinstance(early, SpeculateTranscript)
    # Reported once EARLY_DECODE_AFTER_MS long, to the nearest frame: the turn up to it.
    paused = (10 + frames) * FRAME_MS + FRAME_MS / 2 - SPEECH_END_MS
    assert paused >= EARLY_DECODE_AFTER_MS > paused - FRAME_MS
    assert len(early.pcm16k) == 2 * (10 + frames) * FRAME_MS * 16
    core.session.on_speculation_done(early.speculation_id, "hello there", 1.0)
    assert types(core.drain()) == []  # held until the turn ends


def test_the_transcript_is_ready_with_speech_stopped_when_the_decode_finished_first() -> None:
    core = server_vad()
    item_id = spoken(core)
    early = until(core, "SpeculateTranscript")[1]
    core.session.on_speculation_done(early.speculation_id, "hello there", 1.0)
    core.drain()
    for _ in range(100):
        out = core.vad(0.0, 1)
        if "input_audio_buffer.speech_stopped" in types(out):
            break
    assert "Transcribe" not in types(out)
    names = types(out)
    completed = only(out, "conversation.item.input_audio_transcription.completed")
    assert (completed["item_id"], completed["transcript"]) == (item_id, "hello there")
    assert names.index("input_audio_buffer.committed") < names.index(
        "conversation.item.input_audio_transcription.completed"
    )
    assert "GenerateResponse" in names  # nothing left to wait for


def test_gaps_between_words_start_no_early_decode() -> None:
    core = server_vad()
    spoken(core)
    out = core.vad(0.0, 2) + core.vad(0.9, 5) + core.vad(0.0, 2)
    assert "SpeculateTranscript" not in types(out) and "CancelSpeculation" not in types(out)


def test_resumed_speech_cancels_the_early_decode_and_the_next_pause_decodes_all() -> None:
    core = server_vad()
    item_id = spoken(core)
    first = until(core, "SpeculateTranscript")[1]
    out = core.vad(0.9, 10)
    assert only(out, "CancelSpeculation").speculation_id == first.speculation_id
    core.session.on_speculation_done(first.speculation_id, "hello", 0.3)  # too late: ignored
    assert types(core.drain()) == []
    second = until(core, "SpeculateTranscript")[1]
    assert len(second.pcm16k) > len(first.pcm16k)
    _, _ = until(core, "input_audio_buffer.speech_stopped")
    core.session.on_speculation_done(second.speculation_id, "hello and more", 0.8)
    out = core.drain()
    completed = only(out, "conversation.item.input_audio_transcription.completed")
    assert (completed["item_id"], completed["transcript"]) == (item_id, "hello and more")


def test_a_manual_commit_does_not_adopt_the_early_decode() -> None:
    core = server_vad()
    spoken(core)
    early = until(core, "SpeculateTranscript")[1]
    out = core.send({"type": "input_audio_buffer.commit"})
    assert only(out, "CancelSpeculation").speculation_id == early.speculation_id
    assert "Transcribe" in types(out)


def test_a_failed_adopted_decode_is_redone_whole() -> None:
    core = server_vad()
    spoken(core)
    early = until(core, "SpeculateTranscript")[1]
    until(core, "input_audio_buffer.speech_stopped")
    core.session.on_speculation_failed(early.speculation_id)
    assert "Transcribe" in types(core.drain())


def test_without_early_decoding_the_turn_is_transcribed_after_it_ends() -> None:
    core = server_vad(early_transcripts=False)
    spoken(core)
    _, _ = until(core, "input_audio_buffer.speech_stopped")
    assert "SpeculateTranscript" not in types(core.drain())
