"""The console's routes over real sockets: the page and its files, the secret it mints (and
that the secret opens a session configured as asked), what it refuses, and turning it off."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import httpx
import pytest
import websocket
from conftest import validated
from servers import ServerThread

from openrealtime.backends.registry import Backends
from openrealtime.cli import parse_settings
from openrealtime.config import Settings
from openrealtime.server.app import create_app
from openrealtime.server.console import SECRET_TTL_S

# A file fetched from elsewhere: an attribute, a CSS url() or a fetch() naming a full URL.
EXTERNAL = re.compile(r"""(?:src|href|url\(|fetch\()\s*=?\s*["'`]?\s*(?:https?:)?//""")


@pytest.fixture(scope="module")
def no_console(settings: Settings, backends: Backends) -> Iterator[ServerThread]:
    quiet = settings.model_copy(update={"console": False})
    with ServerThread(create_app(quiet, backends)) as thread:
        yield thread


def test_the_page_and_its_files_are_served_from_the_package(server: ServerThread) -> None:
    page = httpx.get(server.url + "/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    # Everything comes from this origin: no CDN, no inline script.
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert '<script src="/console/console.js"' in page.text
    assert '<link rel="stylesheet" href="/console/console.css"' in page.text
    assert not EXTERNAL.search(page.text)
    for name, kind in [("console.js", "text/javascript"), ("console.css", "text/css")]:
        asset = httpx.get(f"{server.url}/console/{name}")
        assert asset.status_code == 200
        assert asset.headers["content-type"].startswith(kind)
        assert not EXTERNAL.search(asset.text)
    missing = httpx.get(server.url + "/console/secrets.txt")
    assert missing.status_code == 404


def test_session_mints_a_secret_that_opens_the_configured_session(server: ServerThread) -> None:
    minted = httpx.post(
        server.url + "/console/session",
        json={"instructions": "Speak like a pirate.", "voice": "coral"},
        headers={"Origin": server.url},
    )
    assert minted.status_code == 200, minted.text
    assert minted.headers["cache-control"] == "no-store"
    body = minted.json()
    assert body["value"].startswith("ek_")
    assert body["session"]["instructions"] == "Speak like a pirate."
    assert body["session"]["audio"]["output"]["voice"] == "coral"
    assert 0 < body["expires_at"] - time.time() <= SECRET_TTL_S + 1

    # No key from the browser: the secret alone opens a session, configured as minted.
    ws = websocket.create_connection(
        f"ws://127.0.0.1:{server.port}/v1/realtime",
        header=[f"Authorization: Bearer {body['value']}"],
        timeout=10,
    )
    try:
        created = validated(ws.recv())
    finally:
        ws.close()
    assert created.type == "session.created"
    assert created.session.instructions == "Speak like a pirate."
    assert created.session.audio.output.voice == "coral"


def test_session_defaults_without_a_body(server: ServerThread) -> None:
    minted = httpx.post(server.url + "/console/session")
    assert minted.status_code == 200, minted.text
    assert minted.json()["session"]["audio"]["output"]["voice"] == "alloy"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"voice": "nobody"}, "voice"),
        ({"voice": 7}, "voice"),
        ({"instructions": "x" * 20_001}, "instructions"),
        ({"temperature": 2}, "temperature"),
    ],
    ids=["unknown_voice", "voice_not_a_string", "instructions_too_long", "unknown_field"],
)
def test_session_refuses_bad_input_with_an_openai_error(
    server: ServerThread, body: dict[str, object], param: str
) -> None:
    refused = httpx.post(server.url + "/console/session", json=body)
    assert refused.status_code == 400
    error = refused.json()["error"]
    assert error["param"] == param
    assert error["message"]


def test_session_refuses_a_body_that_is_not_a_json_object(server: ServerThread) -> None:
    for raw in (b"{not json", b"[1, 2]"):
        refused = httpx.post(
            server.url + "/console/session",
            content=raw,
            headers={"Content-Type": "application/json"},
        )
        assert refused.status_code == 400
        assert refused.json()["error"]["message"]


def test_session_refuses_pages_from_other_origins(server: ServerThread) -> None:
    refused = httpx.post(
        server.url + "/console/session",
        json={"voice": "alloy"},
        headers={"Origin": "https://evil.example"},
    )
    assert refused.status_code == 403
    assert "another origin" in refused.json()["error"]["message"]


def test_console_off_removes_both_routes(no_console: ServerThread) -> None:
    assert httpx.get(no_console.url + "/").status_code == 404
    assert httpx.get(no_console.url + "/console/console.js").status_code == 404
    assert httpx.post(no_console.url + "/console/session", json={}).status_code == 404
    assert httpx.get(no_console.url + "/healthz").status_code == 200


def test_console_setting_from_flag_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENREALTIME_CONSOLE", raising=False)
    assert parse_settings(["serve"]).console is True
    assert parse_settings(["serve", "--no-console"]).console is False
    monkeypatch.setenv("OPENREALTIME_CONSOLE", "false")
    assert parse_settings(["serve"]).console is False


def test_translation_mode_mints_a_translation_secret(server: ServerThread) -> None:
    minted = httpx.post(
        server.url + "/console/session",
        json={"mode": "translation", "language": "de"},
        headers={"Origin": server.url},
    )
    assert minted.status_code == 200, minted.text
    session = minted.json()["session"]
    assert session["type"] == "translation"
    assert session["audio"]["output"]["language"] == "de"
    assert session["audio"]["input"]["transcription"] is not None  # the page's source pane
    unknown = httpx.post(
        server.url + "/console/session",
        json={"mode": "translation", "language": "klingon"},
        headers={"Origin": server.url},
    )
    assert unknown.status_code == 400
    assert unknown.json()["error"]["param"] == "language"
