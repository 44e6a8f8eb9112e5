"""Operations: `/metrics` after real turns (text, voice, a failed response) read back with
Prometheus' own parser; the JSON log format; and no audio or secrets in the logs, even at
debug level with uvicorn's and websockets' debug output on.

The voice turn is real speech (espeak-ng) appended as fast as the socket takes it, through
the real default backends (Silero VAD, Whisper, hibari) and the scripted LLM.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import io
import logging
import re
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import numpy as np
import openai
import orjson
import pytest
from conftest import API_KEY, arecv, recv, recv_until
from prometheus_client.parser import text_string_to_metric_families
from scripted_llm import Fail, Text
from servers import ServerThread
from speech_fixtures import speak, with_silence
from starlette.testclient import TestClient
from webrtc_client import CallClient

from openrealtime.backends.base import BackendBase
from openrealtime.backends.llm.openai_chat import OpenAIChatModel
from openrealtime.backends.registry import Backends
from openrealtime.config import Settings
from openrealtime.core.session import Session
from openrealtime.logs import QUIET_LOGGERS, configure_logging, secrets_of
from openrealtime.runtime.driver import RESPONSE_FAILED
from openrealtime.runtime.metrics import Metrics
from openrealtime.runtime.telemetry import SessionTelemetry
from openrealtime.server.app import create_app

RATE = 24000
CHUNK = RATE * 20 // 1000 * 2  # bytes of 20 ms of audio/pcm
SILENCE_MS = 500  # server_vad's default silence_duration_ms
ANSWER = "Sure, the lights are on."


def own_llm(settings: Settings, backends: Backends) -> Backends:
    """The shared models, but an LLM client of the server's own: its connection pool must not
    hold connections made on another test server's event loop."""
    llm = OpenAIChatModel(settings.llm_base_url, settings.llm_model, None)
    return dataclasses.replace(backends, llm=llm)


@pytest.fixture(scope="module")
def server(settings: Settings, backends: Backends) -> Iterator[ServerThread]:
    with ServerThread(create_app(settings, own_llm(settings, backends))) as thread:
        yield thread


@pytest.fixture
def client(server: ServerThread) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key=API_KEY)


# --- helpers -------------------------------------------------------------------------------


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def utterance() -> bytes:
    """Speech starting 300 ms in, then enough silence for the default 500 ms to end the turn."""
    return with_silence(speak("turn on the lights", RATE), 300, 1500, RATE).tobytes()


def chunks(raw: bytes) -> list[str]:
    return [b64(raw[i : i + CHUNK]) for i in range(0, len(raw), CHUNK)]


def user_text(text: str) -> dict[str, Any]:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


def open_session(conn: Any, **session: Any) -> str:
    created = recv(conn)
    assert created.type == "session.created"
    conn.session.update(session={"type": "realtime", **session})
    assert recv(conn).type == "session.updated"
    return created.session.id


def text_turn(conn: Any) -> Any:
    conn.conversation.item.create(item=user_text("Say hello."))
    conn.response.create()
    return recv_until(conn, "response.done")[-1].response


def voice_turn(conn: Any) -> tuple[list[Any], list[str]]:
    """Speak a turn; the server answers it aloud. The events up to its `response.done`, and
    the audio chunks sent."""
    sent = chunks(utterance())
    for audio in sent:
        conn.input_audio_buffer.append(audio=audio)
    return recv_until(conn, "response.done", limit=2000), sent


