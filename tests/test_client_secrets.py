"""Client secrets, minted through the official `openai` SDK (GA and beta) and used to open
sessions: the minted configuration applies, only a standard key mints, bad bodies get OpenAI's
error shape, a secret expires, and the seed tutorial's FastAPI `/token` route works unchanged
but for the base URL."""

from __future__ import annotations

import importlib.util
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import orjson
import pytest
import websockets.exceptions
from conftest import API_KEY, recv, recv_until, validated
from openai.types.beta.realtime import SessionCreateResponse, TranscriptionSession
from openai.types.realtime import ClientSecretCreateResponse
from scripted_llm import Text
from servers import ServerThread

from openrealtime.backends.registry import Backends
from openrealtime.config import Settings
from openrealtime.server.app import create_app

SEEDS = Path(__file__).parent / "seeds"
# The tutorials live in shared/, beside the repository's checkout.
SEED1_TUTORIAL = Path(__file__).resolve().parents[2] / "shared/seeds/000_897dde7a8c3c30e5.txt"

INSTRUCTIONS = "You are a terse lighthouse keeper. Answer in one short sentence."
MINTED = {
    "type": "realtime",
    "instructions": INSTRUCTIONS,
    "output_modalities": ["text"],
    "audio": {"output": {"voice": "marin"}},
}


def _user(text: str) -> dict[str, Any]:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


def _secret_client(server: ServerThread, secret: str) -> openai.OpenAI:
    # The beta SDK's connect() needs the WebSocket base URL spelled out (it assumes wss).
    return openai.OpenAI(
        base_url=server.url + "/v1",
        websocket_base_url=f"ws://127.0.0.1:{server.port}/v1",
        api_key=secret,
    )


def _mint(client: openai.OpenAI, **body: Any) -> ClientSecretCreateResponse:
    """Mint through the SDK, and validate the raw answer strictly with the SDK's own type (its
    usual parsing is lenient)."""
    raw = client.realtime.client_secrets.with_raw_response.create(**body)
    assert raw.http_response.headers["cache-control"] == "no-store"
    return ClientSecretCreateResponse.model_validate(raw.http_response.json())


def _text_turn(conn: Any, text: str) -> list[Any]:
    conn.conversation.item.create(item=_user(text))
    conn.response.create()
    return recv_until(conn, "response.done")


# --- GA: POST /v1/realtime/client_secrets ----------------------------------------------------


def test_ga_mint_answers_the_secret_and_the_effective_session(client) -> None:
    before = int(time.time())
    minted = _mint(client, session=MINTED, expires_after={"anchor": "created_at", "seconds": 120})
    assert minted.value.startswith("ek_") and len(minted.value) > 20
    assert before + 120 <= minted.expires_at <= int(time.time()) + 120
    session = minted.session
    assert session.type == "realtime" and session.object == "realtime.session"
    assert session.id.startswith("sess_")
    assert session.instructions == INSTRUCTIONS
    assert session.output_modalities == ["text"]
    assert session.audio is not None and session.audio.output is not None
    assert session.audio.output.voice == "marin"
    # Defaults are filled, as session.created shows them.
    assert session.model == "gpt-realtime"
    assert session.audio.input is not None and session.audio.input.format is not None
    assert session.audio.input.format.type == "audio/pcm"
    assert session.audio.input.turn_detection is not None
    assert session.audio.input.turn_detection.type == "server_vad"
    assert session.max_output_tokens == "inf"


def test_ga_mint_without_a_body_gives_a_default_realtime_session_for_ten_minutes(client) -> None:
    minted = _mint(client)
    assert minted.session.type == "realtime"
    assert minted.session.output_modalities == ["audio"]
    assert abs(minted.expires_at - (time.time() + 600)) <= 2


