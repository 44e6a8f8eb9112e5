"""Fuzzing the WebSocket server (DESIGN.md principle 5): whatever a client sends, the process
keeps running, every bad event gets an `error` event carrying the client's `event_id`, and the
session goes on with everything it already held.

Client events are generated from the protocol's own pydantic models (tests/fuzz_strategies.py),
then broken. Each frame is classified before it is sent, with the same parser the server uses:
a `ProtocolError` means exactly one `error` event must come back, with that code, param and the
client's `event_id`. A frame that parses may still be wrong for the session's state (a commit of
an empty buffer, a retrieve of a deleted item): it gets its normal answer or an `error`, never
silence. Every frame received is validated strictly with the SDK's own types.

To tell which reply belongs to which frame, every fuzzed frame is followed by a sentinel (a
retrieve of an item that never exists, with its own `event_id`): the server handles a socket's
frames in order, so everything it says synchronously about the frame comes before the
sentinel's error. Asynchronous work (responses, transcriptions) may interleave; it is validated but not
attributed.

After each batch, on the same socket: every response that started has finished, a normal text
turn works (its text comes from the scripted LLM), and the two items created before the batch
(one text, one audio) are retrieved unchanged. Then `/healthz` answers 200.

Invalid UTF-8 in a text frame is not an event but a broken WebSocket frame: RFC 6455 §8.1 says
the endpoint MUST fail the connection, with close code 1007 (§7.4.1). That is what the server
does; the test asserts it happens cleanly, to that connection only, and that a new session works.
A frame beyond the server's maximum message size is refused the same way (1009, or a reset while
the client is still sending).

Bugs the fuzzers found are pinned at the end as regression tests.
"""

from __future__ import annotations

import base64
import gc
import json
import os
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
import websocket
from conftest import API_KEY, validated
from fuzz_strategies import (
    ANCHOR_AUDIO_ID,
    ANCHOR_IDS,
    ANCHOR_TEXT_ID,
    Frame,
    audio_bytes,
    beta_objects,
    event_objects,
    frames,
    valid_batches,
)
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from scripted_llm import Text

from openrealtime.protocol import errors
from openrealtime.protocol.errors import ProtocolError
from openrealtime.transports.dialect import GA, Beta

SCALE = float(os.environ.get("OPENREALTIME_FUZZ_SCALE", "1"))
ERROR_KEYS = {"type", "code", "message", "param", "event_id"}
SENTINEL_ITEM = "__fuzz_sentinel_item__"  # longer than any generated id: never created
ANCHOR_TEXT = "I was here before the fuzzing."
ANCHOR_AUDIO = audio_bytes(9600, seed=7)  # 200 ms of 24 kHz PCM16
REPLY = ["Yes, ", "still here."]

# The synchronous answer each valid event gets when the session accepts it (None: no answer,
# as OpenAI sends none for an append, and a WebSocket session has no output audio buffer).
ANSWERS = {
    "session.update": "session.updated",
    "input_audio_buffer.append": None,
    "input_audio_buffer.commit": "input_audio_buffer.committed",
    "input_audio_buffer.clear": "input_audio_buffer.cleared",
    "conversation.item.create": "conversation.item.added",
    "conversation.item.retrieve": "conversation.item.retrieved",
    "conversation.item.delete": "conversation.item.deleted",
    "conversation.item.truncate": "conversation.item.truncated",
    "response.create": "response.created",
    "response.cancel": "response.done",
    "output_audio_buffer.clear": None,
}
BETA_RENAMES = {"conversation.item.added": "conversation.item.created"}

# Examples per fuzzer scale with OPENREALTIME_FUZZ_SCALE (default 1: ~20 s for the file); a
# nightly or local run can ask for 20x. No shrinking: it can take minutes over real sockets; a failing batch is at most a dozen frames,
# each printed with how it was made. Add Phase.shrink locally to minimise one.
FUZZ_SETTINGS = settings(
    deadline=None,
    phases=[Phase.explicit, Phase.generate],
    derandomize=True,
    database=None,
    print_blob=True,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)


@pytest.fixture
def llm(llm: Any) -> Any:
    """The scripted LLM, answering REPLY to every request. Not a queue of scripted replies: a
    cancelled response's request may still reach the model after the cancel and take one."""
    default = llm.default
    llm.default = Text(REPLY)
    yield llm
    llm.default = default


