"""The translation routes: authentication and admission as for `/v1/realtime`, then a
translation session (runtime/translation.py) on

- a socket, `/v1/realtime/translations?model=…`;
- a WebRTC call, `POST /v1/realtime/translations/calls`, shaped as `/v1/realtime/calls`
  (server/calls.py: `application/sdp`, or `multipart/form-data` with parts `sdp` and
  `session`; `201` with the SDP answer and `Location`), where the `session` part is a
  translation session (`model`, `audio`), applied over a client secret's as a `session.update`.
  The SDK has no `translations.calls`: OpenAI's shape is not known, so this mirrors voice calls.
  `POST /v1/realtime/translations/calls/{call_id}/hangup` ends one. A call also ends when its
  peer goes away, after `session.closed`, at its age limit and at shutdown. Translation calls
  are held by the instance that answered (no sideband, no hang-up through another instance).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import orjson
from pydantic import Field, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.websockets import WebSocket

from ..core.translation import TranslationSession
from ..ids import new_id
from ..logs import bind_ids
from ..protocol import errors
from ..protocol.base import WireModel
from ..protocol.errors import ProtocolError, from_validation_error
from ..protocol.translation import Audio, SessionCreateRequest, SessionUpdateRequest
from ..transports.ending import Ending
from .auth import Authenticator, AuthError, Principal, bearer_token
from .calls import SDP, authenticate_call, read_offer
from .client_secrets import ExpiresAfter, check_minter, json_object
from .errors import Refused, invalid_request, openai_error
from .lifecycle import Lifecycle, NotAdmitted, Slot
from .routing import Routes
from .secrets import new_secret

if TYPE_CHECKING:  # the session code and aiortc load after start, with the first call
    from ..runtime.translation import TranslationDriver
    from ..transports.translation import TranslationCallDriver
    from ..transports.webrtc import WebRtcPeer

log = logging.getLogger(__name__)

NO_STORE = {"Cache-Control": "no-store"}  # a credential: no cache may keep it


class TranslationSecretRequest(WireModel):
    session: SessionCreateRequest
    expires_after: ExpiresAfter = Field(default_factory=ExpiresAfter)


class CallSessionPart(WireModel):
    """A translation call's `session` part."""

    type: Literal["translation"] | None = None
    model: str | None = None
    audio: Audio | None = None


DEFAULT_MODEL = "gpt-realtime-translate"


@dataclass(eq=False)
class TranslationCall:
    id: str
    opener: str  # the key or client secret that opened it: it may hang up
    peer: WebRtcPeer[TranslationCallDriver]
    task: asyncio.Task[None] | None = None

    async def end(self) -> None:
        self.peer.hang_up()
        if self.task is not None:
            await asyncio.shield(self.task)  # a hang-up that goes away must not cut it short


def new_translation_session(
    principal: Principal, model: str | None, lifecycle: Lifecycle
) -> TranslationSession:
    """A session with a translation client secret's settings, if that is the key."""
    minted = principal.session or {}
    if minted.get("type") != "translation":
        minted = {}  # a voice session's secret: its settings are not a translation's
    model = str(minted.get("model") or model or DEFAULT_MODEL)
    expires_at = int(time.time() + lifecycle.settings.max_session_minutes * 60)
    session = TranslationSession(new_id("sess"), model, expires_at)
    if minted:  # the secret's settings, validated when it was minted
        session.update(
            SessionCreateRequest.model_validate({"model": model, "audio": minted.get("audio")})
        )
    return session


def apply_session_part(session: TranslationSession, part: bytes, minted: bool) -> None:
    """A call's `session` part over the session, as a `session.update` (its `model` too, unless
    a client secret chose it); a 400 naming the field it gets wrong."""
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
        requested = CallSessionPart.model_validate(data)
    except ValidationError as exc:
        raise invalid_request(from_validation_error(exc, data, prefix="session")) from None
    if requested.model and not minted:
        session.model = requested.model
    if requested.audio is not None:
        try:
            session.update(SessionUpdateRequest(audio=requested.audio))
        except ProtocolError as error:
            raise invalid_request(error) from None