def test_a_secret_opens_a_session_with_the_minted_configuration(server, client, llm) -> None:
    minted = _mint(client, session=MINTED)
    llm.script(Text(["The light ", "is on."]))
    with _secret_client(server, minted.value).realtime.connect(model="gpt-realtime") as conn:
        created = recv(conn)
        assert created.type == "session.created"
        session = created.session
        assert session.type == "realtime"
        assert session.instructions == INSTRUCTIONS
        assert session.output_modalities == ["text"]
        assert session.audio.output.voice == "marin"
        assert session.id != minted.session.id  # each connection is a session of its own
        events = _text_turn(conn, "Is the light on?")
    done = events[-1].response
    assert done.status == "completed"
    assert [e.delta for e in events if e.type == "response.output_text.delta"] == [
        "The light ",
        "is on.",
    ]
    assert not [e for e in events if e.type == "response.output_audio.delta"]
    assert llm.last_request["messages"][0] == {"role": "system", "content": INSTRUCTIONS}


def test_a_secret_opens_several_sessions_until_it_expires(server, client) -> None:
    minted = _mint(client, session=MINTED)
    ids = set()
    for _ in range(2):
        with _secret_client(server, minted.value).realtime.connect(model="gpt-realtime") as conn:
            created = recv(conn)
            assert created.session.instructions == INSTRUCTIONS
            ids.add(created.session.id)
    assert len(ids) == 2


def test_a_transcription_secret_is_answered_as_a_transcription_session(client) -> None:
    minted = _mint(
        client,
        session={
            "type": "transcription",
            "audio": {"input": {"transcription": {"model": "whisper-1", "language": "en"}}},
        },
    )
    session = minted.session
    assert session.type == "transcription"
    assert session.id.startswith("sess_")
    assert session.audio is not None and session.audio.input is not None
    assert session.audio.input.transcription is not None
    assert session.audio.input.transcription.language == "en"
    assert session.audio.input.turn_detection is not None


# --- who may mint ------------------------------------------------------------------------------


MINT_CALLS = {
    "ga": lambda c: c.realtime.client_secrets.create(session=MINTED),
    "beta_sessions": lambda c: c.beta.realtime.sessions.create(model="gpt-realtime"),
    "beta_transcription_sessions": lambda c: c.beta.realtime.transcription_sessions.create(),
}


@pytest.mark.parametrize("call", MINT_CALLS.values(), ids=MINT_CALLS.keys())
def test_a_client_secret_cannot_mint(server, client, call) -> None:
    secret = _mint(client).value
    with pytest.raises(openai.AuthenticationError) as refused:
        call(_secret_client(server, secret))
    assert refused.value.status_code == 401
    assert refused.value.code == "invalid_api_key"
    assert "client secret cannot mint" in refused.value.message


@pytest.mark.parametrize("call", MINT_CALLS.values(), ids=MINT_CALLS.keys())
def test_a_wrong_key_cannot_mint(server, call) -> None:
    with pytest.raises(openai.AuthenticationError) as refused:
        call(_secret_client(server, "sk-wrong"))
    assert "Incorrect API key" in refused.value.message


def test_no_key_cannot_mint(server) -> None:
    answer = httpx.post(server.url + "/v1/realtime/client_secrets", json={})
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "invalid_api_key"


@pytest.fixture(scope="module")
def open_server(settings: Settings, backends: Backends) -> Iterator[ServerThread]:
    """No keys configured: any key but a client secret may mint."""
    with ServerThread(create_app(Settings(llm_base_url=settings.llm_base_url), backends)) as t:
        yield t


def test_in_open_mode_any_key_but_a_client_secret_mints(open_server) -> None:
    minted = _mint(_secret_client(open_server, "anything"), session=MINTED)
    assert minted.value.startswith("ek_")
    with pytest.raises(openai.AuthenticationError):
        _secret_client(open_server, minted.value).realtime.client_secrets.create()
    with _secret_client(open_server, minted.value).realtime.connect(model="gpt-realtime") as conn:
        assert recv(conn).session.instructions == INSTRUCTIONS


# --- bad bodies --------------------------------------------------------------------------------