# --- a raw connection that validates everything it receives ----------------------------------


class Connection:
    def __init__(self, server: Any, *, beta: bool = False, transcription: bool = False) -> None:
        headers = [f"Authorization: Bearer {API_KEY}"]
        if beta:
            headers.append("OpenAI-Beta: realtime=v1")
        query = "intent=transcription" if transcription else "model=gpt-realtime"
        self.ws = websocket.create_connection(
            f"ws://127.0.0.1:{server.port}/v1/realtime?{query}",
            header=headers,
            timeout=20,
            # Its pure-Python UTF-8 check costs seconds per echoed megabyte; decoding the
            # frame still refuses invalid UTF-8.
            skip_utf8_validation=True,
        )
        self.beta = beta
        self.dialect = Beta() if beta else GA()
        self.started: set[str] = set()
        self.finished: set[str] = set()
        assert self.recv()[1].type == "session.created"

    def close(self) -> None:
        self.ws.close()

    def send(self, payload: str | bytes, *, binary: bool = False) -> None:
        if binary:
            self.ws.send_binary(payload)
        elif isinstance(payload, bytes):
            self.ws.send(payload, opcode=websocket.ABNF.OPCODE_TEXT)
        else:
            self.ws.send(payload)

    def send_event(self, event: dict[str, Any]) -> None:
        self.send(json.dumps(event))

    def recv(self) -> tuple[dict[str, Any], Any]:
        frame = self.ws.recv()
        assert isinstance(frame, str), f"server events are text frames, got {frame!r:.100}"
        raw = orjson.loads(frame)
        event = validated(frame, beta=self.beta)
        if event.type == "error":
            assert set(raw["error"]) == ERROR_KEYS, raw
            assert event.error.type == "invalid_request_error", raw
            assert event.error.code and event.error.message, raw
        elif event.type == "response.created":
            self.started.add(event.response.id)
        elif event.type == "response.done":
            self.finished.add(event.response.id)
        return raw, event

    def recv_until(self, done: Any, limit: int = 2000) -> list[tuple[dict[str, Any], Any]]:
        seen = []
        for _ in range(limit):
            seen.append(self.recv())
            if done(*seen[-1]):
                return seen
        raise AssertionError(f"gave up after {limit} events: {[e.type for _, e in seen][-20:]}")

    def until_error(self, event_id: str) -> list[tuple[dict[str, Any], Any]]:
        """Everything up to and including the error that carries `event_id`."""
        return self.recv_until(lambda _, e: e.type == "error" and e.error.event_id == event_id)

    def name(self, ga_type: str) -> str:
        return BETA_RENAMES.get(ga_type, ga_type) if self.beta else ga_type


def _user(text: str, item_id: str | None = None) -> dict[str, Any]:
    item: dict[str, Any] = {
        "type": "message",
        "role": "user",
        "content": [{"type": "input_text", "text": text}],
    }
    if item_id is not None:
        item["id"] = item_id
    return item


def _sentinel(tag: str) -> str:
    return json.dumps(
        {"type": "conversation.item.retrieve", "item_id": SENTINEL_ITEM, "event_id": tag}
    )


def create_anchors(conn: Connection) -> None:
    """The items the fuzzing must not lose: one typed, one spoken."""
    audio = {"type": "input_audio", "audio": base64.b64encode(ANCHOR_AUDIO).decode()}
    anchors = [
        _user(ANCHOR_TEXT, ANCHOR_TEXT_ID),
        {"type": "message", "id": ANCHOR_AUDIO_ID, "role": "user", "content": [audio]},
    ]
    for item in anchors:
        conn.send_event({"type": "conversation.item.create", "item": item})
        added = conn.name("conversation.item.added")
        conn.recv_until(lambda _, e, a=added, i=item: e.type == a and e.item.id == i["id"])


def check_anchors(conn: Connection) -> None:
    for item_id in ANCHOR_IDS:
        conn.send_event({"type": "conversation.item.retrieve", "item_id": item_id})
        raw, _ = conn.recv_until(
            lambda r, e, i=item_id: e.type == "conversation.item.retrieved" and r["item"]["id"] == i
        )[-1]
        part = raw["item"]["content"][0]
        if item_id == ANCHOR_TEXT_ID:
            assert (part["type"], part["text"]) == ("input_text", ANCHOR_TEXT), raw
        else:
            assert part["type"] == "input_audio", raw
            assert base64.b64decode(part["audio"]) == ANCHOR_AUDIO, "the anchor's audio changed"