def translations_routes(auth: Authenticator, lifecycle: Lifecycle) -> Routes:
    calls: dict[str, TranslationCall] = {}

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        # Shutting down: hang up every call, so no peer outlives the server.
        await asyncio.gather(*(call.end() for call in list(calls.values())))

    routes = Routes(lifespan=lifespan)

    @routes.websocket("/v1/realtime/translations")
    async def translations(websocket: WebSocket) -> None:
        headers = {k.lower(): v for k, v in websocket.headers.items()}
        offered = [
            p.strip() for p in headers.get("sec-websocket-protocol", "").split(",") if p.strip()
        ]
        try:
            principal = await auth.authenticate(bearer_token(headers, offered))
        except AuthError as refused:
            await websocket.send_denial_response(openai_error(401, str(refused), "invalid_api_key"))
            return
        try:
            slot = await lifecycle.admit(principal)
        except NotAdmitted as refused:
            await websocket.send_denial_response(refused.response)
            return
        try:
            await websocket.accept(subprotocol="realtime" if "realtime" in offered else None)
            model = websocket.query_params.get("model")
            session = new_translation_session(principal, model, lifecycle)
            bind_ids(session_id=session.id)
            from ..runtime.translation import TranslationDriver  # loaded after start (issue 9)
            from ..transports.translation import run_translation_websocket

            driver = TranslationDriver(session, websocket.app.state.backends)
            ending = Ending()  # the age limit and a shutdown end the session through it
            with lifecycle.live(driver, ending.request):
                await run_translation_websocket(
                    websocket, driver, ending=ending, limits=lifecycle.queue_limits
                )
        finally:
            await slot.release()

    @routes.post("/v1/realtime/translations/calls")
    async def create_call(request: Request) -> Response:
        try:
            principal = await authenticate_call(auth, request)
            offer, part = await read_offer(request)
            session = new_translation_session(
                principal, request.query_params.get("model"), lifecycle
            )
            if part is not None:
                minted = (principal.session or {}).get("type") == "translation"
                apply_session_part(session, part, minted)
            slot = await lifecycle.admit(principal)  # 503 shutting down, 429 a session limit
        except (Refused, NotAdmitted) as refused:
            return refused.response
        try:  # until the call's task holds the slot, it is given back here
            call_id = new_id("rtc")
            bind_ids(session_id=session.id, call_id=call_id)
            # The session code, aiortc and av (~40 MiB) load with the first call, not at start.
            from ..runtime.translation import TranslationDriver
            from ..transports.translation import (
                TranslationCallDialect,
                TranslationCallDriver,
                TranslationMedia,
            )
            from ..transports.webrtc import WebRtcPeer

            driver = TranslationDriver(session, request.app.state.backends)
            peer = WebRtcPeer(
                TranslationCallDriver(driver),
                TranslationMedia(driver),
                TranslationCallDialect(),
                name=call_id,
            )
            try:
                answer = await peer.answer(offer)
            except Exception as exc:  # aiortc raises ValueError and others on a bad offer
                await peer.close()
                await slot.release()
                log.info("translation call offer refused: %r", exc)
                return openai_error(
                    400, f"The SDP offer could not be answered: {exc}", errors.INVALID_VALUE, "sdp"
                )
            call = calls[call_id] = TranslationCall(call_id, principal.token, peer)
            call.task = asyncio.get_running_loop().create_task(
                _run_call(call, driver, calls, slot), name=f"{call_id} translation call"
            )
        except BaseException:
            await slot.release()
            raise
        log.info("translation call %s answered", call_id)
        return Response(
            answer,
            status_code=201,
            media_type=SDP,
            headers={"Location": f"/v1/realtime/translations/calls/{call_id}"},
        )

    @routes.post("/v1/realtime/translations/calls/{call_id}/hangup")
    async def hangup(request: Request) -> Response:
        call_id: str = request.path_params["call_id"]
        try:
            principal = await authenticate_call(auth, request)
        except Refused as refused:
            return refused.response
        call = calls.get(call_id)
        if (
            call is None
            or call.peer.ended
            or (principal.kind != "standard" and principal.token != call.opener)
        ):
            # Someone else's call is not told apart from no call.
            return openai_error(404, f"Call '{call_id}' not found.", "call_not_found", "call_id")
        await call.end()
        return Response(status_code=200)

    async def _run_call(
        call: TranslationCall,
        driver: TranslationDriver,
        calls: dict[str, TranslationCall],
        slot: Slot,
    ) -> None:
        # After `session.closed` the call has nothing left to say: it hangs up once the data
        # channel has sent it.
        closed = asyncio.get_running_loop().create_task(driver.closed.wait())
        closed.add_done_callback(lambda task: None if task.cancelled() else call.peer.hang_up(True))
        try:
            with lifecycle.live(driver, call.peer.close_with):  # age limit, shutdown
                await call.peer.run()
        except Exception:
            log.exception("translation call %s failed", call.id)
        finally:
            closed.cancel()
            calls.pop(call.id, None)
            await slot.release()

    @routes.post("/v1/realtime/translations/client_secrets")
    async def create_client_secret(request: Request) -> JSONResponse:
        try:
            check_minter(request)
            body = await json_object(request)
            try:
                parsed = TranslationSecretRequest.model_validate(body)
            except ValidationError as exc:
                raise invalid_request(from_validation_error(exc, body)) from None
            config = parsed.session
            session = TranslationSession(new_id("sess"), config.model, 0)
            if config.audio is not None:
                try:
                    session.update(config)
                except ProtocolError as error:
                    raise invalid_request(error) from None
        except Refused as refused:
            return refused.response
        stored = {"type": "translation", **session.snapshot()}
        secret = new_secret(stored, parsed.expires_after.seconds, time.time())
        await auth.secrets.put(secret)
        shown = {**session.snapshot(), "expires_at": secret.expires_at}
        return JSONResponse(
            {"value": secret.value, "expires_at": secret.expires_at, "session": shown},
            headers=NO_STORE,
        )

    return routes