BAD_BODIES = [
    ("/client_secrets", {"session": {"type": "realtime", "voices": "marin"}}, "unknown_parameter", "session.voices"),
    ("/client_secrets", {"sesion": {}}, "unknown_parameter", "sesion"),
    ("/client_secrets", {"session": {"instructions": "hi"}}, "missing_required_parameter", "session.type"),
    ("/client_secrets", {"session": {"type": "chat"}}, "invalid_value", "session.type"),
    ("/client_secrets", {"session": {"type": "realtime", "audio": {"output": {"voice": "no-such-voice"}}}}, "invalid_value", "session.audio.output.voice"),
    ("/client_secrets", {"session": {"type": "realtime", "output_modalities": ["video"]}}, "invalid_value", "session.output_modalities[0]"),
    ("/client_secrets", {"session": {"type": "transcription", "instructions": "hi"}}, "unknown_parameter", "session.instructions"),
    ("/client_secrets", {"expires_after": {"anchor": "created_at", "seconds": 9}}, "invalid_value", "expires_after.seconds"),
    ("/client_secrets", {"expires_after": {"anchor": "created_at", "seconds": 7201}}, "invalid_value", "expires_after.seconds"),
    ("/client_secrets", {"expires_after": {"anchor": "now"}}, "invalid_value", "expires_after.anchor"),
    ("/client_secrets", {"expires_after": {"seconds": "soon"}}, "invalid_type", "expires_after.seconds"),
    ("/sessions", {"modalities": ["text"], "voices": "ash"}, "unknown_parameter", "voices"),
    ("/sessions", {"voice": "no-such-voice"}, "invalid_value", "voice"),
    ("/sessions", {"input_audio_format": "mp3"}, "invalid_value", "input_audio_format"),
    ("/sessions", {"turn_detection": {"type": "server_vad", "threshold": 7}}, "invalid_value", "turn_detection.threshold"),
    ("/sessions", {"max_response_output_tokens": 0}, "invalid_value", "max_response_output_tokens"),
    ("/sessions", {"client_secret": {"expires_after": {"anchor": "created_at", "seconds": 3}}}, "invalid_value", "client_secret.expires_after.seconds"),
    ("/transcription_sessions", {"voice": "alloy"}, "unknown_parameter", "voice"),
    ("/transcription_sessions", {"modalities": "text"}, "invalid_value", "modalities"),
    ("/transcription_sessions", {"turn_detection": {"type": "loud"}}, "invalid_value", "turn_detection.type"),
]  # fmt: skip


@pytest.mark.parametrize(("path", "body", "code", "param"), BAD_BODIES)
def test_a_bad_body_is_refused_with_400_in_openai_shape(server, path, body, code, param) -> None:
    answer = httpx.post(
        server.url + "/v1/realtime" + path,
        json=body,
        headers={"Authorization": f"Bearer {API_KEY}"},
    )
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert (error["code"], error["param"]) == (code, param), error
    if code != "invalid_value":  # those say what is wrong with the value instead
        assert f"'{param}'" in error["message"], error


def test_a_body_that_is_not_a_json_object_is_refused(server) -> None:
    headers = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
    url = server.url + "/v1/realtime/client_secrets"
    not_json = httpx.post(url, content=b"{session", headers=headers)
    assert not_json.status_code == 400 and not_json.json()["error"]["code"] == "invalid_json"
    not_object = httpx.post(url, content=b"[]", headers=headers)
    assert not_object.status_code == 400 and not_object.json()["error"]["code"] == "invalid_type"


def test_the_sdk_reports_a_bad_body_as_a_bad_request_naming_the_param(client) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        client.realtime.client_secrets.create(expires_after={"anchor": "created_at", "seconds": 5})
    assert refused.value.param == "expires_after.seconds"
    assert refused.value.code == "invalid_value"
    assert "between 10 and 7200" in refused.value.message


# --- expiry and unknown secrets ------------------------------------------------------------


def _refused_status(server: ServerThread, secret: str) -> tuple[int, dict[str, Any]]:
    with (
        pytest.raises(websockets.exceptions.InvalidStatus) as refused,
        _secret_client(server, secret).realtime.connect(model="gpt-realtime"),
    ):
        pass
    response = refused.value.response
    return response.status_code, orjson.loads(response.body)