def settle(conn: Connection, timeout: float = 30.0) -> None:
    """Cancel the conversation's response, if any, and wait until every response has finished
    (each `response.created` has its `response.done`): none may hang."""
    conn.send_event({"type": "response.cancel", "event_id": "settle-cancel"})
    conn.send(_sentinel("settle"))
    conn.until_error("settle")
    deadline = time.monotonic() + timeout
    while conn.started - conn.finished:
        assert time.monotonic() < deadline, (
            f"responses never finished: {conn.started - conn.finished}"
        )
        conn.recv()


def text_turn(conn: Connection, llm: Any, text: str = "Still there?") -> None:
    """A normal text turn on the same socket: the session goes on."""
    settle(conn)
    session: dict[str, Any] = {
        "instructions": "Be brief.",
        "tools": [],
        "tool_choice": "auto",
        "truncation": "auto",
    }
    if conn.beta:
        session |= {"modalities": ["text"], "max_response_output_tokens": "inf"}
    else:
        session |= {"type": "realtime", "output_modalities": ["text"], "max_output_tokens": "inf"}
    conn.send_event({"type": "session.update", "event_id": "turn-session", "session": session})
    conn.recv_until(lambda _, e: _not_an_error(e, "turn-session") and e.type == "session.updated")
    conn.send_event(
        {"type": "conversation.item.create", "event_id": "turn-item", "item": _user(text)}
    )
    added = conn.name("conversation.item.added")
    conn.recv_until(lambda _, e: _not_an_error(e, "turn-item") and e.type == added)
    conn.send_event({"type": "response.create", "event_id": "turn-response"})
    created = conn.recv_until(
        lambda _, e: _not_an_error(e, "turn-response") and e.type == "response.created"
    )[-1][1]
    done = conn.recv_until(
        lambda _, e: e.type == "response.done" and e.response.id == created.response.id
    )[-1][1]
    assert done.response.status == "completed", done.response
    assert done.response.output[0].content[0].text == "".join(REPLY)
    assert {"role": "user", "content": text} in [r["messages"][-1] for r in llm.requests]


def transcription_turn(conn: Connection) -> None:
    """A transcription session's normal turn on the same socket: audio in, a transcript out."""
    settle(conn)
    session = {"type": "transcription", "audio": {"input": {"turn_detection": None}}}
    conn.send_event({"type": "session.update", "event_id": "turn-session", "session": session})
    conn.recv_until(lambda _, e: _not_an_error(e, "turn-session") and e.type == "session.updated")
    conn.send_event({"type": "input_audio_buffer.clear", "event_id": "turn-clear"})
    audio = base64.b64encode(audio_bytes(9600, seed=3)).decode()
    conn.send_event({"type": "input_audio_buffer.append", "event_id": "turn-audio", "audio": audio})
    conn.send_event({"type": "input_audio_buffer.commit", "event_id": "turn-commit"})
    committed = conn.recv_until(
        lambda _, e: _not_an_error(e, "turn-commit") and e.type == "input_audio_buffer.committed"
    )[-1][1]
    conn.recv_until(
        lambda _, e: (
            e.type == "conversation.item.input_audio_transcription.completed"
            and e.item_id == committed.item_id
        )
    )


def _not_an_error(event: Any, event_id: str) -> bool:
    assert not (event.type == "error" and event.error.event_id == event_id), event
    return True


def healthy(server: Any) -> None:
    assert server.thread.is_alive(), "the server thread died"
    with urllib.request.urlopen(server.url + "/healthz", timeout=10) as answer:
        assert answer.status == 200


# --- classifying and checking one frame ------------------------------------------------------


@dataclass
class Expectation:
    error: ProtocolError | None = None  # the error parsing must produce
    event: Any = None  # the parsed event, when it parses
    client_event_id: str | None = None  # the `event_id` the client sent, if the JSON has one


