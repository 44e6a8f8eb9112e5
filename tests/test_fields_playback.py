"""`output_audio_buffer.clear` with server-side playback (WebRTC), at the core: audio that is
queued but has not started playing is dropped too; a WebSocket session has nothing to clear."""

from __future__ import annotations

from core_harness import Core, only, types

from openrealtime.backends.llm.base import Finished, TextDelta
from openrealtime.core.effects import ClearOutputAudio


def _speaking_response(core: Core) -> str:
    out = core.send({"type": "response.create"})
    response_id = only(out, "GenerateResponse").response_id
    core.session.on_llm_event(response_id, TextDelta("A long story."))
    core.session.on_response_audio(response_id, b"\0" * 4800, 100.0)
    core.drain()
    return response_id


def test_clear_before_playback_starts_drops_the_queued_audio() -> None:
    core = Core(playback=True)
    response_id = _speaking_response(core)
    out = core.send({"type": "output_audio_buffer.clear"})
    assert out == [ClearOutputAudio()]  # no position yet: nothing heard, nothing truncated
    core.session.on_llm_event(response_id, Finished())
    core.session.on_response_audio_done(response_id)
    assert only(core.drain(), "response.done")["response"]["status"] == "completed"


def test_clear_while_playing_truncates_at_the_played_position() -> None:
    core = Core(playback=True)
    response_id = _speaking_response(core)
    core.session.on_llm_event(response_id, Finished())
    core.session.on_response_audio_done(response_id)
    core.drain()
    item_id = core.session.conversation.items()[-1].id
    core.session.on_playback(item_id, 40.0, True)
    out = core.send({"type": "output_audio_buffer.clear"})
    assert types(out) == ["ClearOutputAudio", "conversation.item.truncated"]
    assert out[1]["audio_end_ms"] == 40


def test_clear_on_a_websocket_session_is_a_no_op() -> None:
    core = Core(playback=False)
    _speaking_response(core)
    assert core.send({"type": "output_audio_buffer.clear"}) == []


def test_clear_while_the_answer_is_still_produced_cuts_when_its_audio_is_complete() -> None:
    """The synthesizer behind real time: playback pauses mid-answer, the client clears (no
    response.cancel); the cut waits for the item's audio, then is made where it was heard."""
    core = Core(playback=True)
    response_id = _speaking_response(core)
    item_id = core.session.conversation.items()[-1].id
    core.session.on_playback(item_id, 60.0, True)
    core.session.on_playback(item_id, 100.0, False)  # ran dry: paused, not finished
    assert core.send({"type": "output_audio_buffer.clear"}) == [ClearOutputAudio()]
    core.session.on_response_audio(response_id, b"\0" * 4800, 100.0)  # more is produced
    core.session.on_llm_event(response_id, Finished())
    core.session.on_response_audio_done(response_id)
    out = core.drain()
    truncated = only(out, "conversation.item.truncated")
    assert (truncated["item_id"], truncated["audio_end_ms"]) == (item_id, 100)
    assert types(out).index("conversation.item.truncated") > types(out).index("response.done")


def test_no_cut_after_the_answer_has_played_to_its_end() -> None:
    core = Core(playback=True)
    response_id = _speaking_response(core)
    core.session.on_llm_event(response_id, Finished())
    core.session.on_response_audio_done(response_id)
    core.drain()
    item_id = core.session.conversation.items()[-1].id
    core.session.on_playback(item_id, 100.0, True)
    core.session.on_playback(item_id, 100.0, False)  # the end: nothing left to play
    assert core.send({"type": "output_audio_buffer.clear"}) == [ClearOutputAudio()]
