"""The WebSocket frames a client may send, however they arrive on the socket: whole text frames
are taken without the sans-I/O parser (server/ws_protocol.py), everything else goes through it,
and either way every event is answered, in order, as before."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import websocket
from conftest import API_KEY
from websocket import ABNF


@pytest.fixture
def ws(server) -> Iterator[websocket.WebSocket]:
    conn = websocket.create_connection(
        f"ws://127.0.0.1:{server.port}/v1/realtime?model=gpt-realtime",
        header=[f"Authorization: Bearer {API_KEY}"],
        timeout=10,
    )
    assert json.loads(conn.recv())["type"] == "session.created"
    try:
        yield conn
    finally:
        conn.close()


def _create(item_id: str) -> str:
    item = {
        "id": item_id,
        "type": "message",
        "role": "user",
        "content": [{"type": "input_text", "text": item_id}],
    }
    return json.dumps({"type": "conversation.item.create", "item": item})


def _frame(text: str | bytes, opcode: int = ABNF.OPCODE_TEXT, fin: int = 1) -> bytes:
    return ABNF.create_frame(text, opcode, fin).format()


def _added_ids(ws: websocket.WebSocket, count: int) -> list[str]:
    ids = []
    while len(ids) < count:
        event = json.loads(ws.recv())
        assert event["type"] != "error", event
        if event["type"] == "conversation.item.added":
            ids.append(event["item"]["id"])
    return ids


def test_frames_in_one_write_and_frames_split_across_writes_are_all_answered_in_order(ws) -> None:
    ids = [f"item_{n}" for n in range(6)]
    frames = [_frame(_create(item_id)) for item_id in ids]
    ws.sock.sendall(b"".join(frames[:3]) + frames[3][:5])  # three whole, one begun
    ws.sock.sendall(frames[3][5:40])  # its header done, its payload not
    ws.sock.sendall(frames[3][40:] + frames[4] + frames[5][:1])
    ws.sock.sendall(frames[5][1:])
    assert _added_ids(ws, len(ids)) == ids


def test_a_large_frame_a_fragmented_message_and_a_ping_are_answered_as_before(ws) -> None:
    big = json.dumps({**json.loads(_create("item_big")), "event_id": "x" * 300_000})
    fragmented = _create("item_fragments").encode()
    ws.sock.sendall(
        _frame(big)  # past the fast path's size: the parser takes it (and refuses the id)
        + _frame(fragmented[:20], fin=0)
        + _frame(fragmented[20:], ABNF.OPCODE_CONT)
        + _frame(b"ping!", ABNF.OPCODE_PING)
        + _frame(_create("item_after"))
    )
    # uvicorn writes the pong at once, events come through the session: order them apart.
    events, pongs = [], []
    while len(events) < 5 or not pongs:
        opcode, frame = ws.recv_data_frame(control_frame=True)
        if opcode == ABNF.OPCODE_PONG:
            pongs.append(frame.data)
        elif opcode == ABNF.OPCODE_TEXT:
            events.append(json.loads(frame.data))
    assert pongs == [b"ping!"]
    assert events[0]["type"] == "error" and events[0]["error"]["param"] == "event_id", events[0]
    added = [e["item"]["id"] for e in events if e["type"] == "conversation.item.added"]
    assert added == ["item_fragments", "item_after"], events


def test_invalid_utf8_in_a_text_frame_closes_with_1007(ws) -> None:
    ws.sock.sendall(_frame(_create("item_ok")))
    assert _added_ids(ws, 1) == ["item_ok"]
    ws.sock.sendall(_frame(b'{"type": "\xff"}'))
    opcode, frame = ws.recv_data_frame(control_frame=True)
    while opcode != ABNF.OPCODE_CLOSE:
        opcode, frame = ws.recv_data_frame(control_frame=True)
    assert int.from_bytes(frame.data[:2], "big") == 1007


def test_events_sent_before_the_session_starts_are_answered_first_and_in_order(server) -> None:
    """Frames that arrive before the session hands itself whole text frames directly wait in
    the server's queue; those after go straight to it, and none overtakes another."""
    conn = websocket.create_connection(
        f"ws://127.0.0.1:{server.port}/v1/realtime?model=gpt-realtime",
        header=[f"Authorization: Bearer {API_KEY}"],
        timeout=10,
    )
    try:
        ids = [f"item_early_{n}" for n in range(4)]
        conn.sock.sendall(b"".join(_frame(_create(item_id)) for item_id in ids[:2]))
        assert json.loads(conn.recv())["type"] == "session.created"
        conn.sock.sendall(b"".join(_frame(_create(item_id)) for item_id in ids[2:]))
        assert _added_ids(conn, len(ids)) == ids
    finally:
        conn.close()
