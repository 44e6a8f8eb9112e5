"""The response lifecycle: its transition table, and the session moving responses through it."""

from __future__ import annotations

import typing
from types import SimpleNamespace
from typing import Any

import pytest
from core_harness import Core, only, types

from openrealtime.backends.llm.base import ChatTurn, Finished, TextDelta
from openrealtime.core.effects import CancelResponse, GenerateResponse
from openrealtime.core.phases import STATUS, TRANSITIONS, LifecycleError, Phase, Trigger, advance

LIVE: list[Phase] = ["waiting", "generating", "speaking", "calling_tools"]
ENDED: list[Phase] = ["completed", "incomplete", "cancelled", "failed"]

# --- the table ---------------------------------------------------------------------------------


def test_every_live_phase_can_be_cancelled_or_failed() -> None:
    for phase in LIVE:
        assert STATUS[phase] == "in_progress"
        assert TRANSITIONS[phase]["cancel"] == "cancelled"
        assert TRANSITIONS[phase]["fail"] == "failed"


def test_an_ended_response_accepts_nothing_and_its_status_is_its_phase() -> None:
    assert set(TRANSITIONS) == set(typing.get_args(Phase)) == {*LIVE, *ENDED}
    for phase in ENDED:
        assert TRANSITIONS[phase] == {}
        assert STATUS[phase] == phase


@pytest.mark.parametrize(
    ("phase", "trigger"),
    [
        ("waiting", "output_text"),  # the LLM runs only once it may generate
        ("waiting", "output_audio"),
        ("waiting", "complete"),
        ("generating", "generate"),  # generation is asked for once
        ("speaking", "output_text"),  # the LLM has finished
        ("speaking", "llm_finished"),
        ("calling_tools", "output_text"),  # the LLM waits for the tool results
        ("speaking", "call_tools"),
        ("completed", "cancel"),  # ended is ended
        ("cancelled", "output_audio"),
        ("failed", "fail"),
    ],
)
def test_a_transition_the_table_lacks_raises(phase: Phase, trigger: Trigger) -> None:
    response: Any = SimpleNamespace(id="resp_1", phase=phase)
    with pytest.raises(LifecycleError, match=f"{trigger} is not allowed in phase {phase}"):
        advance(response, trigger)
    assert response.phase == phase


# --- through the session -----------------------------------------------------------------------


def committed_turn() -> tuple[Core, str]:
    """A session without turn detection holding one committed user turn, not yet transcribed."""
    core = Core()
    core.send(
        {
            "type": "session.update",
            "session": {"type": "realtime", "audio": {"input": {"turn_detection": None}}},
        }
    )
    core.append(200)
    out = core.send({"type": "input_audio_buffer.commit"})
    assert types(out)[-1] == "Transcribe"
    return core, only(out, "input_audio_buffer.committed")["item_id"]


def test_a_response_waits_for_the_transcript_then_generates_with_it() -> None:
    core, item_id = committed_turn()
    out = core.send({"type": "response.create"})
    assert types(out) == ["response.created"]
    response_id = out[0]["response"]["id"]
    assert core.session.responses[response_id].phase == "waiting"

    core.session.on_transcript_done(item_id, 0, "What time is it?", 1.0)
    effect = only(core.drain(), "GenerateResponse")
    assert isinstance(effect, GenerateResponse)
    assert ChatTurn("user", "What time is it?") in effect.request.context
    assert core.session.responses[response_id].phase == "generating"


def test_llm_output_for_a_waiting_response_is_a_bug_and_says_so() -> None:
    core, _ = committed_turn()
    response_id = core.send({"type": "response.create"})[0]["response"]["id"]
    with pytest.raises(LifecycleError, match="output_text is not allowed in phase waiting"):
        core.session.on_llm_event(response_id, TextDelta("too early"))


def test_an_out_of_band_response_does_not_wait_for_transcripts() -> None:
    core, _ = committed_turn()
    out = core.send({"type": "response.create", "response": {"conversation": "none"}})
    assert types(out) == ["response.created", "GenerateResponse"]


def test_a_failed_transcript_fails_the_waiting_response() -> None:
    core, item_id = committed_turn()
    response_id = core.send({"type": "response.create"})[0]["response"]["id"]
    core.session.on_transcript_failed(item_id, 0, "stt_unavailable", "the recognizer is down")
    out = core.drain()
    assert types(out) == ["conversation.item.input_audio_transcription.failed", "response.done"]
    response = out[1]["response"]
    assert (response["id"], response["status"]) == (response_id, "failed")
    assert response["status_details"]["error"]["code"] == "stt_unavailable"
    assert response_id not in core.session.responses


def test_a_waiting_response_can_be_cancelled_and_never_generates() -> None:
    core, item_id = committed_turn()
    response_id = core.send({"type": "response.create"})[0]["response"]["id"]
    out = core.send({"type": "response.cancel"})
    assert types(out) == ["CancelResponse", "response.done"]
    assert out[0] == CancelResponse(response_id)
    assert out[1]["response"]["status_details"]["reason"] == "client_cancelled"
    core.session.on_transcript_done(item_id, 0, "hello", 1.0)
    assert core.drain() == []  # no GenerateResponse (and transcription events are not asked for)


def test_a_spoken_response_ends_when_its_audio_does() -> None:
    core = Core()
    out = core.send({"type": "response.create"})
    response_id = only(out, "GenerateResponse").response_id
    core.session.on_llm_event(response_id, TextDelta("Hello there."))
    core.session.on_llm_event(response_id, Finished())
    assert "response.done" not in types(core.drain())
    assert core.session.responses[response_id].phase == "speaking"

    core.session.on_response_audio(response_id, b"\0" * 4800, 100.0)  # audio still comes
    assert types(core.drain()) == ["response.output_audio.delta"]
    with pytest.raises(LifecycleError, match="output_text is not allowed in phase speaking"):
        core.session.on_llm_event(response_id, TextDelta("after the end"))

    core.session.on_response_audio_done(response_id)
    done = only(core.drain(), "response.done")["response"]
    assert done["status"] == "completed"
    assert done["output"][0]["status"] == "completed"
    assert response_id not in core.session.responses


def test_a_second_response_in_the_conversation_is_refused_but_out_of_band_ones_run() -> None:
    core = Core()
    first = only(core.send({"type": "response.create"}), "response.created")["response"]["id"]
    error = only(core.send({"type": "response.create"}), "error")["error"]
    assert error["code"] == "conversation_already_has_active_response"
    assert first in error["message"]
    out = core.send({"type": "response.create", "response": {"conversation": "none"}})
    assert types(out) == ["response.created", "GenerateResponse"]
    assert len(core.session.responses) == 2
