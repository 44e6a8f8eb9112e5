"""The translation route, `/v1/realtime/translations?model=…`: authentication and admission as
for `/v1/realtime`, then a translation session (runtime/translation.py) on the socket."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request, WebSocket
from fastapi.responses import JSONResponse
from pydantic import Field, ValidationError

from ..core.translation import TranslationSession
from ..ids import new_id
from ..logs import bind_ids
from ..protocol.base import WireModel
from ..protocol.errors import ProtocolError, from_validation_error
from ..protocol.translation import SessionCreateRequest
from ..transports.ending import Ending
from .auth import Authenticator, AuthError, bearer_token
from .client_secrets import ExpiresAfter, check_minter, json_object
from .errors import Refused, invalid_request, openai_error
from .lifecycle import Lifecycle, NotAdmitted
from .secrets import new_secret

NO_STORE = {"Cache-Control": "no-store"}  # a credential: no cache may keep it


class TranslationSecretRequest(WireModel):
    session: SessionCreateRequest
    expires_after: ExpiresAfter = Field(default_factory=ExpiresAfter)


DEFAULT_MODEL = "gpt-realtime-translate"


def translations_router(auth: Authenticator, lifecycle: Lifecycle) -> APIRouter:
    router = APIRouter()

    @router.websocket("/v1/realtime/translations")
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
            minted = principal.session or {}
            if minted.get("type") != "translation":
                minted = {}  # a voice session's secret: its settings are not a translation's
            model = str(minted.get("model") or websocket.query_params.get("model") or DEFAULT_MODEL)
            expires_at = int(time.time() + lifecycle.settings.max_session_minutes * 60)
            session = TranslationSession(new_id("sess"), model, expires_at)
            if minted:  # the secret's settings, validated when it was minted
                audio = SessionCreateRequest.model_validate(
                    {"model": model, "audio": minted.get("audio")}
                )
                session.update(audio)
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

    @router.post("/v1/realtime/translations/client_secrets")
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

    return router