def classify(payload: str | bytes, binary: bool, dialect: Any) -> Expectation:
    if binary:
        return Expectation(error=ProtocolError("binary", errors.BINARY_FRAME))
    assert isinstance(payload, str)
    try:
        data = orjson.loads(payload)
    except orjson.JSONDecodeError:
        data = None
    client_id = data.get("event_id") if isinstance(data, dict) else None
    client_id = client_id if isinstance(client_id, str) else None
    try:
        event = dialect.parse(payload)
    except ProtocolError as error:
        if error.code == errors.INVALID_JSON:
            client_id = None  # what the server could not read, it cannot echo
        return Expectation(error=error, client_event_id=client_id)
    return Expectation(event=event, client_event_id=client_id)


def check_window(
    frame: Frame, expect: Expectation, window: list[tuple[dict[str, Any], Any]], beta: bool
) -> None:
    """What the server said about one frame, between its sentinels."""
    said = [e for _, e in window]
    errs = [raw["error"] for raw, e in window if e.type == "error"]
    assert len(errs) <= 1, f"{frame} got {len(errs)} errors: {errs}"
    if expect.error is not None:
        assert errs, f"no error event for the bad {frame}; got {[e.type for e in said]}"
        got, want = errs[0], expect.error
        assert (got["code"], got["param"]) == (want.code, want.param), (frame, got)
        assert got["event_id"] == want.event_id, (frame, got)
        assert got["event_id"] == expect.client_event_id, (frame, got)
        return
    event = expect.event
    if errs:
        assert errs[0]["event_id"] == event.event_id, (frame, errs[0])
        return
    answer = ANSWERS[event.type]
    if answer is not None:
        answer = BETA_RENAMES.get(answer, answer) if beta else answer
        assert answer in {e.type for e in said}, (
            f"neither an error nor {answer} for {frame}: {[e.type for e in said]}"
        )


def run_batch(conn: Connection, batch: list[Frame]) -> None:
    """Send each frame and its sentinel, and check what came back before the next (a client
    that reads its events: the server drops one that lets megabytes of them pile up)."""
    for index, frame in enumerate(batch):
        payload = frame.payload(f"fz-{index}")
        expect = classify(payload, frame.binary, conn.dialect)
        conn.send(payload, binary=frame.binary)
        conn.send(_sentinel(f"sentinel-{index}"))
        window = conn.until_error(f"sentinel-{index}")
        sentinel = window.pop()[0]["error"]
        assert sentinel["code"] == errors.ITEM_NOT_FOUND, sentinel
        check_window(frame, expect, window, conn.beta)


def fuzz_session(
    server: Any, llm: Any, batch: list[Frame], *, beta: bool = False, transcription: bool = False
) -> None:
    llm.reset()
    conn = Connection(server, beta=beta, transcription=transcription)
    try:
        create_anchors(conn)
        run_batch(conn, batch)
        if transcription:
            transcription_turn(conn)
        else:
            text_turn(conn, llm)
        check_anchors(conn)
    finally:
        conn.close()
    healthy(server)


# --- the fuzzers --------------------------------------------------------------------------------


@settings(FUZZ_SETTINGS, max_examples=round(40 * SCALE))
@given(batch=st.lists(frames(), min_size=1, max_size=12))
def test_fuzzed_events_get_errors_and_the_session_goes_on(server, llm, batch) -> None:
    fuzz_session(server, llm, batch)


@settings(FUZZ_SETTINGS, max_examples=round(25 * SCALE))
@given(
    batch=st.lists(
        frames(huge=False, events=st.one_of(beta_objects, event_objects)), min_size=1, max_size=12
    )
)
def test_fuzzed_events_in_the_beta_dialect(server, llm, batch) -> None:
    fuzz_session(server, llm, batch, beta=True)


@settings(FUZZ_SETTINGS, max_examples=round(15 * SCALE))
@given(batch=st.lists(frames(huge=False), min_size=1, max_size=12))
def test_fuzzed_events_in_a_transcription_session(server, llm, batch) -> None:
    """`?intent=transcription`: a session that only transcribes (no responses)."""
    fuzz_session(server, llm, batch, transcription=True)


@settings(FUZZ_SETTINGS, max_examples=round(25 * SCALE))
@given(batch=valid_batches)
def test_valid_events_in_any_order_get_an_answer_or_an_error(server, llm, batch) -> None:
    """Only events that parse: their order is what is fuzzed (commit before append, truncate
    or retrieve of what is not there, cancel with nothing active, ...)."""
    fuzz_session(server, llm, batch)


