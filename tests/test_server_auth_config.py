"""Who may connect, what the server says about itself, how it is configured and started, and
that a client going away stops the work done for it."""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import orjson
import pytest
import websocket
import websockets.exceptions
from conftest import API_KEY, recv, recv_until, validated
from scripted_llm import Text
from servers import ServerThread, free_port

from openrealtime.backends.llm.openai_chat import OpenAIChatModel
from openrealtime.backends.registry import Backends
from openrealtime.cli import parse_settings
from openrealtime.config import Settings
from openrealtime.server.app import create_app

OLLAMA_URL = "http://127.0.0.1:11434/v1"


def _ws_url(port: int) -> str:
    return f"ws://127.0.0.1:{port}/v1/realtime?model=gpt-realtime"


def _user(text: str) -> dict[str, Any]:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


def _assert_refused_401(exc: websocket.WebSocketBadStatusException) -> None:
    assert exc.status_code == 401
    body = orjson.loads(exc.resp_body)
    assert body["error"]["code"] == "invalid_api_key"
    assert set(body["error"]) == {"message", "type", "param", "code"}


# --- the WebSocket handshake ---------------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [
        ["Authorization: Bearer sk-wrong"],
        [],
        ["Authorization: Bearer "],
        [f"Authorization: {API_KEY}"],
    ],
    ids=["wrong_key", "no_header", "empty_bearer", "not_bearer"],
)
def test_handshake_without_the_right_key_is_refused_with_401(server, header) -> None:
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        websocket.create_connection(_ws_url(server.port), header=header, timeout=10)
    _assert_refused_401(refused.value)


def test_sdk_with_a_wrong_key_is_refused_with_401(server) -> None:
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="sk-wrong")
    with (
        pytest.raises(websockets.exceptions.InvalidStatus) as refused,
        client.realtime.connect(model="gpt-realtime"),
    ):
        pass
    assert refused.value.response.status_code == 401
    assert orjson.loads(refused.value.response.body)["error"]["code"] == "invalid_api_key"


def test_right_key_as_bearer_is_accepted(server, llm) -> None:
    ws = websocket.create_connection(
        _ws_url(server.port), header=[f"Authorization: Bearer {API_KEY}"], timeout=10
    )
    try:
        assert validated(ws.recv()).type == "session.created"
    finally:
        ws.close()


def test_browser_subprotocol_key_is_accepted_and_server_picks_realtime(server) -> None:
    ws = websocket.create_connection(
        _ws_url(server.port),
        subprotocols=["realtime", f"openai-insecure-api-key.{API_KEY}"],
        timeout=10,
    )
    try:
        assert ws.getsubprotocol() == "realtime"
        assert validated(ws.recv()).type == "session.created"
    finally:
        ws.close()


def test_browser_subprotocol_with_a_wrong_key_is_refused(server) -> None:
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        websocket.create_connection(
            _ws_url(server.port),
            subprotocols=["realtime", "openai-insecure-api-key.sk-wrong"],
            timeout=10,
        )
    _assert_refused_401(refused.value)


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_refused_handshake_logs_no_server_error(server) -> None:
    records = _Records()
    logger = logging.getLogger("uvicorn.error")
    logger.addHandler(records)
    try:
        with pytest.raises(websocket.WebSocketBadStatusException):
            websocket.create_connection(
                _ws_url(server.port), header=["Authorization: Bearer sk-wrong"], timeout=10
            )
        deadline = time.monotonic() + 1.0  # the log, if any, follows the 401 at once
        while not records.records and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        logger.removeHandler(records)
    assert [r.getMessage() for r in records.records] == []


@pytest.fixture(scope="module")
def open_server(settings: Settings, backends: Backends) -> Iterator[ServerThread]:
    """A second server with no keys, sharing the session's speech backends. It gets its own LLM
    client: the shared one's connection pool is bound to the first server's event loop."""
    open_settings = Settings(llm_base_url=settings.llm_base_url, api_keys=[])
    llm = OpenAIChatModel(settings.llm_base_url, settings.llm_model, None)
    with ServerThread(create_app(open_settings, dataclasses.replace(backends, llm=llm))) as thread:
        yield thread


