"""SIP calls end to end on loopback, as OpenAI takes them: a phone (tests/sip_caller.py, on
aiosipua + aiortp) calls the server; the webhook receiver verifies `realtime.call.incoming`
with the official SDK; the official SDK accepts, rejects, refers and hangs up; a sideband
(`realtime.connect(call_id=...)`) sees the session's events, each validated strictly with the
SDK's types. The spoken turn is paced in real time (`-m realtime`).

The server's backends are conftest's (Silero VAD, the embedded recognizer and voice); the
model is the scripted LLM.
"""

from __future__ import annotations

import asyncio
import base64
import os
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import openai
import pytest
from conftest import API_KEY, arecv, arecv_until
from scripted_llm import Text
from servers import ServerThread
from sip_caller import Phone, WebhookReceiver, free_sip_port, webhook_receiver
from speech_fixtures import speak, with_silence
from webrtc_client import rms
from websockets.exceptions import ConnectionClosed

from openrealtime.backends.registry import Backends
from openrealtime.config import Settings
from openrealtime.server.app import create_app
from openrealtime.server.webhooks import sign

SECRET = "whsec_" + base64.b64encode(b"a test secret of 32 bytes, exactly").decode()
RING_TIMEOUT_S = 3.0


class SipServer:
    def __init__(self, http: ServerThread, sip_port: int, receiver: WebhookReceiver) -> None:
        self.http, self.sip_port, self.receiver = http, sip_port, receiver

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.sip_port)

    async def ring(self, phone: Phone) -> str:
        """Dial, and the call id the webhook gives."""
        await phone.dial()
        event = await self.receiver.next_event()
        assert event.type == "realtime.call.incoming"
        return str(event.data.call_id)


@pytest.fixture(scope="module")
def sip_server(settings: Settings, backends: Backends) -> Iterator[SipServer]:
    with webhook_receiver(SECRET) as (receiver, url):
        sip_port = free_sip_port()
        sip_settings = settings.model_copy(
            update={
                "sip_port": sip_port,
                "sip_webhook_url": url,
                "webhook_secret": SECRET,
                "sip_ring_timeout": RING_TIMEOUT_S,
                "rtp_ports": "31000-31999",
            }
        )
        with ServerThread(create_app(sip_settings, backends)) as http:
            yield SipServer(http, sip_port, receiver)


@pytest.fixture
async def sdk(sip_server: SipServer) -> AsyncIterator[openai.AsyncOpenAI]:
    """The operator's control side; one per test, as each test runs on its own event loop."""
    client = openai.AsyncOpenAI(base_url=sip_server.http.url + "/v1", api_key=API_KEY)
    yield client
    await client.close()


@pytest.fixture
async def phone(sip_server: SipServer) -> AsyncIterator[Phone]:
    phone = Phone(sip_server.address)
    yield phone
    await phone.close()


def test_the_signature_is_standard_webhooks() -> None:
    """Standard Webhooks' published example (standard-webhooks/libraries, test vectors)."""
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"test": 2432232314}'
    assert (
        sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body)
        == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    )


async def test_an_invite_rings_and_the_webhook_carries_its_headers_verbatim(
    sip_server: SipServer, phone: Phone, sdk: openai.AsyncOpenAI
) -> None:
    await phone.dial()
    event = await sip_server.receiver.next_event()  # verified by the SDK's unwrap
    assert event.object == "event" and event.id.startswith("evt_")
    assert abs(event.created_at - time.time()) < 30
    headers = {h.name: h.value for h in event.data.sip_headers}
    assert headers["X-Customer-Id"] == "c-42 ; tier=gold"
    assert headers["Call-ID"] == phone.call.call_id
    assert headers["From"].startswith("<sip:+14155550100@127.0.0.1>")
    await sdk.realtime.calls.reject(event.data.call_id)
    assert await phone.refused() == 603