# --- named cases -------------------------------------------------------------------------------


def _expect_error(conn: Connection, event: dict[str, Any], code: str, param: str | None) -> None:
    conn.send_event(event)
    error = conn.until_error(event["event_id"])[-1][0]["error"]
    assert (error["code"], error["param"]) == (code, param), error


def test_valid_events_in_invalid_orders(server, llm) -> None:
    conn = Connection(server)
    try:
        create_anchors(conn)
        _expect_error(
            conn,
            {"type": "input_audio_buffer.commit", "event_id": "commit-empty"},
            errors.COMMIT_EMPTY,
            None,
        )
        _expect_error(
            conn,
            {
                "type": "conversation.item.truncate",
                "event_id": "truncate-nothing",
                "item_id": "no_such_item",
                "content_index": 0,
                "audio_end_ms": 0,
            },
            errors.ITEM_NOT_FOUND,
            "item_id",
        )
        _expect_error(
            conn,
            {
                "type": "conversation.item.truncate",
                "event_id": "truncate-user",
                "item_id": ANCHOR_AUDIO_ID,
                "content_index": 0,
                "audio_end_ms": 10,
            },
            errors.INVALID_VALUE,
            "item_id",
        )
        _expect_error(
            conn,
            {"type": "response.cancel", "event_id": "cancel-nothing"},
            errors.NO_ACTIVE_RESPONSE,
            None,
        )
        _expect_error(
            conn,
            {"type": "response.cancel", "event_id": "cancel-unknown", "response_id": "resp_x"},
            errors.NO_ACTIVE_RESPONSE,
            "response_id",
        )
        conn.send_event({"type": "conversation.item.create", "item": _user("doomed", "doomed")})
        conn.recv_until(lambda _, e: e.type == "conversation.item.added")
        conn.send_event({"type": "conversation.item.delete", "item_id": "doomed"})
        conn.recv_until(lambda _, e: e.type == "conversation.item.deleted")
        for kind in ("retrieve", "delete", "truncate"):
            event = {
                "type": f"conversation.item.{kind}",
                "event_id": f"{kind}-deleted",
                "item_id": "doomed",
            }
            if kind == "truncate":
                event |= {"content_index": 0, "audio_end_ms": 0}
            _expect_error(conn, event, errors.ITEM_NOT_FOUND, "item_id")
        _expect_error(
            conn,
            {
                "type": "conversation.item.create",
                "event_id": "after-deleted",
                "previous_item_id": "doomed",
                "item": _user("orphan"),
            },
            errors.PREVIOUS_ITEM_NOT_FOUND,
            "previous_item_id",
        )
        _expect_error(
            conn,
            {
                "type": "response.create",
                "event_id": "ref-deleted",
                "response": {
                    "conversation": "none",
                    "input": [{"type": "item_reference", "id": "doomed"}],
                },
            },
            errors.ITEM_NOT_FOUND,
            "response.input",
        )
        # Clearing what is empty is fine, and says so; an output buffer clear on a WebSocket
        # session is a no-op: neither answers with an error.
        conn.send_event({"type": "input_audio_buffer.clear"})
        conn.send_event({"type": "output_audio_buffer.clear", "event_id": "out-clear"})
        conn.send(_sentinel("clear-sentinel"))
        said = [e.type for _, e in conn.until_error("clear-sentinel")]
        assert said == ["input_audio_buffer.cleared", "error"], said
        text_turn(conn, llm)
        check_anchors(conn)
    finally:
        conn.close()
    healthy(server)


