"""Context truncation: the oldest entries are left out before the request is sent."""

from __future__ import annotations

import json

import pytest

from openrealtime.backends.llm.base import ChatTurn, ToolCall, ToolResult
from openrealtime.core.context import entry_tokens, truncate
from openrealtime.core.effects import GenerateResponse
from openrealtime.core.session import Session
from openrealtime.protocol.client_events import parse_client_event
from openrealtime.protocol.session import RetentionRatioTruncation


def _send(session: Session, event: dict) -> None:
    session.handle(parse_client_event(json.dumps(event)))


def _say(session: Session, index: int) -> None:
    text = f"message {index:03d} " + "x" * 380  # ~100 tokens each
    _send(
        session,
        {
            "type": "conversation.item.create",
            "item": {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": text}],
            },
        },
    )


def _request_texts(session: Session, truncation: object) -> list[str]:
    _send(
        session,
        {
            "type": "session.update",
            "session": {
                "type": "realtime",
                "output_modalities": ["text"],
                "instructions": "Be brief.",
                "max_output_tokens": 1000,
                "truncation": truncation,
            },
        },
    )
    session.drain()
    _send(session, {"type": "response.create"})
    effect = next(out for out in session.drain() if isinstance(out, GenerateResponse))
    return [entry.text[:11] for entry in effect.request.context if isinstance(entry, ChatTurn)]


def _session_with(messages: int, window: int) -> Session:
    session = Session(context_window=window)
    session.open()
    for index in range(messages):
        _say(session, index)
    return session


def test_auto_drops_the_oldest_items_to_fit_the_window() -> None:
    # Window 3000 - 1000 reserved for the answer - instructions: ~1990 tokens for 30 x ~100.
    texts = _request_texts(_session_with(30, 3000), "auto")
    assert 15 <= len(texts) < 30
    assert texts[-1] == "message 029"  # the newest survive
    assert texts[0] == f"message {30 - len(texts):03d}"  # a contiguous tail


def test_retention_ratio_cuts_deeper_so_later_turns_need_no_new_cut() -> None:
    auto = _request_texts(_session_with(30, 3000), "auto")
    ratio = _request_texts(
        _session_with(30, 3000), {"type": "retention_ratio", "retention_ratio": 0.5}
    )
    assert len(ratio) < len(auto)
    assert abs(len(ratio) - len(auto) / 2) <= 2


def test_post_instructions_token_limit_caps_the_conversation() -> None:
    texts = _request_texts(
        _session_with(30, 100_000),
        {
            "type": "retention_ratio",
            "retention_ratio": 1.0,
            "token_limits": {"post_instructions": 500},
        },
    )
    assert 3 <= len(texts) <= 5


@pytest.mark.parametrize("truncation", ["disabled", "auto"])
def test_nothing_is_dropped_when_it_fits_or_truncation_is_disabled(truncation: str) -> None:
    window = 3000 if truncation == "disabled" else 100_000
    assert len(_request_texts(_session_with(30, window), truncation)) == 30


def test_a_tool_result_is_not_left_without_its_call() -> None:
    entries = (
        ChatTurn("user", "a" * 400),
        ToolCall("call_1", "f", "{}"),
        ToolResult("call_1", "r" * 400),
        ChatTurn("user", "b" * 40),
    )
    kept = truncate(entries, entry_tokens(entries[2]) + entry_tokens(entries[3]), "auto")
    assert kept == (entries[3],)


def test_retention_ratio_target_is_a_share_of_the_limit() -> None:
    entries = tuple(ChatTurn("user", "y" * 396) for _ in range(10))
    ratio = RetentionRatioTruncation(type="retention_ratio", retention_ratio=0.3)
    assert sum(map(entry_tokens, truncate(entries, 800, ratio))) <= 240


def test_a_finished_session_is_freed_without_the_garbage_collector() -> None:
    import gc
    import weakref

    from openrealtime.backends.llm.base import Finished, TextDelta

    gc.disable()
    try:
        session = _session_with(3, 100_000)
        _send(session, {"type": "response.create"})
        effect = next(out for out in session.drain() if isinstance(out, GenerateResponse))
        session.on_llm_event(effect.response_id, TextDelta("hi"))
        session.on_llm_event(effect.response_id, Finished())  # still speaking: in flight
        session.drain()
        session.close()  # the client left
        ref = weakref.ref(session)
        del session, effect
        assert ref() is None, "a reference cycle keeps closed sessions alive until a GC pass"
    finally:
        gc.enable()