def test_a_ten_second_secret_opens_sessions_then_expires(server, client) -> None:
    """The one test here that waits: a real 10 s secret, the shortest OpenAI allows."""
    minted = _mint(client, session=MINTED, expires_after={"anchor": "created_at", "seconds": 10})
    assert minted.expires_at - time.time() <= 10
    with _secret_client(server, minted.value).realtime.connect(model="gpt-realtime") as conn:
        assert recv(conn).session.instructions == INSTRUCTIONS
        time.sleep(max(0.0, minted.expires_at - time.time()) + 0.2)
        status, body = _refused_status(server, minted.value)
        assert status == 401
        assert body["error"]["code"] == "invalid_api_key"
        assert "expired or unknown" in body["error"]["message"]
        # A session opened in time goes on: expiry only stops new sessions (as OpenAI says).
        conn.session.update(session={"type": "realtime", "instructions": "Still here."})
        updated = recv(conn)
        assert updated.type == "session.updated"
        assert updated.session.instructions == "Still here."


def test_an_unknown_secret_is_refused_with_401(server) -> None:
    status, body = _refused_status(server, "ek_this-secret-was-never-minted")
    assert status == 401
    assert "client secret is expired or unknown" in body["error"]["message"]
    assert "POST /v1/realtime/client_secrets" in body["error"]["message"]


# --- beta: POST /v1/realtime/sessions and /v1/realtime/transcription_sessions ---------------


def test_beta_session_mint_answers_the_beta_shape(client) -> None:
    raw = client.beta.realtime.sessions.with_raw_response.create(
        model="gpt-4o-realtime-preview",
        modalities=["text"],
        instructions=INSTRUCTIONS,
        voice="ash",
        input_audio_format="g711_ulaw",
        turn_detection={"type": "server_vad", "silence_duration_ms": 700},
        tools=[{"type": "function", "name": "light", "parameters": {"type": "object"}}],
        tool_choice="auto",
        temperature=0.6,
        client_secret={"expires_after": {"anchor": "created_at", "seconds": 90}},
    )
    body = raw.http_response.json()
    session = SessionCreateResponse.model_validate(body)
    assert body["id"].startswith("sess_") and body["object"] == "realtime.session"
    assert body["model"] == "gpt-4o-realtime-preview"
    assert session.client_secret.value.startswith("ek_")
    assert abs(session.client_secret.expires_at - (time.time() + 90)) <= 2
    assert session.modalities == ["text"]
    assert session.instructions == INSTRUCTIONS
    assert session.voice == "ash"
    assert session.input_audio_format == "g711_ulaw"
    assert session.output_audio_format == "pcm16"
    assert session.turn_detection is not None and session.turn_detection.silence_duration_ms == 700
    assert session.tools is not None and [t.name for t in session.tools] == ["light"]
    assert session.temperature == 0.6


def test_a_beta_minted_secret_applies_in_both_dialects(server, client, llm) -> None:
    minted = client.beta.realtime.sessions.create(
        model="gpt-realtime", modalities=["text"], instructions=INSTRUCTIONS, voice="ash"
    )
    secret = minted.client_secret.value
    with _secret_client(server, secret).beta.realtime.connect(model="gpt-realtime") as conn:
        created = recv(conn, beta=True)
        assert created.type == "session.created"
        assert created.session.instructions == INSTRUCTIONS
        assert created.session.modalities == ["text"]
        assert created.session.voice == "ash"
    llm.script(Text(["Aye."]))
    with _secret_client(server, secret).realtime.connect(model="gpt-realtime") as conn:
        session = recv(conn).session
        assert session.output_modalities == ["text"] and session.audio.output.voice == "ash"
        assert _text_turn(conn, "Hello?")[-1].response.status == "completed"
    assert llm.last_request["messages"][0] == {"role": "system", "content": INSTRUCTIONS}


