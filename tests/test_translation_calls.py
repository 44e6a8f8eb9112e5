"""Translation calls over WebRTC (`POST /v1/realtime/translations/calls`), with aiortc as the
browser: the SDP exchange (with a `session` part, or a translation client secret), the
`oai-events` data channel (every event validated against the SDK's
`RealtimeTranslationServerEvent` types), translated speech on the audio track, `session.close`
and hang-up.

As in tests/test_translations.py: real Spanish speech (espeak-ng's "es" voice) on the caller's
track, the real VAD and voice, the scripted recognizer and the scripted LLM. The speech is
streamed at 1x, so the spoken test is `-m realtime`.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import time
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import openai
import orjson
import pytest
from conftest import API_KEY, _by_type
from openai.types.realtime import (
    RealtimeTranslationClientSecretCreateResponse,
    RealtimeTranslationServerEvent,
)
from scripted_llm import ScriptedLLM, Text
from servers import ServerThread
from speech_fixtures import speak
from test_translations import HEARD, SPANISH, ScriptedTranscriber
from webrtc_client import RATE, CallClient, rms

from benchmarks.lib.webrtc import answers_opus_dtx
from openrealtime.backends.registry import Backends
from openrealtime.config import Settings
from openrealtime.protocol import translation as wire
from openrealtime.server.app import create_app
from openrealtime.transports.playout import Playout
from openrealtime.transports.translation import PHRASE_GAP_S, PhrasePlayout

CALLS = "/v1/realtime/translations/calls"
EVENTS = _by_type(RealtimeTranslationServerEvent)
# The server's audio counts as heard above this RMS (int16); silence is ~0.
LOUD_RMS = 300


class TranslationCallClient(CallClient):
    def parse(self, message: str) -> Any:
        event_type = orjson.loads(message)["type"]
        assert event_type in EVENTS, f"{event_type} is not a translation server event"
        return EVENTS[event_type].validate_json(message)

    async def call(self, session: dict[str, Any] | None = None) -> httpx.Response:
        """POST the offer (multipart with `session`, else application/sdp); the raw answer."""
        offer = await self.offer()
        headers = {"Authorization": f"Bearer {self.api_key}"}
        async with httpx.AsyncClient(base_url=self.base_url, timeout=20) as http:
            if session is None:
                headers["Content-Type"] = "application/sdp"
                return await http.post(CALLS, content=offer, headers=headers)
            return await http.post(
                CALLS,
                files={
                    "sdp": (None, offer, "application/sdp"),
                    "session": (None, orjson.dumps(session), "application/json"),
                },
                headers=headers,
            )

    async def connect(self, session: dict[str, Any] | None = None) -> None:
        await self.accept(await self.call(session))
        await asyncio.wait_for(self._opened.wait(), 10)


@pytest.fixture(scope="module")
def stt() -> ScriptedTranscriber:
    return ScriptedTranscriber()


@pytest.fixture(scope="module")
def server(
    settings: Settings, backends: Backends, stt: ScriptedTranscriber
) -> Iterator[ServerThread]:
    with ServerThread(
        create_app(settings, dataclasses.replace(backends, stt=stt, translation_stt=None))
    ) as thread:
        yield thread


@pytest.fixture
def scripted(stt: ScriptedTranscriber, llm: ScriptedLLM) -> ScriptedTranscriber:
    stt.texts, stt.heard = [], []
    return stt


async def _hang_up(server: ServerThread, call_id: str | None, key: str = API_KEY) -> int:
    async with httpx.AsyncClient(base_url=server.url) as http:
        response = await http.post(
            f"{CALLS}/{call_id}/hangup", headers={"Authorization": f"Bearer {key}"}
        )
    return response.status_code


async def _until_closed(client: CallClient, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while client.pc.connectionState not in ("closed", "failed"):
        assert time.monotonic() < deadline, client.pc.connectionState
        await asyncio.sleep(0.05)


@pytest.mark.realtime
async def test_spanish_on_the_track_is_heard_in_english(
    server: ServerThread, scripted: ScriptedTranscriber, llm: ScriptedLLM
) -> None:
    scripted.texts = [HEARD[0]]
    llm.script(Text(["Hello, ", "how are you?"]))
    client = TranslationCallClient(server.url, API_KEY)
    try:
        await client.connect(
            session={
                "type": "translation",
                "model": "gpt-realtime-translate",
                "audio": {
                    "input": {"transcription": {"model": "gpt-4o-transcribe"}},
                    "output": {"language": "en"},
                },
            }
        )
        response = client.response
        assert response is not None and client.call_id is not None
        assert response.headers["location"] == f"{CALLS}/{client.call_id}"
        assert answers_opus_dtx(response.text)
        created = await client.recv()
        assert created.type == "session.created"
        assert created.session.type == "translation"
        assert created.session.audio.output.language == "en"
        assert created.session.audio.input.transcription.model == "gpt-4o-transcribe"

        speech = speak(SPANISH[0], RATE, voice="es")
        silence = np.zeros(RATE // 2, np.int16)
        client.microphone.play(np.concatenate([silence, speech]))
        spoke_at = time.monotonic()
        events = await client.until("session.output_transcript.delta", timeout=30)
        # The first of the translation's deltas: wait for the whole sentence to be spoken.
        await asyncio.sleep(3)
        heard = client.audio_since(spoke_at + len(speech) / RATE)
        assert rms(heard) > LOUD_RMS, rms(heard)

        client.send({"type": "session.close"})
        events += await client.until("session.closed", timeout=30)
        # After session.closed the server hangs up.
        await _until_closed(client)
        assert await _hang_up(server, client.call_id) == 404
    finally:
        await client.close()

    types = [e.type for e in events]
    assert "session.output_audio.delta" not in types  # audio goes on the track only
    source = "".join(e.delta for e in events if e.type == "session.input_transcript.delta")
    target = "".join(e.delta for e in events if e.type == "session.output_transcript.delta")
    assert source == HEARD[0]
    assert target == "Hello, how are you?"
    # The phrase the recognizer got is the Spanish, about as long as it was spoken.
    assert len(scripted.heard) == 1
    spoken_s = len(speech) / RATE
    heard_s = len(scripted.heard[0]) / 2 / 16_000
    assert spoken_s - 0.3 < heard_s < spoken_s + 1.2, (spoken_s, heard_s)
    assert "English" in llm.last_request["messages"][0]["content"]


async def test_a_client_secret_opens_a_call_with_its_settings_and_may_hang_it_up(
    server: ServerThread,
) -> None:
    sdk = openai.AsyncOpenAI(base_url=server.url + "/v1", api_key=API_KEY)
    raw = await sdk.realtime.translations.client_secrets.with_raw_response.create(
        session={"model": "gpt-realtime-translate", "audio": {"output": {"language": "fr"}}}
    )
    minted = RealtimeTranslationClientSecretCreateResponse.model_validate_json(raw.content)
    client = TranslationCallClient(server.url, minted.value)
    try:
        await client.connect()
        created = await client.recv()
        assert created.type == "session.created"
        assert created.session.audio.output.language == "fr"
        assert created.session.model == "gpt-realtime-translate"
        # The channel takes session.update; audio appends are the track's.
        client.send(
            {"type": "session.update", "session": {"audio": {"output": {"language": "de"}}}}
        )
        updated = await client.recv()
        assert updated.type == "session.updated"
        assert updated.session.audio.output.language == "de"
        client.send({"type": "session.input_audio_buffer.append", "audio": "", "event_id": "a1"})
        error = await client.recv()
        assert (error.type, error.error.param, error.error.event_id) == ("error", "type", "a1")
        assert "track" in error.error.message

        assert await _hang_up(server, client.call_id, "sk-wrong") == 401
        assert await _hang_up(server, "rtc_nope", minted.value) == 404
        assert await _hang_up(server, client.call_id, minted.value) == 200
        await _until_closed(client)
        assert await _hang_up(server, client.call_id) == 404
    finally:
        await client.close()


@pytest.mark.parametrize(
    ("session", "code", "param"),
    [
        (
            {"audio": {"output": {"language": "klingon"}}},
            "invalid_value",
            "session.audio.output.language",
        ),
        ({"voice": "alloy"}, "unknown_parameter", "session.voice"),
        ({"type": "realtime"}, "invalid_value", "session.type"),
    ],
)
async def test_a_bad_session_part_is_a_400_naming_the_field(
    server: ServerThread, session: dict[str, Any], code: str, param: str
) -> None:
    client = TranslationCallClient(server.url, API_KEY)
    try:
        response = await client.call(session)
    finally:
        await client.close()
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["code"], error["param"]) == (code, param), error


async def test_a_wrong_key_and_a_missing_offer_are_refused(server: ServerThread) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http:
        wrong = await http.post(
            CALLS,
            content="v=0\r\n",
            headers={"Authorization": "Bearer sk-wrong", "Content-Type": "application/sdp"},
        )
        assert wrong.status_code == 401
        empty = await http.post(
            CALLS,
            content=b"",
            headers={"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/sdp"},
        )
        assert empty.status_code == 400 and empty.json()["error"]["param"] == "sdp"


async def test_the_age_limit_ends_a_translation_call(
    settings: Settings, backends: Backends
) -> None:
    short = settings.model_copy(update={"max_session_minutes": 0.02})  # 1.2 s
    with ServerThread(create_app(short, backends)) as thread:
        client = TranslationCallClient(thread.url, API_KEY)
        try:
            await client.connect()
            assert (await client.recv()).type == "session.created"
            error = await client.recv(timeout=10)
            assert (error.type, error.error.code) == ("error", "session_expired")
            await _until_closed(client)
        finally:
            await client.close()


async def test_each_phrase_plays_in_order_and_the_playout_rests_after_the_last() -> None:
    """The translation's speech through the voice playout: phrases (by `elapsed_ms`) play one
    after the other, resampled to 48 kHz, and the last one ends once no audio came for
    PHRASE_GAP_S, so the track may pause."""
    playout = Playout(emit=lambda event: None, on_position=lambda item, ms, playing: None)
    phrases = PhrasePlayout(playout)
    rate = 22_050
    half_second = (8000 * np.sin(np.arange(rate // 2) * 0.1)).astype(np.int16)
    delta = base64.b64encode(half_second.tobytes()).decode()
    for elapsed, chunks in ((1200, 2), (3400, 1)):
        phrases.take(wire.output_transcript_delta("ignored", elapsed))
        for _ in range(chunks):
            phrases.take(wire.output_audio_delta(delta, rate, elapsed))
    before = [playout.next_frame() for _ in range(100)]  # 2 s
    assert not playout.idle  # the last phrase may still get speech (its tail is held)
    await asyncio.sleep(PHRASE_GAP_S + 0.2)
    after = [playout.next_frame() for _ in range(10)]
    assert playout.idle
    # 1.5 s of speech from the first frame, with no gap between the phrases; the last few ms
    # (the resamplers' delay) play when the phrase ends.
    loud = [bool(np.abs(frame).max() > 4000) for frame in before]
    assert loud[:72] == [True] * 72 and not any(loud[75:])
    tail = [bool(np.abs(frame).max() > 4000) for frame in after]
    assert 74 <= sum(loud) + sum(tail) <= 76, (sum(loud), sum(tail))


async def test_a_server_that_stops_hangs_up_its_translation_calls(
    settings: Settings, backends: Backends
) -> None:
    thread = ServerThread(create_app(settings, backends))
    with thread:
        client = TranslationCallClient(thread.url, API_KEY)
        try:
            await client.connect()
            assert (await client.recv()).type == "session.created"
            stopping = asyncio.create_task(asyncio.to_thread(thread.__exit__, None, None, None))
            await _until_closed(client)
            await stopping
            assert not thread.thread.is_alive()
        finally:
            await client.close()
