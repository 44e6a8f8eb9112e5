"""The FastAPI application: routes, authentication, and the shared backends."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import JSONResponse

from .. import __version__
from ..backends.registry import Backends, create_backends
from ..config import Settings
from ..logs import bind_ids
from ..transports.abort import ConnectionAbort
from ..transports.dialect import choose_dialect
from ..transports.ending import Ending
from .auth import Authenticator, AuthError, bearer_token
from .calls import calls_router
from .client_secrets import router as client_secrets_router
from .console import router as console_router
from .cors import CrossOrigin
from .errors import openai_error
from .lifecycle import Lifecycle, ModelWarmup, NotAdmitted
from .observability import observe
from .sessions import new_session, session_config
from .shared import create_shared_state
from .sideband import run_sideband
from .translations import translations_router

log = logging.getLogger("openrealtime")


class RefusedHandshakeFilter(logging.Filter):
    """uvicorn's websockets-sansio backend logs an ERROR for every handshake the app refuses
    with an HTTP answer (a wrong key): that is not an error, and it would page operators."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "returned without completing handshake" not in record.getMessage()


_handshake_filter = RefusedHandshakeFilter()


def create_app(settings: Settings, backends: Backends | None = None) -> FastAPI:
    """`backends` may be given (tests, embedding); otherwise they are built from `settings`."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.backends = backends or create_backends(settings)
        warmup = app.state.warmup = ModelWarmup(app.state.backends)  # sessions wait for it
        announce(settings, app.state.backends)
        # The LLM's reachability is only a warning: /healthz does not wait for it (a slow or
        # far endpoint took up to its 3 s timeout off the start, issue 9).
        check = asyncio.get_running_loop().create_task(
            check_llm(settings, app.state.backends, warmup)
        )
        app.state.ready = True
        try:
            yield
        finally:
            check.cancel()
            await warmup.finished()
            from ..runtime.vad_scheduler import close_scheduler

            await close_scheduler()
            if backends is None:
                await app.state.backends.aclose()

    logging.getLogger("uvicorn.error").addFilter(_handshake_filter)  # idempotent
    # No /docs, /redoc or /openapi.json: the API is OpenAI's, documented there; building
    # the schema would only cost start time and memory (issue 9).
    app = FastAPI(
        title="openrealtime",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.ready = False
    observe(app, settings)
    # In-process, or shared by several instances through Redis (--redis-url). Installed
    # before the calls router: its lifespan must outlast the calls'.
    shared = create_shared_state(settings)
    shared.install(app)
    app.state.limiter = shared.limiter
    # Admission, age limit and shutdown of every session (server/lifecycle.py). It reads
    # app.state.limiter at each admission, so a limiter swapped in later counts.
    lifecycle = app.state.lifecycle = Lifecycle(
        settings, lambda: app.state.limiter, lambda reason: app.state.metrics.refused(reason)
    )
    app.add_middleware(ConnectionAbort)  # lets a client that does not read be dropped
    app.add_middleware(CrossOrigin, allow_origins=settings.cors_allow_origins)  # browser apps
    auth = Authenticator(settings, shared.secrets)
    app.state.auth = auth
    app.include_router(client_secrets_router)
    app.include_router(console_router(settings))
    calls = app.state.calls = shared.calls
    app.include_router(calls_router(auth, calls))
    app.include_router(translations_router(auth, lifecycle))  # /v1/realtime/translations
    if settings.sip_port is not None:  # SIP calls: accept, reject, refer (server/sip.py)
        from .sip import sip_router  # with aiohttp, for its webhooks: only if asked for

        app.include_router(sip_router(settings, auth, calls))

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        if lifecycle.shutting_down:  # a load balancer stops sending new clients here
            return JSONResponse({"status": "shutting_down"}, status_code=503)
        if not app.state.ready:
            return JSONResponse({"status": "starting"}, status_code=503)
        # Sessions are taken while the models load (they wait for them): say which it is.
        return JSONResponse({"status": "ok", "models": app.state.warmup.state})

    @app.get("/v1/models")
    async def models(request: Request) -> JSONResponse:
        if not auth.is_standard_key(bearer_token(dict(request.headers))):
            return openai_error(401, "Incorrect API key provided.", "invalid_api_key")
        pipeline = app.state.backends.describe()
        return JSONResponse(
            {
                "object": "list",
                "data": [
                    {
                        "id": "openrealtime",
                        "object": "model",
                        "created": 0,
                        "owned_by": "openrealtime",
                        "pipeline": pipeline,
                    }
                ],
            }
        )

    @app.websocket("/v1/realtime")
    async def realtime(websocket: WebSocket) -> None:
        headers = {k.lower(): v for k, v in websocket.headers.items()}
        offered = [
            p.strip() for p in headers.get("sec-websocket-protocol", "").split(",") if p.strip()
        ]
        try:
            principal = await auth.authenticate(bearer_token(headers, offered))
        except AuthError as refused:
            app.state.metrics.refused("unauthorized")
            await websocket.send_denial_response(openai_error(401, str(refused), "invalid_api_key"))
            return
        subprotocol = "realtime" if "realtime" in offered else None
        if (call_id := websocket.query_params.get("call_id")) is not None:
            dialect = choose_dialect(headers, offered)
            await run_sideband(websocket, principal, call_id, calls, dialect, subprotocol)
            return
        try:
            slot = await lifecycle.admit(principal)
        except NotAdmitted as refused:  # 503 shutting down, 429 a session limit
            await websocket.send_denial_response(refused.response)
            return
        try:
            await websocket.accept(subprotocol=subprotocol)
            backends = app.state.backends
            query = websocket.query_params
            transcription = query.get("intent") == "transcription"
            config = session_config(principal, transcription, query.get("model"))
            session = new_session(config, backends)
            bind_ids(session_id=session.id)  # this connection's task, and the tasks it starts
            # Imported by the warm-up once the server listens; here only if a session is first.
            from ..runtime.driver import SessionDriver
            from ..transports.websocket import run_websocket

            driver = SessionDriver(session, backends, metrics=app.state.metrics)
            ending = Ending()
            with lifecycle.live(driver, ending.request):
                await run_websocket(
                    websocket,
                    driver,
                    choose_dialect(headers, offered),
                    ending=ending,
                    limits=lifecycle.queue_limits,
                )
        finally:
            await slot.release()

    return app


def announce(settings: Settings, backends: Backends) -> None:
    """The start-up lines a person reads: where, with what, and who may connect."""
    base = f"http://{settings.host}:{settings.port}"
    log.info(
        "openrealtime %s listening on %s (WebSocket %s/v1/realtime)",
        __version__,
        base,
        base.replace("http", "ws", 1),
    )
    for role, description in backends.describe().items():
        log.info("  %-3s %s", role, description)
    if settings.open_mode:
        log.warning(
            "OPEN MODE: no API keys configured, any key is accepted. "
            "Set --api-key KEY (or OPENREALTIME_API_KEYS) before exposing this server."
        )
    else:
        log.info("  auth: %d standard API key(s)", len(settings.api_keys))


async def check_llm(settings: Settings, backends: Backends, warmup: ModelWarmup) -> None:
    await asyncio.wait([warmup.code])  # aiohttp imported on the warm-up's thread, not here
    if (problem := await backends.llm.check()) is not None:
        log.warning(
            "the LLM endpoint %s cannot be reached (%s); responses will fail until it is up. "
            "Change it with --llm-base-url.",
            settings.llm_base_url,
            problem,
        )
