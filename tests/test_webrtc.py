"""WebRTC calls, with aiortc as the browser: the SDP exchange in both forms, the `oai-events`
data channel (every event validated strictly with the SDK's types), hang-up and a peer that
just leaves. The spoken turn and the barge-in are paced in real time (`-m realtime`).

The server's backends are the real ones (Silero VAD, pocketsphinx, espeak-ng); the model is
the scripted LLM.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from types import SimpleNamespace

import httpx
import numpy as np
import openai
import pytest
from conftest import API_KEY
from scripted_llm import Text
from servers import ServerThread
from speech_fixtures import speak, with_silence
from webrtc_client import RATE, CallClient, rms, serve

from benchmarks.lib.webrtc import PacketMicrophone, answers_opus_dtx, encode_opus
from openrealtime.backends.registry import Backends
from openrealtime.config import Settings
from openrealtime.server.secrets import new_secret
from openrealtime.transports.dialect import GA
from openrealtime.transports.inbound_audio import FILL_SLACK_S, InboundAudio
from openrealtime.transports.webrtc import with_opus_dtx

CALLS = "/v1/realtime/calls"
TEXT_ONLY = {"type": "realtime", "output_modalities": ["text"]}
LONG_ANSWER = (
    "Let me tell you a long story about the sea. The waves rolled in all day long. "
    "A small boat sailed past the old lighthouse. The keeper waved from the top of the tower. "
    "Gulls circled over the harbour and the fishermen mended their nets. "
    "In the evening the wind rose and the sky turned a deep shade of orange. "
    "Everyone went home for supper and the town fell quiet for the night."
)


@pytest.fixture(scope="module")
def rtc_server(settings: Settings, backends: Backends) -> Iterator[ServerThread]:
    yield from serve(settings, backends)


def _user(text: str) -> dict:
    return {
        "type": "conversation.item.create",
        "item": {
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": text}],
        },
    }


# Per-process machinery started by the first session that needs it, not owned by a call.
_PROCESS_TASKS = {"VadScheduler._run"}


async def _tasks(server) -> list[str]:
    async with httpx.AsyncClient(base_url=server.url) as http:
        tasks = (await http.get("/_test/tasks")).json()
    return [task for task in tasks if task not in _PROCESS_TASKS]


async def _until_gone(server, call_id: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(c.id == call_id for c in server.app.state.calls._calls.values()):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"call {call_id} still registered after {timeout} s")


async def _settled_tasks(server, expected: list[str], timeout: float = 5) -> list[str]:
    """The server's tasks, once they are back to `expected` (or whatever they are at the end)."""
    deadline = time.monotonic() + timeout
    while True:
        tasks = await _tasks(server)
        if tasks == expected or time.monotonic() > deadline:
            return tasks
        await asyncio.sleep(0.1)


# --- audio in: packets decoded inline, gaps as silence --------------------------------------


def _packets(pcm: np.ndarray) -> list[bytes]:
    return encode_opus(pcm)  # 20 ms Opus packets of 48 kHz mono


def _inbound(rate: int = 24000) -> tuple[InboundAudio, list[np.ndarray]]:
    chunks: list[np.ndarray] = []
    return InboundAudio(chunks.append, lambda: rate), chunks


def _rtp(timestamp: int, payload: bytes) -> SimpleNamespace:
    return SimpleNamespace(timestamp=timestamp, _data=payload)