@pytest.mark.parametrize(
    "header", [["Authorization: Bearer anything-at-all"], []], ids=["any_key", "no_key"]
)
def test_open_mode_accepts_any_key(open_server, header) -> None:
    ws = websocket.create_connection(_ws_url(open_server.port), header=header, timeout=10)
    try:
        assert validated(ws.recv()).type == "session.created"
    finally:
        ws.close()


def test_open_mode_serves_a_text_turn_to_the_sdk_with_any_key(open_server, llm) -> None:
    llm.script(Text(["open ", "door"]))
    client = openai.OpenAI(base_url=open_server.url + "/v1", api_key="whatever")
    with client.realtime.connect(model="gpt-realtime") as conn:
        assert recv(conn).type == "session.created"
        conn.session.update(session={"type": "realtime", "output_modalities": ["text"]})
        conn.conversation.item.create(item=_user("Knock knock."))
        conn.response.create()
        done = recv_until(conn, "response.done")[-1].response
    assert done.status == "completed"
    assert done.output[0].content[0].text == "open door"


# --- HTTP routes ---------------------------------------------------------------------------


def test_healthz_answers_ok_without_a_key(server) -> None:
    answer = httpx.get(server.url + "/healthz")
    assert answer.status_code == 200
    assert answer.json()["status"] == "ok"
    assert answer.json()["models"] in {"loading", "ready"}


def test_models_with_the_key_lists_the_pipeline(server, client) -> None:
    answer = httpx.get(server.url + "/v1/models", headers={"Authorization": f"Bearer {API_KEY}"})
    assert answer.status_code == 200
    body = answer.json()
    assert body["object"] == "list"
    (model,) = body["data"]
    assert model["id"] == "openrealtime" and model["object"] == "model"
    assert set(model["pipeline"]) == {"llm", "stt", "tts", "vad"}
    assert model["pipeline"]["llm"] == "openai-chat scripted-model"
    # The SDK reads it too.
    assert [m.id for m in client.models.list().data] == ["openrealtime"]


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer sk-wrong"}], ids=["no_key", "wrong_key"]
)
def test_models_without_the_key_is_401_in_openai_error_shape(server, headers) -> None:
    answer = httpx.get(server.url + "/v1/models", headers=headers)
    assert answer.status_code == 401
    body = answer.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["type"] == "invalid_request_error"
    assert body["error"]["code"] == "invalid_api_key"
    assert body["error"]["message"]


def test_sdk_models_with_a_wrong_key_raises_authentication_error(server) -> None:
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="sk-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as refused:
        client.models.list()
    assert refused.value.status_code == 401
    assert refused.value.code == "invalid_api_key"


def test_sdk_call_to_a_url_the_server_does_not_serve_is_404_in_openai_shape(server) -> None:
    client = openai.OpenAI(base_url=server.url + "/v1", api_key=API_KEY, max_retries=0)
    with pytest.raises(openai.NotFoundError) as refused:
        client.embeddings.create(model="m", input="hi")
    assert refused.value.status_code == 404
    assert refused.value.message == "Error code: 404 - Invalid URL (POST /v1/embeddings)"
    assert refused.value.body == {
        "message": "Invalid URL (POST /v1/embeddings)",
        "type": "invalid_request_error",
        "param": None,
        "code": None,
    }


def test_a_method_a_route_does_not_take_is_405_in_openai_shape_with_allow(server) -> None:
    answer = httpx.get(server.url + "/v1/realtime/client_secrets")
    assert answer.status_code == 405
    assert answer.headers["allow"] == "POST"
    error = answer.json()["error"]
    assert error["message"] == "Method GET is not allowed on /v1/realtime/client_secrets."
    assert error["type"] == "invalid_request_error"