def test_beta_transcription_session_mint_answers_the_beta_shape(client) -> None:
    raw = client.beta.realtime.transcription_sessions.with_raw_response.create(
        input_audio_format="pcm16",
        input_audio_transcription={"model": "gpt-4o-transcribe", "language": "en"},
        turn_detection={"type": "server_vad", "silence_duration_ms": 650},
        include=["item.input_audio_transcription.logprobs"],
        client_secret={"expires_at": {"anchor": "created_at", "seconds": 60}},
    )
    body = raw.http_response.json()
    session = TranscriptionSession.model_validate(body)
    assert body["id"].startswith("sess_")
    assert body["object"] == "realtime.transcription_session"
    assert session.client_secret.value.startswith("ek_")
    assert abs(session.client_secret.expires_at - (time.time() + 60)) <= 2
    assert session.input_audio_format == "pcm16"
    assert session.input_audio_transcription is not None
    assert session.input_audio_transcription.model == "gpt-4o-transcribe"
    assert session.input_audio_transcription.language == "en"
    assert session.turn_detection is not None and session.turn_detection.silence_duration_ms == 650
    assert session.modalities == ["audio", "text"]


# --- the seed tutorial's token route -------------------------------------------------------


def _load_token_server(monkeypatch: pytest.MonkeyPatch, base_url: str, key: str = API_KEY) -> Any:
    """Import the copy afresh: it reads its key from the environment when imported."""
    monkeypatch.setenv("OPENAI_API_KEY", key)
    monkeypatch.setenv("OPENAI_BASE_URL", base_url)
    spec = importlib.util.spec_from_file_location(
        "seed1_token_server", SEEDS / "seed1_token_server.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "seed1_token_server", module)
    spec.loader.exec_module(module)
    return module


def test_seed1_token_route_mints_a_usable_secret(server, monkeypatch) -> None:
    token_server = _load_token_server(monkeypatch, server.url + "/v1")
    with ServerThread(token_server.app) as tokens:
        answer = httpx.get(tokens.url + "/token", timeout=30)
    assert answer.status_code == 200, answer.text
    minted = ClientSecretCreateResponse.model_validate(answer.json())
    assert minted.value.startswith("ek_")
    assert minted.session.type == "realtime"
    assert minted.session.audio is not None and minted.session.audio.output is not None
    assert minted.session.audio.output.voice == "marin"
    # What the browser then does with it (here over a WebSocket).
    with _secret_client(server, minted.value).realtime.connect(model="gpt-realtime") as conn:
        created = validated(conn.recv_bytes())
        assert created.type == "session.created"
        assert created.session.audio.output.voice == "marin"


def test_seed1_token_route_passes_on_a_refusal(server, monkeypatch) -> None:
    token_server = _load_token_server(monkeypatch, server.url + "/v1", key="sk-wrong")
    with ServerThread(token_server.app) as tokens:
        answer = httpx.get(tokens.url + "/token", timeout=30)
    assert answer.status_code == 401
    assert "Incorrect API key" in answer.json()["detail"]


def test_seed1_token_server_copy_is_the_tutorial_code_but_for_the_url() -> None:
    """The scraped tutorial lost its indentation; the committed copy restores it and changes
    only the URL line. Compared line by line, indentation and blank lines aside."""
    if not SEED1_TUTORIAL.exists():
        pytest.skip(f"{SEED1_TUTORIAL} is not available here")
    tutorial = SEED1_TUTORIAL.read_text().splitlines()
    start = tutorial.index(
        "Here is the Python equivalent of the token-minting flow shown in the docs:"
    )
    end = tutorial.index("Start it like this:")
    expected = [line.strip() for line in tutorial[start + 1 : end] if line.strip()]
    url_line = '"https://api.openai.com/v1/realtime/client_secrets",'
    assert url_line in expected
    expected[expected.index(url_line)] = (
        'os.environ["OPENAI_BASE_URL"] + "/realtime/client_secrets",'
    )
    copy = (SEEDS / "seed1_token_server.py").read_text().splitlines()
    assert [line.strip() for line in copy if line.strip()] == expected
