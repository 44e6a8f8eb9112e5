"""A browser app on another origin, in real Chromium: the page is served by a second loopback
server (another port, so another origin) and talks to openrealtime the way the Agents SDK's
WebRTC transport does (`OpenAIRealtimeWebRTC`, packages/agents-realtime/src/
openaiRealtimeWebRtc.ts in openai-agents-js): an `oai-events` data channel, the microphone
(Chromium's fake one), then `POST {baseUrl}` with the SDP offer as `application/sdp`, the
`ek_` client secret as bearer and the SDK's `X-OpenAI-Agents-SDK` header; the call id from
`Location`. It also opens the WebSocket as a browser can (the key in a subprotocol).

The page mints nothing: the test mints the client secret with the standard key, as the app's
own backend would, and hands it over.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from conftest import API_KEY
from servers import ServerThread
from starlette.applications import Starlette
from starlette.responses import HTMLResponse
from starlette.routing import Route
from test_console_browser import CHROMIUM, CHROMIUM_FLAGS

from openrealtime.backends.registry import Backends
from openrealtime.config import Settings
from openrealtime.server.app import create_app

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="needs Chromium at /usr/bin/chromium (apt-get install chromium)"
)

# What the SDK does in `connect()`, step by step; resolves when `session.created` arrives on
# the data channel, or with the error that stopped it.
PAGE = """<!doctype html><title>an app on its own origin</title><script>
window.callLikeTheAgentsSdk = async (baseUrl, apiKey) => {
  const result = { events: [], callId: null, error: null };
  const pc = new RTCPeerConnection();
  try {
    const dataChannel = pc.createDataChannel("oai-events");
    const created = new Promise((resolve) => {
      dataChannel.addEventListener("message", (message) => {
        const event = JSON.parse(message.data);
        result.events.push(event.type);
        if (event.type === "session.created") resolve();
      });
    });
    dataChannel.addEventListener("open", () => dataChannel.send(JSON.stringify(
      { type: "session.update", session: { type: "realtime", instructions: "Be brief." } })));
    const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    pc.addTrack(stream.getAudioTracks()[0]);
    const offer = await pc.createOffer();
    await pc.setLocalDescription(offer);
    const sdpResponse = await fetch(new URL(baseUrl), {
      method: "POST",
      body: offer.sdp,
      headers: {
        "Content-Type": "application/sdp",
        Authorization: `Bearer ${apiKey}`,
        "X-OpenAI-Agents-SDK": "openai-agents-sdk.0.1.0",
      },
    });
    if (!sdpResponse.ok) throw new Error(`HTTP ${sdpResponse.status}`);
    result.callId = sdpResponse.headers?.get("Location")?.split("/").pop();
    await pc.setRemoteDescription({ type: "answer", sdp: await sdpResponse.text() });
    await Promise.race([created, new Promise((_, no) => setTimeout(() => no(new Error("timeout")), 20000))]);
  } catch (error) {
    result.error = String(error);
  } finally {
    pc.close();
  }
  return result;
};
window.openSocket = (url, apiKey) => new Promise((resolve) => {
  const ws = new WebSocket(url, ["realtime", `openai-insecure-api-key.${apiKey}`]);
  ws.onmessage = (message) => { resolve({ first: JSON.parse(message.data).type }); ws.close(); };
  ws.onclose = (closed) => resolve({ closed: closed.code });
});
</script>"""


@pytest.fixture(scope="module")
def app_page() -> Iterator[ServerThread]:
    """The app's own origin: one page, nothing else."""
    page = Starlette(routes=[Route("/", lambda request: HTMLResponse(PAGE))])
    with ServerThread(page) as thread:
        yield thread


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("profile")),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_FLAGS,
        )
        try:
            yield context
        finally:
            context.close()


@contextmanager
def _serve(settings: Settings, backends: Backends, origins: list[str]) -> Iterator[Any]:
    """openrealtime letting these origins in; yields its server thread and its app."""
    app = create_app(settings.model_copy(update={"cors_allow_origins": origins}), backends)
    with ServerThread(app) as thread:
        yield thread, app


def _mint(server: ServerThread) -> str:
    minted = httpx.post(
        server.url + "/v1/realtime/client_secrets",
        json={"session": {"type": "realtime"}},
        headers={"Authorization": f"Bearer {API_KEY}"},
    )
    assert minted.status_code == 200, minted.text
    secret: str = minted.json()["value"]
    assert secret.startswith("ek_")
    return secret


def _from_the_page(browser: Any, app_page: ServerThread, server: ServerThread) -> dict[str, Any]:
    page = browser.new_page()
    try:
        page.goto(app_page.url + "/")
        assert app_page.url != server.url  # another port: another origin
        call = page.evaluate(
            "([url, key]) => callLikeTheAgentsSdk(url, key)",
            [server.url + "/v1/realtime/calls", _mint(server)],
        )
        ws_url = server.url.replace("http", "ws", 1) + "/v1/realtime?model=gpt-realtime"
        socket = page.evaluate("([url, key]) => openSocket(url, key)", [ws_url, _mint(server)])
        return {"call": call, "socket": socket}
    finally:
        page.close()


def test_an_app_on_another_origin_calls_like_the_agents_sdk(
    settings: Settings, backends: Backends, app_page: ServerThread, browser: Any
) -> None:
    with _serve(settings, backends, ["*"]) as (server, _):  # the default
        seen = _from_the_page(browser, app_page, server)
    call = seen["call"]
    assert call["error"] is None, call
    assert call["callId"] and call["callId"].startswith("rtc_"), call
    assert call["events"][0] == "session.created", call
    assert seen["socket"] == {"first": "session.created"}


def test_an_origin_the_operator_did_not_allow_is_blocked(
    settings: Settings, backends: Backends, app_page: ServerThread, browser: Any
) -> None:
    with _serve(settings, backends, ["https://app.example.test"]) as (server, app):
        seen = _from_the_page(browser, app_page, server)
        assert not app.state.calls._calls and app.state.limiter.active == 0
    call = seen["call"]
    # The preflight was refused, so the browser never sent the offer.
    assert call["error"] == "TypeError: Failed to fetch", call
    assert call["callId"] is None and call["events"] == []
    assert seen["socket"] == {"closed": 1006}  # the handshake got a 403
