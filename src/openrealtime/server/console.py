"""The console: a page at `/` for talking to the server from a browser over WebRTC.

- `GET /` serves the page; its script and style sheet are under `/console/`.
- `POST /console/session` (`{instructions?, voice?}`) mints a short-lived client secret with
  the server's own authority and answers `{value, expires_at, session}`, the shape of
  `POST /v1/realtime/client_secrets`. `{mode: "translation", language}` mints a translation
  session's (input transcript on, speech translated into `language`), for the page's
  translation mode, which calls `/v1/realtime/translations/calls`. The browser sends no key: the console is the operator's,
  so anyone who can reach the server can use it. `--no-console` (`OPENREALTIME_CONSOLE=false`)
  removes every route here.

A request from another origin is refused, so a page elsewhere cannot drive the console from a
visitor's browser. Everything the page needs is in `static/`: no CDN, no build step.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import orjson
from pydantic import Field, ValidationError
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response

from ..config import Settings
from ..core.translation import TranslationSession
from ..ids import new_id
from ..protocol import errors
from ..protocol import translation as wire
from ..protocol.base import WireModel
from ..protocol.errors import ProtocolError, from_validation_error
from ..protocol.session import (
    DEFAULT_INSTRUCTIONS,
    OPENAI_VOICES,
    READ_ONLY_FIELDS,
    RealtimeSession,
)
from .errors import openai_error
from .routing import Routes
from .secrets import new_secret

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
# Long enough to set up a call; the secret is checked only when the call starts.
SECRET_TTL_S = 60
MAX_INSTRUCTIONS = 20_000

_ASSETS = {
    "console.js": "text/javascript; charset=utf-8",
    "console.css": "text/css; charset=utf-8",
}
# Only the page's own files; the microphone, this origin's endpoints, and nothing else.
_PAGE_HEADERS = {
    "Cache-Control": "no-cache",
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; media-src 'self' blob: mediastream:; frame-ancestors 'none'; "
        "base-uri 'none'; form-action 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


class ConsoleSessionRequest(WireModel):
    mode: Literal["voice", "translation"] = "voice"
    instructions: str = Field(DEFAULT_INSTRUCTIONS, max_length=MAX_INSTRUCTIONS)
    voice: str = "alloy"
    language: str = wire.DEFAULT_LANGUAGE  # translation: the language to translate into


def routes(settings: Settings) -> Routes:
    """The console's routes, or none when the settings turn it off."""
    routes = Routes()
    if not settings.console:
        return routes

    @routes.get("/")
    async def page(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", media_type="text/html", headers=_PAGE_HEADERS)

    @routes.get("/console/{name}")
    async def asset(request: Request) -> Response:
        name: str = request.path_params["name"]
        media_type = _ASSETS.get(name)
        if media_type is None:
            return openai_error(404, f"No console file {name!r}.", "not_found")
        return FileResponse(STATIC / name, media_type=media_type, headers=_PAGE_HEADERS)

    @routes.post("/console/session")
    async def mint(request: Request) -> JSONResponse:
        if not _same_origin(request):
            return openai_error(
                403,
                "The console mints secrets only for pages it served itself; this request came "
                "from another origin.",
                "forbidden",
            )
        try:
            body = orjson.loads(await request.body() or b"{}")
        except orjson.JSONDecodeError as exc:
            return openai_error(400, f"The body is not valid JSON: {exc}.", errors.INVALID_JSON)
        if not isinstance(body, dict):
            return openai_error(400, "The body must be a JSON object.", errors.INVALID_TYPE)
        try:
            asked = ConsoleSessionRequest.model_validate(body)
        except ValidationError as exc:
            error = from_validation_error(exc, body)
            return openai_error(400, error.message, error.code, error.param)
        if asked.mode == "translation":
            return await _mint_translation(request, asked.language)
        if asked.voice not in OPENAI_VOICES or (
            request.app.state.backends.tts.resolve_voice(asked.voice) is None
        ):
            return openai_error(
                400,
                f"Invalid value: {asked.voice!r}. Supported values are: "
                + ", ".join(f"'{v}'" for v in OPENAI_VOICES)
                + ".",
                errors.INVALID_VALUE,
                "voice",
            )
        config = RealtimeSession.model_validate(
            {
                "instructions": asked.instructions,
                "audio": {"output": {"voice": asked.voice}},
            }
        )
        stored: dict[str, Any] = config.model_dump(mode="json", exclude=set(READ_ONLY_FIELDS))
        secret = new_secret(stored, SECRET_TTL_S, time.time())
        await request.app.state.auth.secrets.put(secret)
        log.info("console: minted a client secret (voice=%s)", asked.voice)
        return JSONResponse(
            {"value": secret.value, "expires_at": secret.expires_at, "session": stored},
            headers={"Cache-Control": "no-store"},
        )

    return routes


async def _mint_translation(request: Request, language: str) -> JSONResponse:
    """A translation session's secret: the input transcript on (the page's source pane), the
    speech translated into `language`."""
    session = TranslationSession(new_id("sess"), "gpt-realtime-translate", 0)
    try:
        wire.check_language(language)
        session.update(
            wire.SessionUpdateRequest.model_validate(
                {
                    "audio": {
                        "input": {"transcription": {"model": "whisper-1"}},
                        "output": {"language": language},
                    }
                }
            )
        )
    except ProtocolError as error:
        return openai_error(400, error.message, error.code, "language")
    stored = {"type": "translation", **session.snapshot()}
    secret = new_secret(stored, SECRET_TTL_S, time.time())
    await request.app.state.auth.secrets.put(secret)
    log.info("console: minted a translation client secret (language=%s)", language)
    return JSONResponse(
        {"value": secret.value, "expires_at": secret.expires_at, "session": stored},
        headers={"Cache-Control": "no-store"},
    )


def _same_origin(request: Request) -> bool:
    """A browser names the page's origin on a cross-origin POST; without one (curl, a
    same-origin request from an older browser) there is no page to distrust."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    # Behind a reverse proxy that rewrites Host, the forwarded host names the page's origin.
    hosts = {request.headers.get("host", ""), request.headers.get("x-forwarded-host", "")}
    return urlsplit(origin).netloc.lower() in {h.lower() for h in hosts if h}
