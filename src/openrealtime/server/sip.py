"""SIP calls, taken the way OpenAI takes them (`--sip-port`; docs/operations.md):

1. An INVITE comes in (UDP or TCP): `100 Trying`, `180 Ringing`, and the signed
   `realtime.call.incoming` webhook goes to `--sip-webhook-url`, with the INVITE's headers.
2. The operator answers with the official SDK, against this server:
   - `POST /v1/realtime/calls/{call_id}/accept` with a session configuration (as `/calls`
     takes it): `200 OK` with the SDP to the caller, and a session on the call;
   - `/reject` with `status_code` (603 when none);
   - `/refer` with `target_uri`: a REFER on the answered call;
   - `/hangup` (server/calls.py, as for WebRTC calls): BYE.
   Unknown call ids: 404.
3. Unanswered after `--sip-ring-timeout` seconds: 480, never ringing forever. A webhook that
   cannot be delivered: 480 at once.
4. An answered call is a transport like a WebRTC call (transports/sip.py): the same driver, the
   same call registry, so sideband WebSockets and hang-ups find it, across instances too.

A ringing call lives in the instance that took the INVITE: its accept must reach that one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response

from ..config import Settings
from ..ids import new_id
from ..logs import bind_ids
from ..protocol import errors
from ..runtime.driver import SessionDriver
from .auth import Authenticator
from .calls import authenticate_call, configure_call, run_call
from .errors import Refused, openai_error
from .lifecycle import Lifecycle, NotAdmitted
from .registry import Call, CallRegistry
from .routing import Routes
from .sessions import new_session
from .webhooks import call_incoming, signed_request

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 256 * 1024
WEBHOOK_TIMEOUT_S = 10.0
RING_OUT_STATUS = 480  # Temporarily Unavailable
DEFAULT_REJECT_STATUS = 603  # Decline, as OpenAI's


@dataclass(eq=False)
class Ringing:
    id: str
    invite: Any  # transports.sip_stack.SipInvite (aiosipua loads with the listener)
    ring_out: asyncio.TimerHandle


def sip_routes(settings: Settings, auth: Authenticator, registry: CallRegistry) -> Routes:
    ringing: dict[str, Ringing] = {}
    deliveries: set[asyncio.Task[None]] = set()
    http: list[aiohttp.ClientSession] = []

    def stop_ringing(call_id: str) -> Ringing | None:
        call = ringing.pop(call_id, None)
        if call is not None:
            call.ring_out.cancel()
        return call

    def on_invite(invite: Any) -> None:
        call_id = new_id("rtc")
        loop = asyncio.get_running_loop()
        invite.ringing()
        ring_out = loop.call_later(settings.sip_ring_timeout, refuse, call_id, RING_OUT_STATUS)
        ringing[call_id] = Ringing(call_id, invite, ring_out)
        invite.on_end = lambda: stop_ringing(call_id)  # CANCEL while ringing
        log.info("SIP call %s ringing (Call-ID %s)", call_id, invite.sip_call_id)
        task = loop.create_task(deliver(call_id, invite.headers), name=f"{call_id} webhook")
        deliveries.add(task)
        task.add_done_callback(deliveries.discard)

    def refuse(call_id: str, status: int) -> None:
        call = stop_ringing(call_id)
        if call is not None:
            log.info("SIP call %s refused with %d", call_id, status)
            call.invite.reject(status)

    async def deliver(call_id: str, headers: list[dict[str, str]]) -> None:
        url = settings.sip_webhook_url
        assert url is not None  # Settings.check
        wanted = {name.lower() for name in settings.sip_webhook_headers}
        if wanted:
            headers = [h for h in headers if h["name"].lower() in wanted]
        body, request_headers = signed_request(
            call_incoming(call_id, headers, time.time()), settings.webhook_secret
        )
        try:
            async with http[0].post(url, data=body, headers=request_headers) as answer:
                if answer.status >= 300:
                    raise ValueError(f"HTTP {answer.status}")
        except Exception as exc:
            log.warning("SIP call %s: the webhook to %s failed: %s", call_id, url, exc)
            refuse(call_id, RING_OUT_STATUS)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        from ..transports.sip_stack import SipListener

        assert settings.sip_port is not None
        listener = SipListener(
            settings.host,
            settings.sip_port,
            on_invite,
            public_address=settings.sip_public_address,
            rtp_ports=settings.rtp_port_range,
        )
        http.append(aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=WEBHOOK_TIMEOUT_S)))
        await listener.start()
        if settings.webhook_secret is None:
            log.warning("SIP webhooks go unsigned: give --webhook-secret whsec_...")
        try:
            yield
        finally:
            for call_id in list(ringing):
                refuse(call_id, 503)
            # Answered calls end (BYE) while the listener can still send; the calls routes'
            # shutdown, which would end them too, comes after this one's.
            answered = [c for c in await registry.all() if isinstance(c.peer, _sip_peer())]
            await asyncio.gather(*(call.end() for call in answered))
            for task in list(deliveries):
                task.cancel()
            await asyncio.gather(*deliveries, return_exceptions=True)
            await listener.stop()
            await http.pop().close()

    routes = Routes(lifespan=lifespan)

    @routes.post("/v1/realtime/calls/{call_id}/accept")
    async def accept(request: Request) -> Response:
        call_id: str = request.path_params["call_id"]
        try:
            principal = await authenticate_call(auth, request)
            body = await _body(request)
            if call_id not in ringing:
                return _not_found(call_id)
            config = configure_call(principal, body or b"{}", None, request)
            lifecycle: Lifecycle = request.app.state.lifecycle
            slot = await lifecycle.admit(principal)
        except (Refused, NotAdmitted) as refused:
            return refused.response
        call = stop_ringing(call_id)
        if call is None:  # rang out, or the caller gave up, meanwhile
            await slot.release()
            return _not_found(call_id)
        try:
            backends = request.app.state.backends
            session = new_session(config, backends, playback=True)
            bind_ids(session_id=session.id, call_id=call_id)
            driver = SessionDriver(
                session, backends, metrics=request.app.state.metrics, transport="sip"
            )
            from ..transports.sip import SipPeer

            try:
                link = await call.invite.accept()
            except ValueError as exc:
                call.invite.reject(488)  # Not Acceptable Here
                await slot.release()
                return openai_error(
                    400, f"The call could not be answered: {exc}", errors.INVALID_VALUE
                )
            peer = SipPeer(driver, call.invite, link, name=call_id)
            live = Call(call_id, principal.token, peer)
            await registry.add(live)
            live.task = asyncio.get_running_loop().create_task(
                run_call(live, registry, lifecycle, slot), name=f"{call_id} call"
            )
        except BaseException:
            await slot.release()
            raise
        log.info("SIP call %s answered", call_id)
        return Response(status_code=200)

    @routes.post("/v1/realtime/calls/{call_id}/reject")
    async def reject(request: Request) -> Response:
        call_id: str = request.path_params["call_id"]
        try:
            await authenticate_call(auth, request)
            fields = _json(await _body(request))
        except Refused as refused:
            return refused.response
        status = fields.get("status_code", DEFAULT_REJECT_STATUS)
        if not isinstance(status, int) or isinstance(status, bool) or not 400 <= status <= 699:
            return openai_error(
                400,
                "'status_code' must be a SIP final failure status, 400 to 699.",
                errors.INVALID_VALUE,
                "status_code",
            )
        if call_id not in ringing:
            return _not_found(call_id)
        refuse(call_id, status)
        return Response(status_code=200)

    @routes.post("/v1/realtime/calls/{call_id}/refer")
    async def refer(request: Request) -> Response:
        call_id: str = request.path_params["call_id"]
        try:
            await authenticate_call(auth, request)
            fields = _json(await _body(request))
        except Refused as refused:
            return refused.response
        target = fields.get("target_uri")
        if not isinstance(target, str) or not target.strip():
            return openai_error(
                400,
                "'target_uri' is required: the URI for the Refer-To header, such as "
                "'tel:+14155550123' or 'sip:agent@example.com'.",
                errors.MISSING_PARAMETER,
                "target_uri",
            )
        if call_id in ringing:
            return openai_error(
                400,
                f"Call '{call_id}' is still ringing: accept it before transferring it.",
                errors.INVALID_VALUE,
                "call_id",
            )
        live = await registry.get(call_id)
        invite = getattr(live.peer, "invite", None) if live is not None else None
        if invite is None:  # no such call, or a WebRTC one
            return _not_found(call_id)
        invite.refer(target.strip())
        return Response(status_code=200)

    return routes


def _sip_peer() -> type:
    from ..transports.sip import SipPeer

    return SipPeer


def _not_found(call_id: str) -> Response:
    return openai_error(404, f"Call '{call_id}' not found.", "call_not_found", "call_id")


async def _body(request: Request) -> bytes:
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise Refused(
                openai_error(
                    413,
                    f"The request body is larger than {MAX_BODY_BYTES} bytes.",
                    errors.INVALID_VALUE,
                )
            )
    return bytes(body)


def _json(body: bytes) -> dict[str, Any]:
    if not body.strip():
        return {}
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise Refused(
            openai_error(400, f"The body is not valid JSON: {exc}.", errors.INVALID_JSON)
        ) from None
    if not isinstance(data, dict):
        raise Refused(openai_error(400, "The body must be a JSON object.", errors.INVALID_TYPE))
    return data