async def test_the_webhook_carries_only_the_headers_the_operator_names(
    settings: Settings, backends: Backends
) -> None:
    with webhook_receiver(SECRET) as (receiver, url):
        sip_port = free_sip_port()
        chosen = settings.model_copy(
            update={
                "sip_port": sip_port,
                "sip_webhook_url": url,
                "webhook_secret": SECRET,
                "rtp_ports": "32000-32099",
                "sip_webhook_headers": ["from", "X-CUSTOMER-ID"],  # names match in any case
            }
        )
        with ServerThread(create_app(chosen, backends)) as http:
            phone = Phone(("127.0.0.1", sip_port))
            try:
                await phone.dial()
                event = await receiver.next_event()
                assert [h.name for h in event.data.sip_headers] == ["From", "X-Customer-Id"]
                assert event.data.sip_headers[1].value == "c-42 ; tier=gold"  # still verbatim
                client = openai.AsyncOpenAI(base_url=http.url + "/v1", api_key=API_KEY)
                await client.realtime.calls.reject(event.data.call_id)
                await client.close()
                assert await phone.refused() == 603
            finally:
                await phone.close()


@pytest.mark.parametrize("status", [486, 404])
async def test_reject_with_a_code(
    sip_server: SipServer, phone: Phone, status: int, sdk: openai.AsyncOpenAI
) -> None:
    call_id = await sip_server.ring(phone)
    await sdk.realtime.calls.reject(call_id, status_code=status)
    assert await phone.refused() == status
    # Gone: a second answer finds no call.
    with pytest.raises(openai.NotFoundError):
        await sdk.realtime.calls.accept(call_id, type="realtime")


async def test_a_guessed_call_id_is_404_in_openai_shape(
    sip_server: SipServer, sdk: openai.AsyncOpenAI
) -> None:
    for answer in (
        sdk.realtime.calls.accept("rtc_guessed", type="realtime"),
        sdk.realtime.calls.reject("rtc_guessed"),
        sdk.realtime.calls.refer("rtc_guessed", target_uri="tel:+14155550123"),
        sdk.realtime.calls.hangup("rtc_guessed"),
    ):
        with pytest.raises(openai.NotFoundError) as refused:
            await answer
        assert refused.value.body["code"] == "call_not_found"  # type: ignore[index]


async def test_a_call_nobody_answers_rings_out(
    sip_server: SipServer, phone: Phone, sdk: openai.AsyncOpenAI
) -> None:
    call_id = await sip_server.ring(phone)
    started = time.monotonic()
    assert await phone.refused(timeout=RING_TIMEOUT_S + 5) == 480
    assert time.monotonic() - started > RING_TIMEOUT_S - 1
    with pytest.raises(openai.NotFoundError):
        await sdk.realtime.calls.accept(call_id, type="realtime")


async def test_accept_then_the_sideband_then_hang_up_from_the_server(
    sip_server: SipServer, phone: Phone, sdk: openai.AsyncOpenAI
) -> None:
    call_id = await sip_server.ring(phone)
    await sdk.realtime.calls.accept(
        call_id, type="realtime", instructions="You answer the phone.", model="gpt-realtime"
    )
    await phone.answered()
    async with sdk.realtime.connect(call_id=call_id) as sideband:
        attached = await arecv(sideband)
        assert attached.type == "session.updated"
        assert attached.session.instructions == "You answer the phone."
        # The server sends RTP from the start (silence while nothing plays).
        await asyncio.sleep(0.5)
        assert len(phone.audio_since(0)) >= 8000 * 0.2
        await sdk.realtime.calls.hangup(call_id)
        await asyncio.wait_for(phone.hung_up_by_server.wait(), 5)
        with pytest.raises(ConnectionClosed) as closed:  # the sideband is closed
            while True:
                await sideband.recv_bytes()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1000
    with pytest.raises(openai.NotFoundError):
        await sdk.realtime.calls.hangup(call_id)


async def test_the_caller_hangs_up_and_the_session_ends(
    sip_server: SipServer, phone: Phone, sdk: openai.AsyncOpenAI
) -> None:
    call_id = await sip_server.ring(phone)
    await sdk.realtime.calls.accept(call_id, type="realtime")
    await phone.answered()
    calls = sip_server.http.server.config.app.state.calls
    assert await calls.get(call_id) is not None
    phone.hang_up()
    deadline = time.monotonic() + 5
    while await calls.get(call_id) is not None or call_id in [c.id for c in await calls.all()]:
        assert time.monotonic() < deadline, "the call outlived the caller's BYE"
        await asyncio.sleep(0.05)