@pytest.mark.parametrize("beta", [False, True], ids=["ga", "beta"])
def test_multi_megabyte_events_get_errors(server, llm, beta) -> None:
    mib = 1024 * 1024
    cases = [
        # (event, code, param)
        (
            {"type": "input_audio_buffer.append", "audio": "!" * (4 * mib)},
            errors.INVALID_AUDIO,
            "audio",
        ),
        (
            {
                "type": "input_audio_buffer.append",
                "audio": base64.b64encode(b"\x01" * (3 * mib + 1)).decode(),
            },
            errors.INVALID_AUDIO,
            "audio",
        ),
        (
            {"type": "response.cancel", "response_id": "r" * (3 * mib)},
            errors.NO_ACTIVE_RESPONSE,
            "response_id",
        ),
        ({"type": "response.cancel", "x" * mib: 1}, errors.UNKNOWN_PARAMETER, "x" * mib),
        ({"type": "y" * (3 * mib)}, errors.UNKNOWN_EVENT_TYPE, "type"),
    ]
    conn = Connection(server, beta=beta)
    try:
        create_anchors(conn)
        for index, (event, code, param) in enumerate(cases):
            _expect_error(conn, {**event, "event_id": f"huge-{index}"}, code, param)
        conn.send('{"type": "response.create", "event_id": "' + "z" * (2 * mib))
        conn.send(_sentinel("after-unterminated"))
        said = conn.until_error("after-unterminated")
        assert [raw["error"]["code"] for raw, e in said if e.type == "error"] == [
            errors.INVALID_JSON,
            errors.ITEM_NOT_FOUND,
        ]
        text_turn(conn, llm)
        check_anchors(conn)
    finally:
        conn.close()
    healthy(server)


@pytest.mark.parametrize("depth", [100, 250, 1500, 5000])
def test_deeply_nested_json_gets_an_error(server, llm, depth) -> None:
    conn = Connection(server)
    try:
        for index, (prefix, suffix) in enumerate(
            [
                ('{"type": "session.update", "event_id": "deep-%d", "session": ', "}"),
                ('{"type": "response.create", "event_id": "deep-%d", "response": ', "}"),
                ('{"event_id": "deep-%d", "type": "response.cancel", "response_id": ', "}"),
            ]
        ):
            for open_, close in (("[", "]"), ('{"a":', "}")):
                inner = open_ * depth + ("1" if open_ != "[" else "") + close * depth
                conn.send((prefix % index) + inner + suffix)
                conn.send(_sentinel(f"deep-sentinel-{index}{open_}"))
                said = conn.until_error(f"deep-sentinel-{index}{open_}")[:-1]
                errs = [raw["error"] for raw, e in said if e.type == "error"]
                assert len(errs) == 1, [e.type for _, e in said]
                # Even an event too deep to parse is named (docs/protocol.md, "Limits").
                assert errs[0]["event_id"] == f"deep-{index}", errs[0]
        text_turn(conn, llm)
    finally:
        conn.close()
    healthy(server)


def _close_code(conn: Connection, timeout: float = 30.0) -> int:
    """The code of the close frame the server sends next (pings skipped; no event may come)."""
    deadline = time.monotonic() + timeout
    while True:
        assert time.monotonic() < deadline, "no close frame"
        opcode, data = conn.ws.recv_data(control_frame=True)
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            return int.from_bytes(data[:2], "big")
        assert opcode in (websocket.ABNF.OPCODE_PING, websocket.ABNF.OPCODE_PONG), (opcode, data)


def test_invalid_utf8_in_a_text_frame_fails_only_that_connection(server, llm) -> None:
    """RFC 6455 §8.1: invalid UTF-8 in a text frame MUST fail the connection (close 1007).
    Only that connection: another session goes on, and a new one works."""
    bystander = Connection(server)
    try:
        create_anchors(bystander)
        for bad in (b"\xff\xfe", b'{"type": "response.create", "event_id": "\xc3\x28"}'):
            victim = Connection(server)
            victim.send(bad)
            assert _close_code(victim) == 1007
            victim.close()
            healthy(server)
        text_turn(bystander, llm)
        check_anchors(bystander)
    finally:
        bystander.close()
    fresh = Connection(server)
    try:
        text_turn(fresh, llm, "A new session?")
    finally:
        fresh.close()


def test_a_frame_over_the_size_limit_fails_only_that_connection(server, llm) -> None:
    """Past the WebSocket layer's maximum message size (uvicorn's `ws_max_size`, as the server
    runs it) the server fails the connection (1009), or resets it while the client is still
    sending. The process and other sessions are unaffected."""
    limit = server.server.config.ws_max_size
    bystander = Connection(server)
    victim = Connection(server)
    try:
        # Not an event either way ("!" is not base64): were the frame read, an error would come.
        frame = json.dumps({"type": "input_audio_buffer.append", "audio": "!" * (limit + 1)})
        try:
            victim.send(frame)
            assert _close_code(victim) == 1009
        except (ConnectionError, websocket.WebSocketConnectionClosedException):
            pass  # reset mid-send: the close frame was never read
        healthy(server)
        text_turn(bystander, llm)
    finally:
        victim.close()
        bystander.close()


