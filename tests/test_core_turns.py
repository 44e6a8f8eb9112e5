"""User turns, barge-in and streamed transcription in the session core, driven directly: audio
and VAD verdicts in; events and effects out."""

from __future__ import annotations

from typing import Any

from core_harness import PCM16_24K_BYTES_PER_MS, Core, only, types

from openrealtime.backends.llm.base import Finished, TextDelta
from openrealtime.core.effects import FeedTranscript, FinishTranscript, StartTranscript

FRAME_MS = 32  # the session's default VAD frame


def test_a_spoken_turn_is_committed_transcribed_and_answered_once_transcribed() -> None:
    core = Core(early_transcripts=False)
    assert types(core.append(1000)) == ["DetectSpeech"]
    started = only(core.vad(0.9, 10), "input_audio_buffer.speech_started")
    out = core.vad(0.0, 20)
    assert types(out) == [
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
        "conversation.item.added",
        "conversation.item.done",
        "Transcribe",
        "response.created",  # waits for the transcript: no GenerateResponse yet
    ]
    assert {out[0]["item_id"], out[1]["item_id"]} == {started["item_id"]}
    core.session.on_transcript_done(started["item_id"], 0, "hi", 0.5)
    assert types(core.drain()) == ["GenerateResponse"]


def test_the_vad_is_told_once_of_audio_until_it_takes_it_then_takes_it_all() -> None:
    core = Core()
    session = core.session
    session.append_input_audio(b"\0" * 960)  # 20 ms at 24 kHz
    assert types(core.drain()) == ["DetectSpeech"]
    session.append_input_audio(b"\1\0" * 480)
    assert core.drain() == []  # joins what the VAD will take
    taken = session.take_vad_audio()
    assert 0 < len(taken) <= 40 * 16  # both chunks, at 16 kHz (less the filter's delay)
    assert len(session.take_vad_audio()) == 0
    session.append_input_audio(b"\0" * 960)
    assert types(core.drain()) == ["DetectSpeech"]


def speaking(**options: Any) -> tuple[Core, str, str]:
    """A session whose spoken answer "One two three four." has 1000 ms of audio out."""
    core = Core(**options)
    response_id = only(core.send({"type": "response.create"}), "GenerateResponse").response_id
    core.session.on_llm_event(response_id, TextDelta("One two three four."))
    item_id = only(core.drain(), "response.output_item.added")["item"]["id"]
    for words in (2, 4):
        core.session.on_response_audio(response_id, b"\0" * 24000, 500.0)
        core.session.on_speech_mark(response_id, words)
    core.drain()
    return core, response_id, item_id


def test_barge_in_cancels_then_truncates_to_what_was_sent() -> None:
    core, response_id, item_id = speaking()
    out = core.vad(0.9, 1)
    assert types(out)[:2] == ["input_audio_buffer.speech_started", "CancelResponse"]
    done = only(out, "response.done")["response"]
    assert (done["id"], done["status"]) == (response_id, "cancelled")
    assert done["status_details"]["reason"] == "turn_detected"
    truncated = only(out, "conversation.item.truncated")
    assert types(out)[-1] == "conversation.item.truncated"
    assert (truncated["item_id"], truncated["audio_end_ms"]) == (item_id, 1000)
    assert "ClearOutputAudio" not in types(out)


def test_barge_in_with_server_playback_truncates_to_what_was_played() -> None:
    core, _, item_id = speaking(playback=True)
    core.session.on_playback(item_id, 500.0, True)
    out = core.vad(0.9, 1)
    assert types(out)[-2:] == ["ClearOutputAudio", "conversation.item.truncated"]
    assert only(out, "conversation.item.truncated")["audio_end_ms"] == 500
    transcript = core.session.conversation.get(item_id).content[0].transcript
    assert transcript == "One two"  # the words heard by 500 ms


