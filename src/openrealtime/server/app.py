"""The application (Starlette): routes, authentication, and the shared backends."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.websockets import WebSocket

from .. import __version__
from ..backends.registry import Backends, create_backends
from ..config import Settings
from ..logs import bind_ids
from ..transports.abort import ConnectionAbort
from ..transports.dialect import choose_dialect
from ..transports.ending import Ending
from .auth import Authenticator, AuthError, bearer_token
from .calls import calls_routes
from .client_secrets import routes as client_secrets_routes
from .console import routes as console_routes
from .cors import CrossOrigin
from .errors import openai_error, routing_error
from .lifecycle import Lifecycle, ModelWarmup, NotAdmitted
from .observability import observe
from .routing import Lifespan, Routes
from .sessions import new_session, session_config
from .shared import create_shared_state
from .sideband import run_sideband
from .translations import translations_routes

log = logging.getLogger("openrealtime")


class RefusedHandshakeFilter(logging.Filter):
    """uvicorn's websockets-sansio backend logs an ERROR for every handshake the app refuses
    with an HTTP answer (a wrong key): that is not an error, and it would page operators."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "returned without completing handshake" not in record.getMessage()


_handshake_filter = RefusedHandshakeFilter()


def create_app(settings: Settings, backends: Backends | None = None) -> Starlette:
    """`backends` may be given (tests, embedding); otherwise they are built from `settings`."""
    lifespans: list[Lifespan] = []  # the included groups', entered in order, left in reverse

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        app.state.backends = backends or create_backends(settings)
        # Sessions wait for it. A process that embeds the app (given its backends) keeps
        # its heap as it is.
        warmup = app.state.warmup = ModelWarmup(app.state.backends, settle=backends is None)
        announce(settings, app.state.backends)
        # The LLM's reachability is only a warning: /healthz does not wait for it (a slow or
        # far endpoint took up to its 3 s timeout off the start, issue 9).
        check = asyncio.get_running_loop().create_task(
            check_llm(settings, app.state.backends, warmup)
        )
        try:
            async with AsyncExitStack() as groups:
                for group_lifespan in lifespans:
                    await groups.enter_async_context(group_lifespan(app))
                app.state.ready = True
                yield
        finally:
            check.cancel()
            await warmup.finished()
            from ..runtime.vad_scheduler import close_scheduler

            await close_scheduler()
            if backends is None:
                await app.state.backends.aclose()

    logging.getLogger("uvicorn.error").addFilter(_handshake_filter)  # idempotent
    # Starlette, not FastAPI: the API is OpenAI's, documented there, so there is no schema to
    # build, and FastAPI's import was ~0.3 s of start (issue 9).
    app = Starlette(
        lifespan=lifespan,
        exception_handlers={HTTPException: routing_error},  # 404 and 405 in OpenAI's shape
    )

    def include(group: Routes) -> None:
        app.router.routes.extend(group.routes)
        if group.lifespan is not None:
            lifespans.append(group.lifespan)

    app.state.ready = False
    include(observe(app, settings))
    # In-process, or shared by several instances through Redis (--redis-url). Included
    # before the calls' routes: its lifespan must outlast the calls'.
    shared = create_shared_state(settings)
    include(shared.install(app))
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
    include(client_secrets_routes)
    include(console_routes(settings))
    calls = app.state.calls = shared.calls
    include(calls_routes(auth, calls))
    include(translations_routes(auth, lifecycle))  # /v1/realtime/translations
    if settings.sip_port is not None:  # SIP calls: accept, reject, refer (server/sip.py)
        from .sip import sip_routes  # with aiohttp, for its webhooks: only if asked for

        include(sip_routes(settings, auth, calls))
    routes = Routes()

    @routes.get("/healthz")
    async def healthz(request: Request) -> JSONResponse:
        if lifecycle.shutting_down:  # a load balancer stops sending new clients here
            return JSONResponse({"status": "shutting_down"}, status_code=503)
        if not app.state.ready:
            return JSONResponse({"status": "starting"}, status_code=503)
        # Sessions are taken while the models load (they wait for them): say which it is.
        return JSONResponse({"status": "ok", "models": app.state.warmup.state})

    @routes.get("/v1/models")
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

    @routes.websocket("/v1/realtime")
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

    include(routes)
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
