"""The translation route, `/v1/realtime/translations?model=…`: authentication and admission as
for `/v1/realtime`, then a translation session (runtime/translation.py) on the socket."""

from __future__ import annotations

import time

from fastapi import APIRouter, WebSocket

from ..core.translation import TranslationSession
from ..ids import new_id
from ..logs import bind_ids
from ..protocol.translation import check_language
from ..runtime.translation import TranslationDriver
from ..transports.ending import Ending
from ..transports.translation import run_translation_websocket
from .auth import Authenticator, AuthError, bearer_token
from .errors import openai_error
from .lifecycle import Lifecycle, NotAdmitted

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
            model = str(minted.get("model") or websocket.query_params.get("model") or DEFAULT_MODEL)
            expires_at = int(time.time() + lifecycle.settings.max_session_minutes * 60)
            session = TranslationSession(new_id("sess"), model, expires_at)
            minted_language = _minted_language(minted)
            if minted_language is not None:
                check_language(minted_language)
                session.language = minted_language.lower()
            bind_ids(session_id=session.id)
            driver = TranslationDriver(session, websocket.app.state.backends)
            await run_translation_websocket(
                websocket, driver, ending=Ending(), limits=lifecycle.queue_limits
            )
        finally:
            await slot.release()

    return router


def _minted_language(minted: dict[str, object]) -> str | None:
    audio = minted.get("audio")
    output = audio.get("output") if isinstance(audio, dict) else None
    language = output.get("language") if isinstance(output, dict) else None
    return language if isinstance(language, str) else None