def test_a_turn_is_transcribed_while_it_is_spoken() -> None:
    core = Core(stream_transcripts=True)
    core.send(
        {
            "type": "session.update",
            "session": {"type": "realtime", "audio": {"input": {"transcription": {}}}},
        }
    )
    core.append(400)
    out = core.vad(0.9, 5)
    item_id = only(out, "input_audio_buffer.speech_started")["item_id"]
    start = only(out, "StartTranscript")
    assert isinstance(start, StartTranscript) and start.item_id == item_id
    assert len(start.pcm16k) == 400 * 32  # all held audio (from the prefix padding), at 16 kHz

    out = core.append(100)
    assert types(out) == ["DetectSpeech", "FeedTranscript"]
    assert isinstance(out[1], FeedTranscript) and out[1].item_id == item_id
    assert out[1].pcm16k == core.taken_for_vad.tobytes()  # what the VAD took

    deltas = []
    for partial in ("Hello", "Hello wor", "Help"):  # a revision is not sent as a delta
        core.session.on_transcript_partial(item_id, 0, partial)
        deltas += [event["delta"] for event in core.drain()]
    assert deltas == ["Hello", " wor"]

    out = core.vad(0.0, 20)
    assert FinishTranscript(item_id) in out
    assert "Transcribe" not in types(out)
    core.session.on_transcript_done(item_id, 0, "Hello world", 0.5)
    assert types(core.drain()) == [
        "conversation.item.input_audio_transcription.completed",
        "GenerateResponse",
    ]


def test_clearing_the_buffer_drops_the_turn_being_transcribed() -> None:
    core = Core(stream_transcripts=True)
    core.append(200)
    item_id = only(core.vad(0.9, 2), "input_audio_buffer.speech_started")["item_id"]
    out = core.send({"type": "input_audio_buffer.clear"})
    assert out[0] == FinishTranscript(item_id, discard=True)
    assert types(out) == ["FinishTranscript", "input_audio_buffer.cleared"]
    assert types(core.append(100)) == ["DetectSpeech"]  # no longer fed


def test_the_idle_timeout_counts_from_the_end_of_the_answer() -> None:
    core = Core()
    core.send(
        {
            "type": "session.update",
            "session": {
                "type": "realtime",
                "audio": {
                    "input": {"turn_detection": {"type": "server_vad", "idle_timeout_ms": 5000}}
                },
            },
        }
    )
    out = core.send({"type": "response.create", "response": {"output_modalities": ["text"]}})
    response_id = only(out, "GenerateResponse").response_id
    core.session.on_llm_event(response_id, TextDelta("Anything else?"))
    core.session.on_llm_event(response_id, Finished())
    assert only(core.drain(), "response.done")["response"]["status"] == "completed"

    assert core.vad(0.0, 5000 // FRAME_MS) == []  # 4992 ms of silence
    out = core.vad(0.0, 1)
    assert types(out) == [
        "input_audio_buffer.timeout_triggered",
        "response.created",
        "GenerateResponse",
    ]
    assert (out[0]["audio_start_ms"], out[0]["audio_end_ms"]) == (0, 5024)


def test_a_streamed_transcript_gets_each_piece_of_audio_once() -> None:
    """Audio appended after what the VAD has taken is not in the turn's first piece: it
    reaches the transcript when the VAD takes it, and only then."""
    core = Core(stream_transcripts=True)
    core.send(
        {
            "type": "session.update",
            "session": {"type": "realtime", "audio": {"input": {"transcription": {}}}},
        }
    )
    core.append(400)  # taken by the VAD at once (the harness)
    core.session.append_input_audio(b"\0" * (100 * PCM16_24K_BYTES_PER_MS))  # not taken yet
    assert types(core.drain()) == ["DetectSpeech"]
    out = core.vad(0.9, 5)
    start = only(out, "StartTranscript")
    assert len(start.pcm16k) == 400 * 32  # up to what the VAD took, not the 100 ms after it
    taken = core.session.take_vad_audio()
    [fed] = [entry for entry in core.drain() if isinstance(entry, FeedTranscript)]
    assert fed.pcm16k == taken.tobytes() and len(taken) > 0  # the rest, once