def test_packets_decode_to_the_session_rate_in_order() -> None:
    speech = speak("hello there", RATE)
    inbound, chunks = _inbound(24000)
    for i, packet in enumerate(_packets(speech)):
        assert inbound.add(_rtp((4_294_960_000 + i * 960) % (1 << 32), packet)) == (False, None)
    out = np.concatenate(chunks)
    frames = -(-len(speech) // 960)
    # all of it, at 24 kHz, less the decoder's pre-skip and what the resampler holds (~30 ms)
    assert frames * 480 - 960 <= len(out) <= frames * 480
    assert rms(out) > 300 and inbound.dropped == 0 and inbound.filled_s == 0


def test_a_timestamp_gap_is_silence_and_a_late_packet_is_dropped() -> None:
    speech = _packets(speak("hello there", RATE))
    inbound, chunks = _inbound(16000)
    inbound.add(_rtp(1000, speech[0]))
    inbound.add(_rtp(1000 + 960 * 21, speech[1]))  # DTX: 400 ms sent as nothing
    inbound.add(_rtp(1000 + 960 * 5, speech[2]))  # within what is already filled
    assert inbound.dropped == 1
    assert inbound.filled_s == pytest.approx(0.4)
    total = sum(len(c) for c in chunks)
    assert 21 * 320 <= total <= 22 * 320  # two frames and the gap, at 16 kHz
    gap = max((c for c in chunks if not c.any()), key=len)
    assert len(gap) == 20 * 320  # the gap's 20 frames, in one piece


def test_silence_is_filled_while_no_packet_comes() -> None:
    inbound, chunks = _inbound(24000)
    inbound.add(_rtp(0, _packets(np.zeros(960, np.int16))[0]))
    start = time.monotonic()
    inbound.fill_to_now(start)  # the packet just came: nothing is missing yet
    assert inbound.filled_s == 0
    decoded = sum(len(c) for c in chunks)
    inbound.fill_to_now(start + 1.0)
    assert inbound.filled_s == pytest.approx(1.0 - FILL_SLACK_S, abs=0.03)
    filled = np.concatenate(chunks)[decoded:]
    assert not filled[-int(0.9 * 24000) :].any()  # silence, at the session's rate
    assert len(filled) == pytest.approx(24000 * inbound.filled_s, abs=480)
    # a packet later than the slack (its position already filled) is still taken, after
    # the silence: the caller speaks again, the stream stretches
    filled_to = sum(len(c) for c in chunks)
    speech = _packets(speak("hello there", RATE))[10:15]
    for i, packet in enumerate(speech):
        inbound.add(_rtp(int(0.5 * RATE) + i * 960, packet))
    assert inbound.dropped == 0
    assert inbound.stretched_s == pytest.approx(1.0 - FILL_SLACK_S - 0.5, abs=0.03)
    assert rms(np.concatenate(chunks)[filled_to:]) > 100
    assert inbound.add(_rtp(int(0.5 * RATE), speech[0])) == (False, None)  # a duplicate
    assert inbound.dropped == 1


def test_the_answer_asks_for_opus_dtx() -> None:
    answer = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 96 0\r\na=rtpmap:96 opus/48000/2\r\n"
    assert with_opus_dtx(answer).endswith("a=rtpmap:96 opus/48000/2\r\na=fmtp:96 usedtx=1\r\n")
    assert answers_opus_dtx(with_opus_dtx(answer))
    with_fmtp = answer + "a=fmtp:96 minptime=10\r\n"
    assert "a=fmtp:96 minptime=10;usedtx=1\r\n" in with_opus_dtx(with_fmtp)
    assert not answers_opus_dtx(answer)


# --- the SDP exchange ------------------------------------------------------------------------


async def test_sdp_offer_answer_and_session_created_on_the_data_channel(rtc_server) -> None:
    client = CallClient(rtc_server.url, API_KEY)
    try:
        await client.connect()
        response = client.response
        assert response is not None
        assert response.headers["location"] == f"{CALLS}/{client.call_id}"
        assert client.call_id is not None and client.call_id.startswith("rtc_")
        answer = response.text
        assert answer.startswith("v=0") and "a=candidate:" in answer
        assert "a=end-of-candidates" in answer  # gathered before answering
        # audio in Opus only (the server decodes Opus), and the caller asked for DTX
        audio_line = next(line for line in answer.splitlines() if line.startswith("m=audio"))
        payload_types = audio_line.split()[3:]
        assert len(payload_types) == 1
        assert f"a=rtpmap:{payload_types[0]} opus/48000/2" in answer
        assert answers_opus_dtx(answer)
        created = await client.recv()
        assert created.type == "session.created"
        assert created.session.type == "realtime"
        assert created.session.audio.output.format.type == "audio/pcm"
    finally:
        await client.close()


async def test_an_offer_without_opus_is_refused(rtc_server) -> None:
    client = CallClient(rtc_server.url, API_KEY)
    try:
        offer = await client.offer()
        opus = [line for line in offer.splitlines() if " opus/48000" in line]
        assert opus
        pt = opus[0].split(":")[1].split()[0]
        lines = [
            line
            for line in offer.splitlines()
            if not line.startswith((f"a=rtpmap:{pt} ", f"a=fmtp:{pt} ", f"a=rtcp-fb:{pt} "))
        ]
        lines = [
            " ".join(p for p in line.split() if p != pt) if line.startswith("m=audio") else line
            for line in lines
        ]
        async with httpx.AsyncClient(base_url=rtc_server.url) as http:
            response = await http.post(
                CALLS,
                content="\r\n".join(lines) + "\r\n",
                headers={"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/sdp"},
            )
        assert response.status_code == 400, response.text
        assert "Opus" in response.json()["error"]["message"]
        assert response.json()["error"]["param"] == "sdp"
    finally:
        await client.close()
    assert not rtc_server.app.state.calls._calls


async def test_multipart_offer_with_session_through_the_sdk(rtc_server) -> None:
    """The SDK's `realtime.calls.create(sdp=, session=)`: multipart, session part as JSON."""
    client = CallClient(rtc_server.url, API_KEY)
    sdk = openai.AsyncOpenAI(base_url=rtc_server.url + "/v1", api_key=API_KEY)
    try:
        offer = await client.offer()
        answer = await sdk.realtime.calls.with_raw_response.create(
            sdp=offer,
            session={
                "type": "realtime",
                "model": "gpt-realtime",
                "instructions": "Speak like a pirate.",
                "audio": {
                    "output": {"voice": "marin"},
                    "input": {"transcription": {"model": "whisper-1"}},
                },
            },
        )
        await client.accept(answer.http_response)
        created = await client.until("session.created")
        session = created[-1].session
        assert session.instructions == "Speak like a pirate."
        assert session.audio.output.voice == "marin"
        assert session.audio.input.transcription.model == "whisper-1"
    finally:
        await client.close()


async def test_client_secret_session_applies(rtc_server) -> None:
    minted = {"type": "realtime", "instructions": "Minted instructions.", "model": "gpt-realtime"}
    secret = new_secret(minted, 60, time.time())
    await _put_secret(rtc_server, secret)
    client = CallClient(rtc_server.url, secret.value)
    try:
        await client.connect()
        created = (await client.until("session.created"))[-1]
        assert created.session.instructions == "Minted instructions."
    finally:
        await client.close()


async def _put_secret(server, secret) -> None:
    # The store belongs to the server's loop; an in-memory put is loop-agnostic.
    await server.app.state.auth.secrets.put(secret)


@pytest.mark.parametrize(
    ("session", "code", "param"),
    [
        ({"type": "realtime", "voice": "alloy"}, "unknown_parameter", "session.voice"),
        ({"type": "realtime", "temperature": 9}, "invalid_value", "session.temperature"),
        (
            {"type": "realtime", "audio": {"output": {"voice": "nobody-speaks-this"}}},
            "invalid_value",
            "session.audio.output.voice",
        ),
    ],
)
async def test_bad_session_part_is_a_400_in_openai_shape(rtc_server, session, code, param) -> None:
    client = CallClient(rtc_server.url, API_KEY)
    try:
        offer = await client.offer()
        sdk = openai.AsyncOpenAI(base_url=rtc_server.url + "/v1", api_key=API_KEY)
        with pytest.raises(openai.BadRequestError) as raised:
            await sdk.realtime.calls.create(sdp=offer, session=session)
        error = raised.value.body
        assert error["code"] == code and error["param"] == param, error
        assert error["type"] == "invalid_request_error" and error["message"]
    finally:
        await client.close()
    assert not rtc_server.app.state.calls._calls


async def test_bad_requests_are_refused(rtc_server) -> None:
    async with httpx.AsyncClient(base_url=rtc_server.url) as http:
        auth = {"Authorization": f"Bearer {API_KEY}"}
        no_key = await http.post(
            CALLS, content="v=0\r\n", headers={"Content-Type": "application/sdp"}
        )
        assert no_key.status_code == 401
        assert no_key.json()["error"]["code"] == "invalid_api_key"
        wrong_type = await http.post(CALLS, json={"sdp": "v=0"}, headers=auth)
        assert wrong_type.status_code == 400
        assert "application/sdp" in wrong_type.json()["error"]["message"]
        not_sdp = await http.post(
            CALLS, content="hello", headers={**auth, "Content-Type": "application/sdp"}
        )
        assert not_sdp.status_code == 400 and not_sdp.json()["error"]["param"] == "sdp"
        broken = await http.post(
            CALLS,
            content="v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n",
            headers={**auth, "Content-Type": "application/sdp"},
        )
        assert broken.status_code == 400, broken.text
        assert broken.json()["error"]["param"] == "sdp"
    assert not rtc_server.app.state.calls._calls


# --- events on the data channel -------------------------------------------------------------


async def test_text_turn_over_the_data_channel(rtc_server, llm) -> None:
    llm.script(Text(["The ", "answer ", "is ", "42."]))
    client = CallClient(rtc_server.url, API_KEY)
    try:
        await client.connect(session={**TEXT_ONLY, "instructions": "Be brief."})
        assert (await client.recv()).type == "session.created"
        client.send(_user("What is the answer?"))
        client.send({"type": "response.create"})
        events = await client.until("response.done")
        done = events[-1].response
        assert done.status == "completed"
        assert done.output[0].content[0].text == "The answer is 42."
        assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == (
            "The answer is 42."
        )
        assert llm.last_request["messages"][0] == {"role": "system", "content": "Be brief."}
        # A bad event is an error event; the call goes on.
        client.send({"type": "response.create", "event_id": "evt_1", "response": {"bogus": 1}})
        error = (await client.until("error"))[-1]
        assert error.error.event_id == "evt_1" and error.error.code == "unknown_parameter"
        client.channel.send("not json")
        assert (await client.until("error"))[-1].error.code == "invalid_json"
        client.channel.send(b"\x00binary")
        assert (await client.until("error"))[-1].error.code == "invalid_binary_frame"
        client.send(
            {"type": "session.update", "session": {"type": "realtime", "instructions": "x"}}
        )
        assert (await client.until("session.updated"))[-1].session.instructions == "x"
    finally:
        await client.close()


async def test_a_message_no_rule_foresaw_is_an_error_event_and_the_call_goes_on(
    rtc_server, llm, monkeypatch
) -> None:
    """The data channel's handler has the WebSocket reader's catch-all: a parser bug (one is
    planted for messages naming "unforeseen") is an `error` event without its internals."""
    parse = GA.parse

    def buggy(self: GA, raw: str | bytes) -> object:
        if "unforeseen" in str(raw):
            raise RuntimeError("parser bug in /srv/openrealtime/internal.py")
        return parse(self, raw)

    monkeypatch.setattr(GA, "parse", buggy)
    llm.script(Text(["still here"]))
    client = CallClient(rtc_server.url, API_KEY, audio=False)
    try:
        await client.connect(session=TEXT_ONLY)
        await client.until("session.created")
        client.send({**_user("hi"), "event_id": "unforeseen"})
        error = (await client.until("error"))[-1].error
        assert error.code == "invalid_event" and "/srv" not in error.message
        client.send(_user("hi"))
        client.send({"type": "response.create"})
        done = (await client.until("response.done"))[-1].response
        assert done.status == "completed" and done.output[0].content[0].text == "still here"
    finally:
        await client.close()


# --- ending a call ---------------------------------------------------------------------------


async def test_hangup_ends_the_call_and_frees_everything(rtc_server) -> None:
    before = await _tasks(rtc_server)
    client = CallClient(rtc_server.url, API_KEY)
    try:
        await client.connect()
        await client.until("session.created")
        call_id = client.call_id
        during = await _tasks(rtc_server)
        assert "run_call" in during and "WebRtcPeer._await_track_end" in during
        async with httpx.AsyncClient(base_url=rtc_server.url) as http:
            auth = {"Authorization": f"Bearer {API_KEY}"}
            other = new_secret({"type": "realtime"}, 60, time.time())
            await _put_secret(rtc_server, other)
            not_theirs = await http.post(
                f"{CALLS}/{call_id}/hangup", headers={"Authorization": f"Bearer {other.value}"}
            )
            assert not_theirs.status_code == 404
            unknown = await http.post(f"{CALLS}/rtc_nope/hangup", headers=auth)
            assert unknown.status_code == 404
            assert unknown.json()["error"]["code"] == "call_not_found"
            hung_up = await http.post(f"{CALLS}/{call_id}/hangup", headers=auth)
            assert hung_up.status_code == 200
            assert not rtc_server.app.state.calls._calls
            again = await http.post(f"{CALLS}/{call_id}/hangup", headers=auth)
            assert again.status_code == 404
        # The client sees its peer closed.
        deadline = time.monotonic() + 10
        while client.pc.connectionState not in ("closed", "failed"):
            assert time.monotonic() < deadline, client.pc.connectionState
            await asyncio.sleep(0.05)
    finally:
        await client.close()
    assert await _settled_tasks(rtc_server, before) == before


async def test_the_client_secret_that_opened_a_call_may_hang_it_up(rtc_server) -> None:
    secret = new_secret({"type": "realtime"}, 60, time.time())
    await _put_secret(rtc_server, secret)
    client = CallClient(rtc_server.url, secret.value)
    try:
        await client.connect()
        async with httpx.AsyncClient(base_url=rtc_server.url) as http:
            hung_up = await http.post(
                f"{CALLS}/{client.call_id}/hangup",
                headers={"Authorization": f"Bearer {secret.value}"},
            )
        assert hung_up.status_code == 200
    finally:
        await client.close()


async def test_a_peer_that_closes_ends_the_call(rtc_server) -> None:
    before = await _tasks(rtc_server)
    client = CallClient(rtc_server.url, API_KEY)
    await client.connect()
    await client.until("session.created")
    call_id = client.call_id
    assert call_id is not None
    await client.close()
    await _until_gone(rtc_server, call_id)
    assert await _settled_tasks(rtc_server, before) == before


async def test_a_data_channel_only_call(rtc_server, llm) -> None:
    """No microphone, no audio section: events still flow, nothing waits for audio."""
    llm.script(Text(["fine"]))
    client = CallClient(rtc_server.url, API_KEY, audio=False)
    try:
        await client.connect(session=TEXT_ONLY)
        await client.until("session.created")
        client.send(_user("hi"))
        client.send({"type": "response.create"})
        assert (await client.until("response.done"))[-1].response.status == "completed"
    finally:
        await client.close()
    assert client.call_id is not None
    await _until_gone(rtc_server, client.call_id)


# --- audio both ways (real time) -----------------------------------------------------------


def _utterance(text: str, after_ms: int = 1500) -> np.ndarray:
    return with_silence(speak(text, RATE), 300, after_ms, RATE)


@pytest.mark.realtime
async def test_spoken_turn_over_the_audio_track(rtc_server, llm) -> None:
    llm.script(Text(["Sure, ", "the lights are on now."]))
    client = CallClient(rtc_server.url, API_KEY)
    try:
        await client.connect(
            session={"type": "realtime", "audio": {"input": {"transcription": {"model": "x"}}}}
        )
        await client.until("session.created")
        silence_rms = rms(client.audio_since(0))
        client.microphone.play(_utterance("turn on the lights in the kitchen"))
        events = await client.until("input_audio_buffer.speech_started", timeout=10)
        events += await client.until("input_audio_buffer.speech_stopped", timeout=10)
        events += await client.until("output_audio_buffer.started", timeout=20)
        started_at = time.monotonic()
        events += await client.until("output_audio_buffer.stopped", timeout=30)
        types = [e.type for e in events]
        transcript = next(
            e for e in events if e.type == "conversation.item.input_audio_transcription.completed"
        )
        assert transcript.transcript.strip()
        done = next(e for e in events if e.type == "response.done")
        assert done.response.status == "completed"
        # started after the audio part opened; stopped after the response was done
        assert types.index("response.content_part.added") < types.index(
            "output_audio_buffer.started"
        )
        assert types.index("response.done") < types.index("output_audio_buffer.stopped")
        assert not any(t == "response.output_audio.delta" for t in types)
        assert "response.output_audio.done" in types
        started = next(e for e in events if e.type == "output_audio_buffer.started")
        assert started.response_id == done.response.id
        heard = client.audio_since(started_at)
        assert silence_rms < 50
        assert rms(heard) > 500, rms(heard)  # espeak speech, through Opus both ways
        # The whole answer played: about as long as the audio generated.
        generated_ms = done.response.usage.output_token_details.audio_tokens * 50
        loud = np.flatnonzero(np.abs(heard.astype(np.int32)) > 300)
        heard_ms = (loud[-1] - loud[0]) / RATE * 1000
        assert heard_ms > 0.6 * generated_ms, (heard_ms, generated_ms)
    finally:
        await client.close()


@pytest.mark.realtime
async def test_a_caller_with_opus_dtx_sends_little_in_silence_and_its_turn_ends(
    rtc_server, llm
) -> None:
    """A browser that the answer asks for DTX sends a packet per 400 ms in silence, and
    nothing after its last word: the server fills the silence, so the turn ends and is
    answered."""
    llm.script(Text(["Sure, the lights are on now."]))
    microphone = PacketMicrophone()
    client = CallClient(rtc_server.url, API_KEY, microphone=microphone)
    try:
        await client.connect(session={"type": "realtime"})
        await client.until("session.created")
        assert microphone.dtx  # the answer asked for it
        await asyncio.sleep(0.5)  # past the 200 ms hangover
        sent = microphone.sent
        await asyncio.sleep(1.0)
        assert microphone.sent - sent <= 4  # not 50
        microphone.play(encode_opus(speak("turn on the lights in the kitchen", RATE)))
        started = (await client.until("input_audio_buffer.speech_started", timeout=10))[-1]
        stopped = (await client.until("input_audio_buffer.speech_stopped", timeout=10))[-1]
        assert stopped.audio_end_ms > started.audio_start_ms
        events = await client.until("output_audio_buffer.stopped", timeout=30)
        types = [e.type for e in events]
        assert "output_audio_buffer.started" in types
        done = next(e for e in events if e.type == "response.done")
        assert done.response.status == "completed"
    finally:
        await client.close()


@pytest.mark.realtime
@pytest.mark.parametrize("still_generating", [True, False], ids=["generating", "generated"])
async def test_barge_in_clears_playback_and_truncates_at_the_played_position(
    rtc_server, llm, still_generating
) -> None:
    """Generating: the LLM is still writing when the user speaks (faster than speech, so
    playback never runs dry), so the response is cancelled too. Generated: it finished long
    ago (synthesis runs ahead of playback); only playback stops.

    Where things played is read from the received stream by pts (the server's sample clock),
    not by arrival time, so a loaded machine delaying packets does not move it."""
    words = [word + " " for word in LONG_ANSWER.split()]
    answer = Text(words, delay=0.08) if still_generating else Text([LONG_ANSWER])
    llm.script(answer, Text(["Okay."]))
    client = CallClient(rtc_server.url, API_KEY)
    try:
        await client.connect()
        await client.until("session.created")
        client.microphone.play(_utterance("tell me a story"))
        events = await client.until("output_audio_buffer.started", timeout=20)
        response_id = events[-1].response_id
        item_id = next(e for e in events if e.type == "response.output_item.added").item.id
        # The next turn interrupts but is not answered, so silence follows the barge-in.
        client.send(
            {
                "type": "session.update",
                "session": {
                    "type": "realtime",
                    "audio": {
                        "input": {
                            "turn_detection": {"type": "server_vad", "create_response": False}
                        }
                    },
                },
            }
        )
        await asyncio.sleep(2.0)  # let some of the answer play
        client.microphone.play(_utterance("stop please", after_ms=1000))
        events += await client.until("conversation.item.truncated", timeout=10)
        types = [e.type for e in events]
        assert types.count("input_audio_buffer.speech_started") == 2
        done = next(e for e in events if e.type == "response.done").response
        if still_generating:
            assert done.status == "cancelled" and done.status_details.reason == "turn_detected"
            barge_in = len(types) - 1 - types[::-1].index("input_audio_buffer.speech_started")
            assert types.index("response.done") > barge_in
        else:
            assert done.status == "completed"
        cleared = next(e for e in events if e.type == "output_audio_buffer.cleared")
        assert cleared.response_id == response_id == done.id
        assert "output_audio_buffer.stopped" not in types
        truncated = events[-1]
        assert truncated.item_id == item_id
        generated_ms = done.usage.output_token_details.audio_tokens * 50
        # It played while we listened (less than the 2 s on a loaded machine: the player
        # counts what it played, not the time that passed).
        assert truncated.audio_end_ms > 500
        assert truncated.audio_end_ms < generated_ms - 1000, (truncated.audio_end_ms, generated_ms)

        # In the received stream: the answer was audible up to the truncation point, and
        # silent from right after it: a few frames of silence, then the server's track pauses
        # (it sends nothing while nothing plays), so the stream may end there.
        per_ms = RATE // 1000
        deadline = time.monotonic() + 10
        grew_at, length = time.monotonic(), 0
        while True:
            stream = client.stream()
            loud = np.flatnonzero(np.abs(stream.astype(np.int32)) > 300)
            end = loud[0] + truncated.audio_end_ms * per_ms
            if len(stream) != length:
                grew_at, length = time.monotonic(), len(stream)
            if len(stream) > end + 1500 * per_ms or time.monotonic() - grew_at > 1.0:
                break
            assert time.monotonic() < deadline, "the stream never settled"
            await asyncio.sleep(0.1)
        # `end` counts from the first loud sample, so it lies later than the real cut by the
        # voice's own leading silence (hibari opens with ~0.3 s): the last loud sample may come
        # up to that much (and a pause between words) before `end`, never after it.
        last_loud = loud[-1]
        assert end - 1000 * per_ms < last_loud <= end + 20 * per_ms, (end - last_loud) / per_ms
        assert rms(stream[last_loud - 700 * per_ms : last_loud]) > 300
        # Silence follows for at least the pause's lead-in, or the stream ends there.
        assert len(stream) - last_loud >= 50 * per_ms, (len(stream) - last_loud) / per_ms
    finally:
        await client.close()


@pytest.mark.realtime
async def test_output_audio_buffer_clear_stops_playback(rtc_server, llm) -> None:
    """The client's `output_audio_buffer.clear` (WebRTC only): playback stops, the item is
    truncated where it was; the response itself is untouched."""
    llm.script(Text([LONG_ANSWER]))
    client = CallClient(rtc_server.url, API_KEY)
    try:
        await client.connect()
        await client.until("session.created")
        client.send(_user("Tell me a story."))
        client.send({"type": "response.create"})
        events = await client.until("output_audio_buffer.started", timeout=20)
        item_id = next(e for e in events if e.type == "response.output_item.added").item.id
        await asyncio.sleep(1.0)
        client.send({"type": "output_audio_buffer.clear"})
        events += await client.until("conversation.item.truncated", timeout=10)
        types = [e.type for e in events]
        # Still being synthesized (a loaded machine), the cut waits for the item's audio, so
        # the response's own events may come between.
        assert types[-1] == "conversation.item.truncated"
        assert "output_audio_buffer.cleared" in types
        assert events[-1].item_id == item_id and 500 < events[-1].audio_end_ms < 5000
        client.send({"type": "conversation.item.retrieve", "item_id": item_id})
        retrieved = (await client.until("conversation.item.retrieved"))[-1].item
        transcript = retrieved.content[0].transcript
        assert transcript and len(transcript) < len(LONG_ANSWER) / 2  # cut to what was heard
    finally:
        await client.close()


@pytest.mark.realtime
async def test_audio_after_a_silent_pause_plays_whole_on_the_stream_clock(rtc_server, llm) -> None:
    """While nothing plays, the server's track sends nothing (no encoding, no packets). The
    next answer then plays whole, and its RTP timestamps have advanced by the pause, as after
    Opus DTX: the stream's clock keeps pace with the wall clock across the pause."""
    llm.script(
        Text(["Hello there, how can I help you today?"]),
        Text(["The lights are on in the kitchen now, and the heating is on too."]),
    )
    client = CallClient(rtc_server.url, API_KEY)
    try:
        await client.connect()
        await client.until("session.created")
        client.send(_user("Hi."))
        client.send({"type": "response.create"})
        await client.until("output_audio_buffer.stopped", timeout=30)
        await asyncio.sleep(1.0)  # the track has paused by now
        paused_from = len(client.frames)
        await asyncio.sleep(2.0)
        assert len(client.frames) == paused_from, "frames were sent while nothing played"

        client.send(_user("The lights?"))
        client.send({"type": "response.create"})
        events = await client.until("output_audio_buffer.stopped", timeout=30)
        done = next(e for e in events if e.type == "response.done").response
        await asyncio.sleep(0.5)  # the last frames (held by the client's jitter buffer)
        frames = client.frames
        pts = np.array([p for _, p, _ in frames])
        jumps = np.flatnonzero(np.diff(pts) > len(frames[0][2])) + 1
        assert len(jumps), "the timestamps did not advance over the pause"
        resumed = int(jumps[-1])  # the first frame of the second answer
        gap_s = (pts[resumed] - pts[resumed - 1]) / RATE
        assert gap_s > 2.5, gap_s

        def offset(window: list[tuple[float, int, np.ndarray]]) -> float:
            # arrival time minus stream time: constant while the clocks keep pace
            return float(np.median([at - p / RATE for at, p, _ in window]))

        # Steady frames on each side (the client holds 4 frames back, so the last ones
        # before a pause arrive late, with the first ones after it).
        before, after = frames[resumed - 25 : resumed - 8], frames[resumed + 10 : resumed + 30]
        drift = offset(after) - offset(before)
        assert abs(drift) < 0.3, drift  # contiguous timestamps would drift by the ~3 s pause

        heard = np.concatenate([samples for _, _, samples in frames[resumed:]])
        assert rms(heard) > 500, rms(heard)
        generated_ms = done.usage.output_token_details.audio_tokens * 50
        loud = np.flatnonzero(np.abs(heard.astype(np.int32)) > 300)
        heard_ms = (loud[-1] - loud[0]) / RATE * 1000
        assert heard_ms > 0.8 * generated_ms, (heard_ms, generated_ms)
    finally:
        await client.close()