async def test_refer_transfers_an_answered_call(
    sip_server: SipServer, phone: Phone, sdk: openai.AsyncOpenAI
) -> None:
    call_id = await sip_server.ring(phone)
    with pytest.raises(openai.BadRequestError):  # still ringing
        await sdk.realtime.calls.refer(call_id, target_uri="tel:+14155550123")
    await sdk.realtime.calls.accept(call_id, type="realtime")
    await phone.answered()
    await sdk.realtime.calls.refer(call_id, target_uri="sip:desk@example.com")
    deadline = time.monotonic() + 5
    while phone.referred_to is None:
        assert time.monotonic() < deadline, "no REFER reached the caller"
        await asyncio.sleep(0.05)
    assert phone.referred_to == "sip:desk@example.com"
    await sdk.realtime.calls.hangup(call_id)


async def test_dtmf_is_one_event_per_key_press(
    sip_server: SipServer, phone: Phone, sdk: openai.AsyncOpenAI
) -> None:
    call_id = await sip_server.ring(phone)
    await sdk.realtime.calls.accept(call_id, type="realtime")
    await phone.answered()
    async with sdk.realtime.connect(call_id=call_id) as sideband:
        assert (await arecv(sideband)).type == "session.updated"
        for digit in "5#":
            phone.press(digit)
            await asyncio.sleep(0.4)
        pressed = []
        while len(pressed) < 2:
            event = await asyncio.wait_for(arecv(sideband), 5)
            if event.type == "input_audio_buffer.dtmf_event_received":
                pressed.append(event)
        assert [e.event for e in pressed] == ["5", "#"]
        assert abs(pressed[0].received_at - time.time()) < 30
    await sdk.realtime.calls.hangup(call_id)


def _utterance(text: str) -> np.ndarray:
    return with_silence(speak(text, 8000), 300, 1500, 8000)


@pytest.mark.realtime
@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_a_spoken_turn_over_the_phone(
    sip_server: SipServer, llm, transport: str, sdk: openai.AsyncOpenAI
) -> None:
    llm.script(Text(["Sure, ", "the lights are on now."]))
    phone = Phone(sip_server.address, transport)
    try:
        call_id = await sip_server.ring(phone)
        await sdk.realtime.calls.accept(
            call_id,
            type="realtime",
            audio={"input": {"transcription": {"model": "x"}}},
        )
        await phone.answered()
        async with sdk.realtime.connect(call_id=call_id) as sideband:
            assert (await arecv(sideband)).type == "session.updated"
            quiet = rms(phone.audio_since(0))
            phone.play(_utterance("turn on the lights in the kitchen"))
            events = await arecv_until(sideband, "input_audio_buffer.speech_started")
            events += await arecv_until(sideband, "output_audio_buffer.started")
            started_at = time.monotonic()
            events += await arecv_until(sideband, "output_audio_buffer.stopped")
            transcript = next(
                e
                for e in events
                if e.type == "conversation.item.input_audio_transcription.completed"
            )
            assert transcript.transcript.strip()
            done = next(e for e in events if e.type == "response.done")
            assert done.response.status == "completed"
            assert "response.output_audio.done" in [e.type for e in events]
            heard = phone.audio_since(started_at - 0.2)
            assert quiet < 50
            assert rms(heard) > 300, rms(heard)  # speech, through G.711 both ways
        phone.hang_up()
    finally:
        await phone.close()


