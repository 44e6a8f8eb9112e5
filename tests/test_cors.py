"""Browser apps on other origins: CORS preflights and answers for the `/v1/` API, and the
origin check on WebSocket handshakes. Plain HTTP requests here; real Chromium in
test_cors_browser.py."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import websocket
from conftest import API_KEY, validated
from servers import ServerThread

from openrealtime.backends.registry import Backends
from openrealtime.cli import parse_settings
from openrealtime.config import Settings
from openrealtime.server.app import create_app

APP_ORIGIN = "http://app.example.test:5173"
SDK_HEADERS = "authorization,content-type,openai-beta,x-openai-agents-sdk"


@pytest.fixture
def restricted(settings: Settings, backends: Backends) -> Iterator[ServerThread]:
    """A server that lets only APP_ORIGIN's pages in."""
    own = settings.model_copy(update={"cors_allow_origins": [APP_ORIGIN]})
    with ServerThread(create_app(own, backends)) as thread:
        yield thread


def _preflight(server: ServerThread, path: str, origin: str = APP_ORIGIN) -> httpx.Response:
    return httpx.options(
        server.url + path,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": SDK_HEADERS,
        },
    )


def _mint(server: ServerThread, origin: str | None = APP_ORIGIN) -> httpx.Response:
    return httpx.post(
        server.url + "/v1/realtime/client_secrets",
        json={"session": {"type": "realtime"}},
        headers={"Authorization": f"Bearer {API_KEY}", **({"Origin": origin} if origin else {})},
    )


@pytest.mark.parametrize(
    "path", ["/v1/realtime/calls", "/v1/realtime/client_secrets", "/v1/realtime/calls/x/hangup"]
)
def test_the_default_answers_any_origins_preflight(server, path) -> None:
    answer = _preflight(server, path)
    assert answer.status_code == 200, answer.text
    assert answer.headers["access-control-allow-origin"] == "*"
    assert "POST" in answer.headers["access-control-allow-methods"]
    assert answer.headers["access-control-allow-headers"] == SDK_HEADERS  # reflected
    assert "access-control-allow-credentials" not in answer.headers


def test_answers_carry_the_origin_and_expose_location(server) -> None:
    minted = _mint(server)
    assert minted.status_code == 200
    assert minted.headers["access-control-allow-origin"] == "*"
    # A call's answer: the SDK reads the call id from `Location`. An offer aiortc refuses
    # still shows the headers every answer from the calls route gets.
    offer = httpx.post(
        server.url + "/v1/realtime/calls",
        content=b"v=0\r\n",
        headers={
            "Authorization": f"Bearer {API_KEY}",
            "Content-Type": "application/sdp",
            "Origin": APP_ORIGIN,
        },
    )
    assert offer.headers["access-control-allow-origin"] == "*"
    assert "Location" in offer.headers["access-control-expose-headers"]


def test_the_console_and_operator_routes_stay_same_origin(server) -> None:
    for path in ("/healthz", "/metrics"):
        answer = httpx.get(server.url + path, headers={"Origin": APP_ORIGIN})
        assert "access-control-allow-origin" not in answer.headers, path
    assert "access-control-allow-origin" not in _preflight(server, "/console/session").headers


def test_a_listed_origin_is_named_and_another_refused(restricted) -> None:
    allowed = _preflight(restricted, "/v1/realtime/calls")
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == APP_ORIGIN
    refused = _preflight(restricted, "/v1/realtime/calls", origin="http://evil.example.test")
    assert refused.status_code == 400
    assert "access-control-allow-origin" not in refused.headers
    minted = _mint(restricted, origin="http://evil.example.test")
    assert "access-control-allow-origin" not in minted.headers  # the browser hides it
    assert _mint(restricted).headers["access-control-allow-origin"] == APP_ORIGIN
    assert _mint(restricted, origin=None).status_code == 200  # not a browser: no CORS


def _open(server: ServerThread, **options: Any) -> Any:
    ws = websocket.create_connection(
        server.url.replace("http", "ws", 1) + "/v1/realtime?model=gpt-realtime",
        header=[f"Authorization: Bearer {API_KEY}"],
        timeout=10,
        **options,
    )
    assert validated(ws.recv()).type == "session.created"
    return ws


def test_websockets_from_any_origin_pass_by_default(server) -> None:
    _open(server, origin="http://elsewhere.example.test").close()


def test_a_restricted_server_refuses_websockets_from_other_origins(restricted) -> None:
    _open(restricted, origin=APP_ORIGIN).close()
    _open(restricted).close()  # websocket-client's own Origin: the server's own URL
    _open(restricted, suppress_origin=True).close()  # no Origin: not a browser
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        _open(restricted, origin="http://evil.example.test")
    assert refused.value.status_code == 403
    error = httpx.Response(403, content=refused.value.resp_body).json()["error"]
    assert error["code"] == "origin_not_allowed" and "--cors-allow-origins" in error["message"]


def test_the_flag_and_the_variable_reach_the_settings(monkeypatch) -> None:
    monkeypatch.delenv("OPENREALTIME_CORS_ALLOW_ORIGINS", raising=False)
    assert parse_settings(["serve"]).cors_allow_origins == ["*"]
    flag = parse_settings(["serve", "--cors-allow-origins", "https://a.test/, http://b.test:8080"])
    assert flag.cors_allow_origins == ["https://a.test", "http://b.test:8080"]
    monkeypatch.setenv("OPENREALTIME_CORS_ALLOW_ORIGINS", "https://c.test")
    assert parse_settings(["serve"]).cors_allow_origins == ["https://c.test"]
    assert parse_settings(["serve", "--cors-allow-origins", ""]).cors_allow_origins == []
