"""`idle_timeout_ms` fires from a timer when no audio arrives: the core asks for the timer
(`WakeAfter`), the driver runs it; through the SDK, a client that sends no audio at all."""

from __future__ import annotations

import time

from conftest import recv_until
from core_harness import Core, only, types
from scripted_llm import Text

from openrealtime.backends.llm.base import Finished, TextDelta
from openrealtime.core.effects import WakeAfter

IDLE_VAD = {"type": "server_vad", "idle_timeout_ms": 5000}


def _answered(core: Core, text: str) -> list:
    out = core.send({"type": "response.create", "response": {"output_modalities": ["text"]}})
    response_id = only(out, "GenerateResponse").response_id
    core.session.on_llm_event(response_id, TextDelta(text))
    core.session.on_llm_event(response_id, Finished())
    return core.drain()


def _idle_core() -> Core:
    core = Core()
    core.send(
        {
            "type": "session.update",
            "session": {"type": "realtime", "audio": {"input": {"turn_detection": IDLE_VAD}}},
        }
    )
    return core


def test_the_answer_asks_for_a_timer_and_it_fires_the_timeout() -> None:
    core = _idle_core()
    core.append(300)  # some audio in the buffer, then the client stops sending
    core.vad(0.0, 300 // 32)
    out = _answered(core, "Anything else?")
    wake = only(out, "WakeAfter")
    assert wake == WakeAfter(wake.timer_id, 5000)  # a text answer: nothing left to play
    core.session.on_timer(wake.timer_id)
    out = core.drain()
    assert types(out)[:4] == [
        "input_audio_buffer.timeout_triggered",
        "input_audio_buffer.committed",
        "conversation.item.added",
        "conversation.item.done",
    ]
    assert "response.created" in types(out)  # its generation waits for the transcript
    timeout = out[0]
    assert timeout["audio_end_ms"] - timeout["audio_start_ms"] == 5000
    assert timeout["item_id"] == out[1]["item_id"]


def test_a_stale_timer_or_one_during_speech_does_nothing() -> None:
    core = _idle_core()
    first = only(_answered(core, "One."), "WakeAfter").timer_id
    core.append(500)
    assert types(core.vad(0.9, 10))[0] == "input_audio_buffer.speech_started"
    core.session.on_timer(first)
    assert core.drain() == []  # the user is speaking: no timeout
    core.send({"type": "input_audio_buffer.clear"})
    second = only(_answered(core, "Two."), "WakeAfter").timer_id
    assert second != first
    core.session.on_timer(first)
    assert core.drain() == []  # superseded by the second answer's timer
    core.session.on_timer(second)
    assert types(core.drain())[0] == "input_audio_buffer.timeout_triggered"


def test_no_timer_without_an_idle_timeout() -> None:
    core = Core()
    assert not any(isinstance(o, WakeAfter) for o in _answered(core, "Hi."))


def test_idle_timeout_fires_when_the_client_sends_no_audio(client, llm) -> None:
    llm.script(Text(["Hello."]), Text(["Are you still there?"]))
    with client.realtime.connect(model="gpt-realtime") as conn:
        recv_until(conn, "session.created")
        conn.session.update(
            session={
                "type": "realtime",
                "output_modalities": ["text"],
                "audio": {"input": {"turn_detection": IDLE_VAD}},
            }
        )
        recv_until(conn, "session.updated")
        conn.conversation.item.create(
            item={
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "Hi"}],
            }
        )
        conn.response.create()
        recv_until(conn, "response.done")
        answered = time.monotonic()
        events = recv_until(conn, "response.done")
        waited = time.monotonic() - answered
    kinds = [e.type for e in events]
    assert kinds[0] == "input_audio_buffer.timeout_triggered"
    assert "input_audio_buffer.committed" not in kinds  # the buffer held nothing
    assert events[-1].response.output[0].content[0].text == "Are you still there?"
    assert waited >= 4.9  # not before the timeout (an upper bound would time the machine)
    assert len(llm.requests) == 2