# --- bugs the fuzzers found: regressions for the fixed ones, strict xfails for the rest ------------


@pytest.mark.parametrize(
    "event",
    [
        {
            "type": "conversation.item.create",
            "item": {"type": "message", "role": [], "content": []},
        },
        {
            "type": "conversation.item.create",
            "item": {"type": "message", "role": "user", "content": [{"type": ["input_text"]}]},
        },
        {"type": "session.update", "session": {"modalities": ["text", {}]}},
    ],
    ids=["role", "part-type", "modalities"],
)
def test_beta_unhashable_values_get_an_error_not_a_closed_socket(server, llm, event) -> None:
    """Was: the beta translation raised TypeError on a list or object where it hashed a value,
    `_read` let it escape, and the socket closed (1011)."""
    conn = Connection(server, beta=True)
    try:
        conn.send_event({**event, "event_id": "evt_unhashable"})
        try:
            conn.until_error("evt_unhashable")
        except (websocket.WebSocketConnectionClosedException, ConnectionError) as exc:
            pytest.fail(f"the socket closed: {exc!r}")
        text_turn(conn, llm)
    finally:
        conn.close()


def test_refused_duplicate_item_keeps_the_original_audio(server, llm) -> None:
    """Was: a create refused for its duplicate id had already stored its audio under that id,
    replacing the existing item's."""
    conn = Connection(server)
    try:
        create_anchors(conn)
        impostor = base64.b64encode(audio_bytes(4800, seed=99)).decode()
        conn.send_event(
            {
                "type": "conversation.item.create",
                "event_id": "evt_dup_audio",
                "item": {
                    "type": "message",
                    "id": ANCHOR_AUDIO_ID,
                    "role": "user",
                    "content": [{"type": "input_audio", "audio": impostor}],
                },
            }
        )
        error = conn.until_error("evt_dup_audio")[-1][0]["error"]
        assert error["code"] == errors.DUPLICATE_ITEM_ID
        check_anchors(conn)
    finally:
        conn.close()


def test_an_integer_past_64_bits_gets_an_answer_and_the_session_goes_on(server, llm) -> None:
    """Was: stored, then unencodable by orjson; the writer task died and the session went
    silent with the socket still open."""
    conn = Connection(server)
    conn.ws.settimeout(2)
    try:
        conn.send(
            '{"type": "session.update", "event_id": "evt_big", "session": {"type": "realtime", '
            '"audio": {"input": {"turn_detection": {"type": "server_vad", '
            '"silence_duration_ms": 18446744073709551616}}}}}'
        )
        conn.send(_sentinel("after-big"))
        try:
            said = [e.type for _, e in conn.until_error("after-big")]
        except websocket.WebSocketTimeoutException:
            pytest.fail("the session went silent")
        assert said[0] in ("session.updated", "error"), said
        conn.ws.settimeout(20)
        text_turn(conn, llm)
    finally:
        conn.close()


def test_beta_deeply_nested_metadata_gets_an_answer_not_a_closed_socket(server, llm) -> None:
    """Was: past ~255 levels in a field that takes any JSON, pydantic's serializer raised
    ValueError in `_session_update`, which escaped and closed the socket (1011)."""
    conn = Connection(server, beta=True)
    try:
        conn.send(
            '{"type": "session.update", "event_id": "evt_deep", "session": {"tracing": '
            '{"metadata": ' + '{"a":' * 300 + "1" + "}" * 300 + "}}}"
        )
        conn.send(_sentinel("after-deep"))
        try:
            said = [e.type for _, e in conn.until_error("after-deep")]
        except (websocket.WebSocketConnectionClosedException, ConnectionError) as exc:
            pytest.fail(f"the socket closed: {exc!r}")
        assert said[0] in ("session.updated", "error"), said
        text_turn(conn, llm)
    finally:
        conn.close()