@pytest.mark.parametrize(
    ("args", "env", "says"),
    [
        (["--sip-port", "5060"], {}, "--sip-port needs --sip-webhook-url"),
        (
            ["--sip-port", "5060", "--sip-webhook-url", "http://x", "--webhook-secret", "abc"],
            {},
            "invalid --webhook-secret (or OPENREALTIME_WEBHOOK_SECRET)",
        ),
        ([], {"OPENREALTIME_RTP_PORTS": "20000-10000"}, "invalid --rtp-ports"),
        (["--sip-ring-timeout", "90"], {}, "invalid --sip-ring-timeout"),
        (
            ["--sip-port", "5060", "--sip-webhook-url", "http://x", "--workers", "2"],
            {},
            "--sip-port needs --workers 1",
        ),
    ],
    ids=[
        "no_webhook_url",
        "secret_not_whsec",
        "rtp_ports_backwards",
        "ring_timeout_over_60",
        "with_several_workers",
    ],
)
def test_a_sip_setting_that_cannot_work_is_one_line_and_exit_2(
    tmp_path: Path, args: list[str], env: dict[str, str], says: str
) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OPENREALTIME_")}
    result = subprocess.run(
        [sys.executable, "-m", "openrealtime", "serve", *args],
        env=clean | env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    [line] = result.stderr.splitlines()
    assert says in line, line


async def test_shutdown_hangs_up_answered_calls_and_refuses_ringing_ones(
    settings: Settings, backends: Backends
) -> None:
    with webhook_receiver(SECRET) as (receiver, url):
        sip_port = free_sip_port()
        own = settings.model_copy(
            update={"sip_port": sip_port, "sip_webhook_url": url, "webhook_secret": SECRET}
        )
        http = ServerThread(create_app(own, backends)).__enter__()
        answered, ringing = Phone(("127.0.0.1", sip_port)), Phone(("127.0.0.1", sip_port))
        sdk = openai.AsyncOpenAI(base_url=http.url + "/v1", api_key=API_KEY)
        try:
            await answered.dial()
            call_id = (await receiver.next_event()).data.call_id
            await sdk.realtime.calls.accept(call_id, type="realtime")
            await answered.answered()
            await ringing.dial()
            await receiver.next_event()
            await asyncio.to_thread(http.__exit__, None, None, None)
            await asyncio.wait_for(answered.hung_up_by_server.wait(), 5)
            assert await ringing.refused() == 503
        finally:
            await sdk.close()
            await answered.close()
            await ringing.close()


SIPP_PCAPS = Path("/usr/share/sip-tester")


@pytest.mark.realtime
@pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp (apt-get install sip-tester)")
@pytest.mark.parametrize("transport", ["u1", "t1"], ids=["udp", "tcp"])
async def test_sipp_calls_and_is_answered_through_the_sdk(
    sip_server: SipServer, sdk: openai.AsyncOpenAI, tmp_path: Path, transport: str
) -> None:
    """SIPp's own `uac_pcap` scenario (INVITE, expects 100/180/200, ACK, plays G.711 A-law
    from a capture, BYE): a caller that shares no code with the server."""
    (tmp_path / "pcap").mkdir()
    for capture in SIPP_PCAPS.glob("*.pcap"):
        (tmp_path / "pcap" / capture.name).symlink_to(capture)
    sipp = await asyncio.create_subprocess_exec(
        "sipp", "-sn", "uac_pcap", f"127.0.0.1:{sip_server.sip_port}", "-s", "agent",
        "-m", "1", "-t", transport, "-nostdin", "-timeout", "30s",
        "-mp", str(free_sip_port()),
        cwd=tmp_path, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        event = await sip_server.receiver.next_event()
        headers = {h.name: h.value for h in event.data.sip_headers}
        assert headers["Subject"] == "Performance Test"  # a header of SIPp's scenario
        await sdk.realtime.calls.accept(event.data.call_id, type="realtime")
        _, stderr = await asyncio.wait_for(sipp.communicate(), 40)
        assert sipp.returncode == 0, stderr.decode()[-500:]  # the call succeeded, BYE answered
    finally:
        if sipp.returncode is None:
            sipp.kill()
            await sipp.wait()


LONG_ANSWER = (
    "Let me tell you a long story about the sea. The waves rolled in all day long. "
    "A small boat sailed past the old lighthouse. The keeper waved from the top of the tower. "
    "Gulls circled over the harbour and the fishermen mended their nets. "
    "In the evening the wind rose and the sky turned a deep shade of orange."
)


@pytest.mark.realtime
async def test_barge_in_truncates_at_what_the_caller_heard(
    sip_server: SipServer, sdk: openai.AsyncOpenAI, phone: Phone, llm
) -> None:
    llm.script(Text([LONG_ANSWER]))
    call_id = await sip_server.ring(phone)
    await sdk.realtime.calls.accept(call_id, type="realtime")
    await phone.answered()
    async with sdk.realtime.connect(call_id=call_id) as sideband:
        assert (await arecv(sideband)).type == "session.updated"
        phone.play(_utterance("tell me a story"))
        events = await arecv_until(sideband, "output_audio_buffer.started")
        item_id = next(e for e in events if e.type == "response.output_item.added").item.id
        # The next turn interrupts but is not answered, so silence follows the barge-in.
        await sideband.session.update(
            session={
                "type": "realtime",
                "audio": {
                    "input": {"turn_detection": {"type": "server_vad", "create_response": False}}
                },
            }
        )
        await asyncio.sleep(2.0)  # let some of the answer play
        phone.play(_utterance("stop please"))
        events += await arecv_until(sideband, "conversation.item.truncated")
        truncated_at = time.monotonic()
        types = [e.type for e in events]
        assert "output_audio_buffer.cleared" in types
        assert "output_audio_buffer.stopped" not in types
        truncated = events[-1]
        assert truncated.item_id == item_id
        done = next(e for e in events if e.type == "response.done").response
        generated_ms = done.usage.output_token_details.audio_tokens * 50
        # The caller heard part of it (the player counts what it sent, not the time passed).
        assert 500 < truncated.audio_end_ms < generated_ms - 1000, (
            truncated.audio_end_ms,
            generated_ms,
        )
        heard = phone.audio_since(0)
        loud_ms = np.count_nonzero(np.abs(heard.astype(np.int32)) > 300) / 8
        assert loud_ms > 200  # the answer was audible before the cut
        await asyncio.sleep(1.0)
        after = phone.audio_since(truncated_at + 0.3)
        assert len(after) > 8000 * 0.5 and rms(after) < 50, rms(after)  # silence since
    phone.hang_up()


async def test_over_redis_a_sideband_and_a_hang_up_on_another_instance_reach_the_call(
    settings: Settings, backends: Backends, redis_server: Any
) -> None:
    """Instance A takes the call; the operator's sideband and hang-up land on instance B."""
    shared = {"redis_url": redis_server.url}
    with webhook_receiver(SECRET) as (receiver, url):
        sip_port = free_sip_port()
        with (
            ServerThread(
                create_app(
                    settings.model_copy(
                        update={
                            **shared,
                            "sip_port": sip_port,
                            "sip_webhook_url": url,
                            "webhook_secret": SECRET,
                        }
                    ),
                    backends,
                )
            ) as a,
            ServerThread(create_app(settings.model_copy(update=shared), backends)) as b,
        ):
            phone = Phone(("127.0.0.1", sip_port))
            on_a = openai.AsyncOpenAI(base_url=a.url + "/v1", api_key=API_KEY)
            on_b = openai.AsyncOpenAI(base_url=b.url + "/v1", api_key=API_KEY, max_retries=0)
            try:
                await phone.dial()
                call_id = (await receiver.next_event()).data.call_id
                await on_a.realtime.calls.accept(call_id, type="realtime", instructions="Hi.")
                await phone.answered()
                async with on_b.realtime.connect(call_id=call_id) as sideband:
                    attached = await arecv(sideband)
                    assert attached.type == "session.updated"
                    assert attached.session.instructions == "Hi."
                    phone.press("7")
                    while (event := await asyncio.wait_for(arecv(sideband), 5)).type != (
                        "input_audio_buffer.dtmf_event_received"
                    ):
                        pass
                    assert event.event == "7"
                    await on_b.realtime.calls.hangup(call_id)
                    await asyncio.wait_for(phone.hung_up_by_server.wait(), 5)
            finally:
                await on_a.close()
                await on_b.close()
                await phone.close()


async def test_a_re_invite_is_answered_with_the_same_session(
    sip_server: SipServer, sdk: openai.AsyncOpenAI, phone: Phone
) -> None:
    call_id = await sip_server.ring(phone)
    await sdk.realtime.calls.accept(call_id, type="realtime")
    await phone.answered()
    seq = phone.reinvite()
    deadline = time.monotonic() + 5
    while (seq, "INVITE", 200) not in phone.responses:
        assert time.monotonic() < deadline, phone.responses
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)
    heard_before = len(phone.audio_since(0))
    await asyncio.sleep(0.5)
    assert len(phone.audio_since(0)) > heard_before  # the call's RTP goes on
    await sdk.realtime.calls.hangup(call_id)
    await asyncio.wait_for(phone.hung_up_by_server.wait(), 5)


async def test_a_caller_who_gives_up_while_it_rings_leaves_nothing_to_accept(
    sip_server: SipServer, sdk: openai.AsyncOpenAI, phone: Phone
) -> None:
    call_id = await sip_server.ring(phone)
    phone.cancel()
    deadline = time.monotonic() + 5
    while (1, "INVITE", 487) not in phone.responses:  # Request Terminated
        assert time.monotonic() < deadline, phone.responses
        await asyncio.sleep(0.05)
    assert (1, "CANCEL", 200) in phone.responses
    with pytest.raises(openai.NotFoundError):
        await sdk.realtime.calls.accept(call_id, type="realtime")