def scrape(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    response = httpx.get(url + "/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


@contextmanager
def captured_logs(level: str, log_format: str, secrets: list[str]) -> Iterator[io.StringIO]:
    """The root handler as `openrealtime serve` installs it, writing to a buffer, and uvicorn's
    loggers sending to it (as with `log_config=None`; other test servers in this process gave
    them handlers of their own). The logging configuration is put back afterwards."""
    root = logging.getLogger()
    saved_level = root.level
    saved_quiet = {name: logging.getLogger(name).level for name in QUIET_LOGGERS}
    uvicorn = [logging.getLogger(name) for name in ("uvicorn", "uvicorn.access")]
    saved_uvicorn = [(lg.handlers[:], lg.propagate) for lg in uvicorn]
    for lg in uvicorn:
        lg.handlers.clear()
        lg.propagate = True
    buffer = io.StringIO()
    handler = configure_logging(level, log_format, secrets=secrets, stream=buffer)
    try:
        yield buffer
    finally:
        root.removeHandler(handler)
        root.setLevel(saved_level)
        for name, quiet in saved_quiet.items():
            logging.getLogger(name).setLevel(quiet)
        for lg, (handlers, propagate) in zip(uvicorn, saved_uvicorn, strict=True):
            lg.handlers[:] = handlers
            lg.propagate = propagate


# --- /metrics ------------------------------------------------------------------------------


def test_metrics_after_a_text_turn_a_voice_turn_and_a_failed_response(
    server, client, llm, backends
) -> None:
    before = scrape(server.url)
    llm.script(Text(["Hello", " there."]), Text([ANSWER]), Fail(status=500))
    with client.realtime.connect(model="gpt-realtime") as conn:
        open_session(conn, output_modalities=["text"])
        assert text_turn(conn).status == "completed"

        conn.session.update(session={"type": "realtime", "output_modalities": ["audio"]})
        events, _ = voice_turn(conn)
        types = [e.type for e in events]
        assert "input_audio_buffer.speech_stopped" in types
        assert "response.output_audio.delta" in types
        assert events[-1].response.status == "completed"

        conn.session.update(session={"type": "realtime", "output_modalities": ["text"]})
        failed = text_turn(conn)
        assert failed.status == "failed"
        assert failed.status_details.error.code == "llm_error"

        conn.conversation.item.delete(item_id="item_nope")
        assert recv_until(conn, "error")[-1].error.code == "item_not_found"

        during = scrape(server.url)
        assert value(during, "openrealtime_sessions_active", transport="websocket") == 1

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    deadline = time.monotonic() + 5
    while True:  # the session is counted until its driver has closed
        after = scrape(server.url)
        if value(after, "openrealtime_sessions_active", transport="websocket") == 0:
            break
        assert time.monotonic() < deadline, "the session never stopped counting as active"
        time.sleep(0.02)

    # Sessions and events: once per event, whatever the number of connections.
    assert delta("openrealtime_sessions_opened_total", transport="websocket") == 1
    assert value(after, "openrealtime_sessions_limit") == 500
    assert delta("openrealtime_client_events_total", type="input_audio_buffer.append") > 50
    assert delta("openrealtime_client_events_total", type="response.create") == 2
    assert delta("openrealtime_client_events_total", type="session.update") == 3
    assert delta("openrealtime_server_events_total", type="session.created") == 1
    assert delta("openrealtime_server_events_total", type="response.done") == 3
    assert delta("openrealtime_server_events_total", type="response.output_audio.delta") > 0
    assert delta("openrealtime_server_events_total", type="error") == 1

    # Errors by code: the error event and the failed response.
    assert delta("openrealtime_errors_total", code="item_not_found") == 1
    assert delta("openrealtime_errors_total", code="llm_error") == 1

    # Backends: three LLM requests, one failed; the turn transcribed; its answer spoken.
    llm_labels = {"stage": "llm", "backend": "openai-chat"}
    assert delta("openrealtime_backend_request_seconds_count", **llm_labels) == 2
    assert delta("openrealtime_backend_failures_total", **llm_labels, code="llm_error") == 1
    assert delta(
        "openrealtime_backend_request_seconds_count", stage="stt", backend=backends.stt.name
    )
    assert delta(
        "openrealtime_backend_request_seconds_count", stage="tts", backend=backends.tts.name
    )
    assert 0 < delta("openrealtime_backend_request_seconds_sum", **llm_labels) < 10

    # Stage latencies of the voice turn, each once, each sensible.
    def observed(name: str) -> tuple[float, float]:
        return delta(name + "_count"), delta(name + "_sum")

    count, lag = observed("openrealtime_speech_stopped_lag_seconds")
    assert count == 1
    assert 0 < lag < 3
    count, first_token = observed("openrealtime_llm_first_token_seconds")
    assert count == 2  # the text turn and the voice turn; the failed one never had a token
    assert 0 < first_token < 10
    count, first_audio = observed("openrealtime_tts_first_audio_seconds")
    assert count == 1
    assert 0 < first_audio < 5
    count, speech_to_audio = observed("openrealtime_speech_end_to_first_audio_seconds")
    assert count == 1
    # It includes the silence that ends the turn, and the server's share after it.
    assert SILENCE_MS / 1000 + lag <= speech_to_audio < 10


def test_metrics_route_is_on_by_default_and_off_with_no_metrics(settings, backends) -> None:
    on = TestClient(create_app(settings, backends)).get("/metrics")  # no lifespan: no backends
    assert on.status_code == 200
    assert "openrealtime_sessions_active" in on.text
    off = settings.model_copy(update={"metrics": False})
    assert TestClient(create_app(off, backends)).get("/metrics").status_code == 404


async def test_a_call_and_its_sideband_count_as_active_and_log_with_their_ids(server) -> None:
    async def active(http: httpx.AsyncClient) -> tuple[float, float]:
        text = (await http.get("/metrics")).text
        samples = {
            (s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }
        return (
            value(samples, "openrealtime_sessions_active", transport="webrtc"),
            value(samples, "openrealtime_sessions_active", transport="sideband"),
        )

    call = CallClient(server.url, API_KEY, audio=False)
    sdk = openai.AsyncOpenAI(base_url=server.url + "/v1", api_key=API_KEY)
    with captured_logs("info", "text", [API_KEY]) as buffer:
        async with httpx.AsyncClient(base_url=server.url) as http:
            try:
                await call.connect(session={"type": "realtime", "output_modalities": ["text"]})
                session_id = (await call.until("session.created"))[-1].session.id
                async with sdk.realtime.connect(call_id=call.call_id) as sideband:
                    assert (await arecv(sideband)).type == "session.updated"
                    assert await active(http) == (1, 1)
                hangup = await http.post(
                    f"/v1/realtime/calls/{call.call_id}/hangup",
                    headers={"Authorization": f"Bearer {API_KEY}"},
                )
                assert hangup.status_code == 200
            finally:
                await call.close()
            deadline = time.monotonic() + 5
            while await active(http) != (0, 0):
                assert time.monotonic() < deadline
                await asyncio.sleep(0.02)
        lines = buffer.getvalue().splitlines()
    ids = f"session_id={session_id} call_id={call.call_id}"
    # From the request, the call's own task, and the call's end: every one tagged.
    for said in ("answered", "session started", "session ended", "ended"):
        assert any(said in line and ids in line for line in lines), (said, lines)


def test_speech_stopped_lag_and_turn_latency_on_a_real_time_stream() -> None:
    """Audio in 20 ms chunks, each arriving as it is spoken; the turn ends at 1000 ms (speech
    until 500 ms, then the default 500 ms of silence)."""
    now = [0.0]
    metrics = Metrics()
    names = {"llm": "l", "stt": "s", "tts": "t"}
    telemetry = SessionTelemetry(metrics, Session(), names, "websocket", clock=lambda: now[0])
    for k in range(1, 52):  # chunk k ends at 20k ms and arrives then
        now[0] = k * 0.02
        telemetry.audio_to_vad(320)
    now[0] = 1.02 + 0.004  # decided on the chunk after the one holding 1000 ms, 4 ms later
    telemetry.server_event({"type": "input_audio_buffer.speech_stopped", "audio_end_ms": 1000})
    telemetry.server_event({"type": "response.created", "response": {"id": "resp_1"}})
    now[0] = 1.9
    telemetry.server_event({"type": "response.output_audio.delta", "response_id": "resp_1"})
    telemetry.server_event({"type": "response.output_audio.delta", "response_id": "resp_1"})

    def observed(name: str) -> tuple[float, float]:
        samples = {s.name: s.value for m in metrics.registry.collect() for s in m.samples}
        return samples[f"openrealtime_{name}_seconds_count"], samples[
            f"openrealtime_{name}_seconds_sum"
        ]

    assert observed("speech_stopped_lag") == (1, pytest.approx(0.024))
    # The user stopped at 500 ms of audio, heard at 0.5 s: 1.4 s to the first audio.
    assert observed("speech_end_to_first_audio") == (1, pytest.approx(1.4))

    # A response the client creates later is not the turn's.
    now[0] = 3.0
    telemetry.client_event("response.create")
    telemetry.server_event({"type": "response.created", "response": {"id": "resp_2"}})
    telemetry.server_event({"type": "response.output_audio.delta", "response_id": "resp_2"})
    assert observed("speech_end_to_first_audio")[0] == 1


# --- logs ----------------------------------------------------------------------------------


def test_json_logs_are_one_object_per_line_with_the_session_id(server, client, llm) -> None:
    llm.script(Fail(status=500))
    with captured_logs("info", "json", [API_KEY]) as buffer:
        with client.realtime.connect(model="gpt-realtime") as conn:
            session_id = open_session(conn, output_modalities=["text"])
            assert text_turn(conn).status == "failed"
        lines = buffer.getvalue().splitlines()
    entries = [orjson.loads(line) for line in lines]  # every line is one JSON object
    assert entries
    for entry in entries:
        assert {"time", "level", "logger", "message"} <= entry.keys()
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", entry["time"])
    failed = [e for e in entries if e["logger"] == "openrealtime.runtime.driver"]
    assert failed, lines
    assert failed[0]["level"] == "WARNING"
    assert "failed" in failed[0]["message"]
    assert failed[0]["session_id"] == session_id


class CrashingLlm(BackendBase):
    """An LLM backend with a bug: it raises what no `BackendError` describes, naming the
    internals a client must not see."""

    name = "crashing"
    model = "crashing"
    context_window = None
    internals = "cannot reach http://10.9.8.7:8000/v1/chat: upstream said {'key': 'sk-internal'}"

    async def stream(self, request: Any) -> AsyncIterator[Any]:
        raise RuntimeError(self.internals)
        yield  # an async generator, as a real backend's stream is

    async def check(self) -> str | None:
        return None


def test_a_backend_bug_tells_the_client_a_code_and_the_log_the_exception(
    settings, backends
) -> None:
    app = create_app(settings, dataclasses.replace(backends, llm=CrashingLlm()))
    with captured_logs("info", "text", [API_KEY]) as buffer:
        with ServerThread(app) as thread:
            client = openai.OpenAI(base_url=thread.url + "/v1", api_key=API_KEY)
            with client.realtime.connect(model="gpt-realtime") as conn:
                session_id = open_session(conn, output_modalities=["text"])
                conn.conversation.item.create(item=user_text("Say hello."))
                conn.response.create()
                events = recv_until(conn, "response.done")
        lines = buffer.getvalue().splitlines()
    response = events[-1].response
    assert response.status == "failed"
    error = response.status_details.error
    assert (error.type, error.code, error.message) == (
        "server_error",
        "server_error",
        RESPONSE_FAILED,
    )
    for event in events:
        assert "10.9.8.7" not in event.model_dump_json()
    # The operator gets the exception, on a line with the session's id.
    [failed] = [i for i, line in enumerate(lines) if "failed unexpectedly" in line]
    assert f"session_id={session_id}" in lines[failed]
    assert any(CrashingLlm.internals in line for line in lines[failed:])


def test_text_logs_carry_the_ids_and_extra_fields() -> None:
    with captured_logs("info", "text", []) as buffer:
        logging.getLogger("openrealtime.test").info("hello", extra={"seconds": 1.5})
    line = buffer.getvalue().strip()
    assert line.endswith("INFO openrealtime.test: hello seconds=1.5")


class ServerSideOnly(logging.Filter):
    """Drops the client-side loggers of this test process (the SDK and its websockets client):
    they are not the server's, and a server process has none."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.name.startswith(("openai", "websockets.client"))


def test_no_audio_or_secrets_in_the_logs_even_at_debug(settings, backends, llm) -> None:
    llm.script(Text([ANSWER]))
    with captured_logs("debug", "text", [API_KEY]) as buffer:
        logging.getLogger().handlers[-1].addFilter(ServerSideOnly())
        # uvicorn at debug with its lines sent to the root handler, as `openrealtime serve`
        # runs it: websockets then dumps every frame and handshake header.
        app = create_app(settings, own_llm(settings, backends))
        with ServerThread(app, log_level="debug", log_config=None) as thread:
            minter = openai.OpenAI(base_url=thread.url + "/v1", api_key=API_KEY)
            secret = minter.realtime.client_secrets.create(
                session={"type": "realtime", "output_modalities": ["audio"]}
            ).value
            assert secret.startswith("ek_")
            browser = openai.OpenAI(
                base_url=thread.url + "/v1",
                websocket_base_url=f"ws://127.0.0.1:{thread.port}/v1",
                api_key=secret,
            )
            with browser.realtime.connect(model="gpt-realtime") as conn:
                session_id = recv(conn).session.id
                events, sent = voice_turn(conn)
        logs = buffer.getvalue()

    assert events[-1].response.status == "completed"
    received = [e.delta for e in events if e.type == "response.output_audio.delta"]
    assert received
    # The capture saw the server at work, uvicorn included (so the checks are not vacuous).
    assert f"session started session_id={session_id} transport=websocket" in logs
    assert "uvicorn.error: connection open" in logs
    assert API_KEY not in logs
    assert secret not in logs
    assert secret[3:] not in logs
    for audio in sent + received:
        for piece in (audio[:24], audio[len(audio) // 2 : len(audio) // 2 + 24], audio[-26:-2]):
            if len(set(piece)) > 4:  # digital silence ("AAAA…") says nothing
                assert piece not in logs
    assert not re.search(r"[A-Za-z0-9+/]{64,}", logs), "a long base64 run is in the logs"


def test_long_base64_or_keys_in_a_message_are_redacted() -> None:
    """The last line of defence, for a line someone adds later."""
    audio = b64(np.arange(2000, dtype=np.int16).tobytes())
    with captured_logs("info", "json", ["sk-configured-key-1"]) as buffer:
        log = logging.getLogger("openrealtime.test")
        log.warning("event %s", orjson.dumps({"type": "x", "audio": audio}).decode())
        log.warning("headers %s", {"Authorization": "Bearer sk-configured-key-1"})
        log.warning("upstream said: bad key sk-configured-key-1; secret ek_abcdefghijkl")
        log.warning("subprotocol openai-insecure-api-key.sk-other-key")
        log.warning("validation failed: input_value='%s...'", audio[100:200])
    logs = buffer.getvalue()
    assert audio[:24] not in logs
    assert audio[100:124] not in logs
    assert "sk-configured-key-1" not in logs
    assert "ek_abcdefghijkl" not in logs
    assert "sk-other-key" not in logs
    assert logs.count("redacted]") == 6


def test_the_secrets_to_scrub_come_from_the_settings() -> None:
    settings = Settings(
        api_keys=["sk-one-key-12345"],
        llm_api_key="sk-llm-key-12345",
        redis_url="redis://:hunter2hunter2@redis.internal:6379/0",
    )
    assert secrets_of(settings) == ["sk-one-key-12345", "sk-llm-key-12345", "hunter2hunter2"]


async def test_sdps_in_debug_logs_keep_no_ice_credentials(settings, backends) -> None:
    """aiortc logs both SDPs whole at debug level; their ICE password (and user fragment),
    what a third party would need to talk to the peer, are redacted."""
    with captured_logs("debug", "text", [API_KEY]) as buffer:
        with ServerThread(create_app(settings, own_llm(settings, backends))) as thread:
            call = CallClient(thread.url, API_KEY, audio=False)
            try:
                await call.connect(session={"type": "realtime", "output_modalities": ["text"]})
                await call.until("session.created")
                assert call.response is not None
                sdps = call.pc.localDescription.sdp + call.response.text  # the offer, the answer
            finally:
                await call.close()
        logs = buffer.getvalue()
    passwords = re.findall(r"a=ice-pwd:(\S+)", sdps)
    fragments = re.findall(r"a=ice-ufrag:(\S+)", sdps)
    assert len(passwords) >= 2 and len(fragments) >= 2  # one of each on each side
    assert "setLocalDescription(answer)" in logs  # the server's SDP was logged, redacted
    assert "a=ice-pwd:[redacted]" in logs and "a=ice-ufrag:[redacted]" in logs
    assert "a=fingerprint:sha-256" in logs  # the rest of the SDP stays readable
    for password in passwords:
        assert password not in logs
    for fragment in fragments:  # (STUN checks name it in the clear anyway, as aioice logs)
        assert f"a=ice-ufrag:{fragment}" not in logs