# --- settings --------------------------------------------------------------------------------


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in list(os.environ):
        if name.startswith("OPENREALTIME_"):
            monkeypatch.delenv(name)
    return monkeypatch


def _subprocess_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENREALTIME_")}
    return env | {"PYTHONUNBUFFERED": "1"}


def test_flag_wins_over_env(clean_env) -> None:
    clean_env.setenv("OPENREALTIME_LLM_MODEL", "b")
    assert parse_settings(["serve", "--llm-model", "a"]).llm_model == "a"
    assert parse_settings(["serve"]).llm_model == "b"


def test_env_names_are_read_in_any_case_and_values_are_validated(clean_env) -> None:
    clean_env.setenv("openrealtime_port", "9001")
    clean_env.setenv("OPENREALTIME_CONSOLE", "false")
    clean_env.setenv("OPENREALTIME_NOT_A_SETTING", "x")  # ignored, as before
    settings = Settings()
    assert (settings.port, settings.console) == (9001, False)
    clean_env.setenv("OPENREALTIME_WORKERS", "0")
    with pytest.raises(ValueError, match="workers"):
        Settings()


def test_env_api_keys_are_comma_separated(clean_env) -> None:
    clean_env.setenv("OPENREALTIME_API_KEYS", "k1, k2")
    settings = parse_settings(["serve"])
    assert settings.api_keys == ["k1", "k2"]
    assert not settings.open_mode


def test_api_key_flag_is_repeatable_and_wins_over_env(clean_env) -> None:
    clean_env.setenv("OPENREALTIME_API_KEYS", "from-env")
    settings = parse_settings(["serve", "--api-key", "k1", "--api-key", "k2"])
    assert settings.api_keys == ["k1", "k2"]


def test_defaults(clean_env) -> None:
    settings = parse_settings(["serve"])
    assert settings.llm_base_url == OLLAMA_URL
    assert (settings.host, settings.port) == ("127.0.0.1", 8000)
    assert settings.api_keys == [] and settings.open_mode
    assert settings.insecure is False
    settings.check()  # open mode on loopback is allowed


def test_open_mode_on_a_public_host_is_refused(clean_env) -> None:
    with pytest.raises(ValueError) as refused:
        Settings(host="0.0.0.0").check()
    assert "--api-key" in str(refused.value) and "--insecure" in str(refused.value)


@pytest.mark.parametrize(
    "settings",
    [
        {"host": "0.0.0.0", "insecure": True},
        {"host": "0.0.0.0", "api_keys": ["k"]},
        {"host": "::1"},
        {"host": "localhost"},
    ],
    ids=["insecure", "with_keys", "ipv6_loopback", "localhost"],
)
def test_safe_configurations_pass_the_check(clean_env, settings) -> None:
    Settings(**settings).check()


def test_insecure_flag_allows_open_mode_on_a_public_host(clean_env) -> None:
    parse_settings(["serve", "--host", "0.0.0.0", "--insecure"]).check()
    with pytest.raises(ValueError):
        parse_settings(["serve", "--host", "0.0.0.0"]).check()


def test_main_module_exists() -> None:
    import openrealtime

    assert (Path(openrealtime.__file__).parent / "__main__.py").is_file()


def test_serve_on_a_public_host_in_open_mode_exits_with_a_hint(tmp_path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "openrealtime",
            "serve",
            "--host",
            "0.0.0.0",
            "--port",
            str(free_port()),
        ],
        env=_subprocess_env(),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode != 0
    assert "--api-key" in result.stderr and "--insecure" in result.stderr
    assert "Traceback" not in result.stderr


# --- start-up output, with an LLM that is not there ----------------------------------------