def test_json_too_deep_to_parse_is_reported_as_invalid_json(server) -> None:
    """Was: `invalid_value`, "Invalid value for 'None': Invalid JSON: recursion limit ..."."""
    conn = Connection(server)
    try:
        conn.send(
            '{"type": "response.cancel", "event_id": "deep", "response_id": '
            + "[" * 300
            + "]" * 300
            + "}"
        )
        conn.send(_sentinel("after-deep"))
        error = next(raw["error"] for raw, e in conn.until_error("after-deep") if e.type == "error")
        assert "'None'" not in error["message"], error
        assert error["code"] == errors.INVALID_JSON, error
    finally:
        conn.close()


_PARSE_DEEP = """
import sys
from openrealtime.protocol.errors import ProtocolError
from openrealtime.transports.dialect import GA, Beta

depth = 500_000
frame = '{"type": "session.update", "session": ' + '{"a":' * depth + '1' + '}' * (depth + 1)
for dialect in (GA(), Beta()):
    try:
        dialect.parse(frame)
    except ProtocolError as error:
        print(dialect.name, error.code)
"""


def test_deeply_nested_json_does_not_kill_the_process() -> None:
    """What the WebSocket transport does with each text frame (`dialect.parse`), in a process of
    its own. Was: orjson < 3.9.15 (CVE-2024-27454) overflowed the C stack and killed the whole
    server process (SIGSEGV) on one ~3 MB frame of nested objects."""
    done = subprocess.run(
        [sys.executable, "-c", _PARSE_DEEP], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, f"exit code {done.returncode}: {done.stderr[-500:]}"
    assert done.stdout.split() == ["ga", "invalid_json", "beta", "invalid_json"], done.stdout


def test_beta_deep_json_gets_an_error_without_unraisable_exceptions(server) -> None:
    """Was: pydantic-core reported a RecursionError on a `type` nested past Python's recursion
    limit through sys.unraisablehook ("Exception ignored" on stderr, per frame)."""
    raised: list[Any] = []
    previous, sys.unraisablehook = sys.unraisablehook, lambda u: raised.append(u.exc_type)
    try:
        conn = Connection(server, beta=True)
        try:
            conn.send('{"type": ' + '{"a":' * 3000 + "1" + "}" * 3000 + "}")
            conn.send(_sentinel("after-deep"))
            said = conn.until_error("after-deep")
        finally:
            conn.close()
        gc.collect()
    finally:
        sys.unraisablehook = previous
    assert [e.type for _, e in said].count("error") == 2
    assert raised == [], raised


@pytest.mark.parametrize(
    "item",
    [
        {"type": "mcp_approval_response", "approval_request_id": "apr_1", "approve": True},
        {
            "type": "message",
            "role": "user",
            "content": [{"type": "input_image", "image_url": "data:image/png;base64,AAAA"}],
        },
    ],
    ids=["mcp-item", "input-image"],
)
def test_beta_ga_only_item_gets_an_answer_beta_can_read_or_an_error(server, llm, item) -> None:
    conn = Connection(server, beta=True)
    try:
        conn.send_event({"type": "conversation.item.create", "event_id": "evt_ga", "item": item})
        conn.send(_sentinel("after-ga"))
        said = [e.type for _, e in conn.until_error("after-ga")][:-1]
        assert said in (["conversation.item.created"], ["error"]), said
        text_turn(conn, llm)
    finally:
        conn.close()


@pytest.mark.parametrize("beta", [False, True], ids=["ga", "beta"])
@pytest.mark.parametrize("tool", [1, "get_weather", None], ids=["number", "string", "null"])
def test_a_tool_that_is_not_an_object_gets_an_error_naming_it(server, llm, beta, tool) -> None:
    conn = Connection(server, beta=beta)
    try:
        session = {"tools": [tool]} if beta else {"type": "realtime", "tools": [tool]}
        conn.send_event({"type": "session.update", "event_id": "evt_tool", "session": session})
        conn.send(_sentinel("after-tool"))
        said = conn.until_error("after-tool")
        errs = [raw["error"] for raw, e in said if e.type == "error"][:-1]
        assert len(errs) == 1, errs
        assert errs[0]["event_id"] == "evt_tool", errs[0]
        assert str(errs[0]["param"]).startswith("session.tools"), errs[0]
        text_turn(conn, llm)
    finally:
        conn.close()
