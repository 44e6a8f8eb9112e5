"""Sideband control of a call: `/v1/realtime?call_id=rtc_…`, a WebSocket that attaches to the
session a WebRTC peer owns, so an application server can watch it and steer it (tools,
instructions) while the browser holds the media.

- Only a standard key may attach (a client secret is the browser's credential; it must not
  control other calls, or its own behind the application's back): 401. An unknown or ended
  call: 404. Both refuse the handshake with an HTTP answer, as a wrong key does.
- The socket gets the session's server events, except audio deltas (audio is the peer's),
  and may send any client event. It does not own the session: its going away leaves the
  call up; the call ending closes it (code 1000).
- It is first sent a `session.updated` with the current session. Not `session.created`: that
  was sent once, when the session was created, on the data channel; a second one would tell
  an SDK that a new session began. `session.updated` carries the same full configuration.
"""

from __future__ import annotations

from starlette.websockets import WebSocket

from ..logs import bind_ids
from ..protocol.server_events import AUDIO_DELTA, ServerEvent, session_updated
from ..transports.dialect import Dialect
from .auth import Principal
from .errors import openai_error
from .registry import CallRegistry, RemoteCall


def _not_audio(event: ServerEvent) -> bool:
    return event["type"] != AUDIO_DELTA


async def run_sideband(
    websocket: WebSocket,
    principal: Principal,
    call_id: str,
    registry: CallRegistry,
    dialect: Dialect,
    subprotocol: str | None,
) -> None:
    """Refuse the handshake, or attach to the call until either side goes."""
    if principal.kind != "standard":
        await websocket.send_denial_response(
            openai_error(
                401,
                "A sideband connection (call_id) needs a standard API key; a client secret "
                "cannot control a call. Connect from your server with your API key.",
                "invalid_api_key",
            )
        )
        return
    call = await registry.get(call_id)
    if call is None and (remote := await registry.attach_elsewhere(call_id, websocket)):
        await _run_remote(websocket, call_id, remote, dialect, subprotocol)
        return
    if call is None:
        await websocket.send_denial_response(
            openai_error(
                404,
                f"Call '{call_id}' not found: it has ended or never existed.",
                "call_not_found",
                "call_id",
            )
        )
        return
    bind_ids(session_id=call.driver.session_id, call_id=call_id)
    await websocket.accept(subprotocol=subprotocol)
    with call.sideband(websocket), call.driver.metrics.active("sideband"):
        if call.ended:  # it ended while the handshake completed
            await websocket.close(code=1000, reason="call ended")
            return
        from ..transports.websocket import run_websocket  # loaded after start (issue 9)

        await run_websocket(
            websocket,
            call.driver,
            dialect,
            owner=False,
            event_filter=_not_audio,
            first=session_updated(call.driver.session_wire()),
        )


async def _run_remote(
    websocket: WebSocket,
    call_id: str,
    driver: RemoteCall,
    dialect: Dialect,
    subprotocol: str | None,
) -> None:
    """A call another instance holds, through a stand-in for its driver that relays through
    the shared state (server/redis_calls.py); it closes the socket when the call ends."""
    bind_ids(session_id=driver.session_id, call_id=call_id)
    try:
        await websocket.accept(subprotocol=subprotocol)
        from ..transports.websocket import run_websocket  # loaded after start (issue 9)

        with websocket.app.state.metrics.active("sideband"):
            await run_websocket(
                websocket,
                driver,
                dialect,
                owner=False,
                event_filter=_not_audio,
                first=session_updated(driver.session_wire()),
            )
    finally:
        await driver.aclose()
