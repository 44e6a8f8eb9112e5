"""WebRTC calls: `POST /v1/realtime/calls` (an SDP offer in, the answer out) and hang-up. Live
calls are kept in the registry (server/registry.py) that sideband WebSockets attach through.

- The offer comes as `application/sdp`, or as `multipart/form-data` with parts `sdp` and
  `session` (OpenAI's unified interface; a GA session configuration, validated as
  `session.update`'s would be). A client secret's minted session applies; a `session` part
  sent with a client secret is applied over it, as a `session.update` would be.
- The answer is `201` with the SDP and `Location: /v1/realtime/calls/{call_id}`.
- `POST /v1/realtime/calls/{call_id}/hangup`: a standard key, or the client secret that opened
  the call. Unknown, ended, or not the caller's: 404.
- A call ends by hang-up, by its peer going away, or at shutdown; then it leaves the registry
  and its sideband sockets are closed (code 1000).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from email import policy
from email.parser import BytesParser
from typing import Any

import orjson
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response

from ..core.configuration import check_voice
from ..ids import new_id
from ..logs import bind_ids
from ..protocol import errors
from ..protocol.errors import ProtocolError, from_validation_error
from ..protocol.session import (
    READ_ONLY_FIELDS,
    RealtimeSession,
    TranscriptionSession,
    merge_session_update,
)
from .auth import Authenticator, AuthError, Principal, bearer_token
from .errors import Refused, invalid_request, openai_error
from .lifecycle import Lifecycle, NotAdmitted, Slot
from .registry import Call, CallRegistry
from .routing import Routes
from .sessions import new_session, session_config

log = logging.getLogger(__name__)

MAX_OFFER_BYTES = 256 * 1024  # an SDP offer is a few kB; the session part, a few more
SDP = "application/sdp"
HOW_TO_SEND = "Send the SDP offer as application/sdp, or as multipart/form-data with a part 'sdp' and optionally a part 'session'."


def calls_routes(auth: Authenticator, registry: CallRegistry) -> Routes:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        # Shutting down: hang up every call, so no peer outlives the server.
        await asyncio.gather(*(call.end() for call in await registry.all()))

    routes = Routes(lifespan=lifespan)

    @routes.post("/v1/realtime/calls")
    async def create_call(request: Request) -> Response:
        try:
            principal = await authenticate_call(auth, request)
            offer, session_part = await read_offer(request)
            model = request.query_params.get("model")
            config = configure_call(principal, session_part, model, request)
            lifecycle: Lifecycle = request.app.state.lifecycle
            slot = await lifecycle.admit(principal)  # 503 shutting down, 429 a session limit
        except (Refused, NotAdmitted) as refused:
            return refused.response
        try:  # until the call's task holds the slot, it is given back here
            backends = request.app.state.backends
            session = new_session(config, backends, playback=True)
            call_id = new_id("rtc")
            # This request's task, and what it starts: aiortc's tasks, the call's own, and
            # (bound before the driver is made) the driver's.
            bind_ids(session_id=session.id, call_id=call_id)
            from ..runtime.driver import SessionDriver  # loaded after start (issue 9)

            driver = SessionDriver(
                session, backends, metrics=request.app.state.metrics, transport="webrtc"
            )
            # aiortc and av (~40 MiB) load with the first call, not at start.
            from ..transports.webrtc import VoiceMedia, WebRtcPeer

            peer = WebRtcPeer(driver, VoiceMedia(driver), name=call_id)
            try:
                answer = await peer.answer(offer)
            except Exception as exc:  # aiortc raises ValueError and others on a bad offer
                await peer.close()
                await slot.release()
                log.info("call offer refused: %r", exc)
                return openai_error(
                    400, f"The SDP offer could not be answered: {exc}", errors.INVALID_VALUE, "sdp"
                )
            call = Call(call_id, principal.token, peer)
            await registry.add(call)
            call.task = asyncio.get_running_loop().create_task(
                run_call(call, registry, lifecycle, slot), name=f"{call_id} call"
            )
        except BaseException:
            await slot.release()
            raise
        log.info("call %s answered", call_id)
        return Response(
            answer,
            status_code=201,
            media_type=SDP,
            headers={"Location": f"/v1/realtime/calls/{call_id}"},
        )

    @routes.post("/v1/realtime/calls/{call_id}/hangup")
    async def hangup(request: Request) -> Response:
        call_id: str = request.path_params["call_id"]
        try:
            principal = await authenticate_call(auth, request)
        except Refused as refused:
            return refused.response
        call = await registry.get(call_id)
        if call is None and await registry.hang_up_elsewhere(call_id, principal):
            return Response(status_code=200)
        if call is None or (principal.kind != "standard" and principal.token != call.opener):
            # Someone else's call is not told apart from no call.
            return openai_error(404, f"Call '{call_id}' not found.", "call_not_found", "call_id")
        await call.end()
        return Response(status_code=200)

    return routes


async def run_call(call: Call, registry: CallRegistry, lifecycle: Lifecycle, slot: Slot) -> None:
    try:
        with lifecycle.live(call.driver, call.peer.close_with):  # age limit, shutdown
            await call.peer.run()
    except Exception:
        log.exception("call %s failed", call.id)
    finally:
        await registry.remove(call.id)
        await call.close_sidebands()
        await slot.release()


async def authenticate_call(auth: Authenticator, request: Request) -> Principal:
    try:
        return await auth.authenticate(bearer_token(dict(request.headers)))
    except AuthError as refused:
        raise Refused(openai_error(401, str(refused), "invalid_api_key")) from None


async def read_offer(request: Request) -> tuple[str, bytes | None]:
    """The SDP offer, and the raw `session` part if there is one."""
    content_type = request.headers.get("content-type", "")
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type not in (SDP, "multipart/form-data"):
        raise Refused(
            openai_error(
                400,
                f"Unsupported Content-Type '{media_type or 'none'}'. {HOW_TO_SEND}",
                errors.INVALID_VALUE,
            )
        )
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_OFFER_BYTES:
            raise Refused(
                openai_error(
                    413,
                    f"The request body is larger than {MAX_OFFER_BYTES} bytes.",
                    errors.INVALID_VALUE,
                )
            )
    if media_type == SDP:
        sdp, session = bytes(body), None
    else:
        parts = _multipart(content_type, bytes(body))
        sdp, session = parts.get("sdp", b""), parts.get("session")
    try:
        offer = sdp.decode()
    except UnicodeDecodeError:
        offer = ""
    if not offer.lstrip().startswith("v=0"):
        raise Refused(
            openai_error(
                400,
                f"The SDP offer is missing or is not SDP (it starts with 'v=0'). {HOW_TO_SEND}",
                errors.MISSING_PARAMETER if not offer else errors.INVALID_VALUE,
                "sdp",
            )
        )
    return offer, session


def _multipart(content_type: str, body: bytes) -> dict[str, bytes]:
    """The parts of a multipart/form-data body by name (the standard library's MIME parser:
    an SDP and a JSON object need nothing more)."""
    message = BytesParser(policy=policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body
    )
    parts: dict[str, bytes] = {}
    if not message.is_multipart():
        return parts
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        if isinstance(name, str) and isinstance(payload, bytes):
            parts.setdefault(name, payload)
    return parts


def configure_call(
    principal: Principal, part: bytes | None, model: str | None, request: Request
) -> RealtimeSession | TranscriptionSession:
    """The call's session: a client secret's minted one (with the `session` part applied over
    it, as a `session.update`), else the `session` part, else the defaults."""
    base = session_config(principal, False, model)
    if part is None:
        return base
    try:
        data: Any = orjson.loads(part)
    except orjson.JSONDecodeError as exc:
        raise invalid_request(
            ProtocolError(f"The 'session' part is not valid JSON: {exc}.", errors.INVALID_JSON)
        ) from None
    if not isinstance(data, dict):
        raise invalid_request(
            ProtocolError("The 'session' part must be a JSON object.", errors.INVALID_TYPE)
        )
    try:
        requested = RealtimeSession.model_validate(data)
    except ValidationError as exc:
        raise invalid_request(from_validation_error(exc, data, prefix="session")) from None
    if principal.session is None:
        if "model" not in requested.model_fields_set and model:
            requested.model = model
        config: RealtimeSession | TranscriptionSession = requested
    else:
        if not isinstance(base, RealtimeSession):
            raise invalid_request(
                ProtocolError(
                    "This client secret was minted for a transcription session; a 'session' "
                    "part of type 'realtime' cannot apply to it. Send the offer without it.",
                    errors.INVALID_VALUE,
                    "session.type",
                )
            )
        update = requested.model_dump(mode="json", exclude_unset=True)
        for name in READ_ONLY_FIELDS:
            update.pop(name, None)
        config = RealtimeSession.model_validate(
            merge_session_update(base.model_dump(mode="json"), update)
        )
    if isinstance(config, RealtimeSession):
        tts = request.app.state.backends.tts
        try:
            check_voice(
                config.audio.output.voice,
                "session.audio.output.voice",
                lambda v: tts.resolve_voice(v) is not None,
            )
        except ProtocolError as error:
            raise invalid_request(error) from None
    return config