def _wait_healthy(process: subprocess.Popen[bytes], url: str, stderr: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"server exited with {process.returncode}:\n{stderr.read_text()}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    pytest.fail(f"server never became healthy:\n{stderr.read_text()}")


def test_serve_start_up_output_and_unreachable_llm(tmp_path) -> None:
    port, closed = free_port(), free_port()
    llm_url = f"http://127.0.0.1:{closed}/v1"
    stderr_path = tmp_path / "stderr.txt"
    with stderr_path.open("wb") as stderr, (tmp_path / "stdout.txt").open("wb") as stdout:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "openrealtime",
                "serve",
                "--port",
                str(port),
                "--llm-base-url",
                llm_url,
            ],
            env=_subprocess_env(),
            cwd=tmp_path,
            stdout=stdout,
            stderr=stderr,
        )
    try:
        _wait_healthy(process, f"http://127.0.0.1:{port}/healthz", stderr_path)
        start_up = stderr_path.read_text()  # complete: start-up logs before health turns ok

        # With the LLM away, a turn fails cleanly; the log, not the client, says where it looked.
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="any-key")
        with client.realtime.connect(model="gpt-realtime") as conn:
            assert recv(conn).type == "session.created"
            conn.session.update(session={"type": "realtime", "output_modalities": ["text"]})
            conn.conversation.item.create(item=_user("Anyone there?"))
            conn.response.create()
            done = recv_until(conn, "response.done")[-1].response
        assert done.status == "failed"
        assert done.status_details.error.code == "llm_unreachable"
        assert llm_url not in done.status_details.error.message
        assert any(
            "failed" in line and llm_url in line for line in stderr_path.read_text().splitlines()
        )

        # The warning comes from a check run after start (it waits for the warm-up's imports).
        deadline = time.monotonic() + 60
        while f"endpoint {llm_url} " not in stderr_path.read_text():
            assert time.monotonic() < deadline, stderr_path.read_text()
            time.sleep(0.1)
        process.send_signal(signal.SIGTERM)
        # A graceful shutdown is a success (uvicorn's re-raise of the signal is defused:
        # server/run.py); tests/test_shutdown.py has the rest.
        assert process.wait(timeout=15) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    output = stderr_path.read_text()
    assert f"listening on http://127.0.0.1:{port}" in output
    assert f"ws://127.0.0.1:{port}/v1/realtime" in output
    for role, backend in [
        ("llm", "openai-chat llama3.2"),
        ("stt", "faster-whisper"),
        ("tts", "hibari"),
        ("vad", "silero"),
    ]:
        assert any(role in line and backend in line for line in output.splitlines()), (role, output)
    assert any(
        "WARNING" in line and "OPEN MODE" in line and "--api-key" in line
        for line in start_up.splitlines()
    ), start_up
    # Logged once the server listens: /healthz does not wait for the LLM (issue 9).
    url_warnings = [
        line for line in output.splitlines() if "WARNING" in line and f"endpoint {llm_url} " in line
    ]
    assert len(url_warnings) == 1, output
    assert "--llm-base-url" in url_warnings[0]
    assert "Application shutdown complete." in output
    assert "Traceback" not in output


# --- disconnect --------------------------------------------------------------------------------


def test_disconnect_mid_response_cancels_the_backend_request(server, llm) -> None:
    llm.script(Text(["w "] * 500, delay=0.01))
    ws = websocket.create_connection(
        _ws_url(server.port), header=[f"Authorization: Bearer {API_KEY}"], timeout=10
    )
    assert validated(ws.recv()).type == "session.created"
    ws.send(
        orjson.dumps(
            {
                "type": "session.update",
                "session": {"type": "realtime", "output_modalities": ["text"]},
            }
        ).decode()
    )
    ws.send(
        orjson.dumps({"type": "conversation.item.create", "item": _user("Go on forever.")}).decode()
    )
    ws.send('{"type": "response.create"}')
    for _ in range(100):
        if validated(ws.recv()).type == "response.output_text.delta":
            break
    else:
        pytest.fail("no text delta")
    assert llm.cancelled == 0
    ws.shutdown()  # abrupt: no close frame
    deadline = time.monotonic() + 5
    while llm.cancelled == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert llm.cancelled == 1
    assert len(llm.requests) == 1
