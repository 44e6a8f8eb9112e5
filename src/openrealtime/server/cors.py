"""Cross-origin access for browser apps served from their own origin.

A page on another origin (the Agents SDK's WebRTC transport, a web app with its own backend)
calls `POST /v1/realtime/calls` and `POST /v1/realtime/client_secrets`, as OpenAI allows:
the browser first asks (a preflight `OPTIONS`) and then reads the answer only if the server
names the page's origin. Both are answered here for the `/v1/` API, with the requested headers
reflected (Authorization, Content-Type, OpenAI-Beta, the SDKs' own `X-OpenAI-*`) and
`Location` exposed: the SDK reads the call id from it. The console's own routes, `/metrics`
and `/healthz` stay same-origin.

No credentials mode: every endpoint authenticates by a bearer header (or a client secret),
never a cookie, so `*` gives a page nothing a script outside a browser lacks. Which origins
may call is `Settings.cors_allow_origins` (docs/operations.md, "Browser apps on other origins").

Browsers do not preflight WebSockets, and CORS does not cover them: a handshake whose `Origin`
the operator did not allow is refused here (403), unless it is the server's own origin. One
without `Origin` (not a browser) is not a cross-origin request, and passes.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket

from .errors import openai_error

API_PREFIX = "/v1/"
PREFLIGHT_CACHE_S = 600


class CrossOrigin:
    """ASGI middleware: CORS for the `/v1/` API, the origin check for WebSockets."""

    def __init__(self, app: ASGIApp, allow_origins: list[str]) -> None:
        self.app = app
        self.allow_all = "*" in allow_origins
        self.allow_origins = frozenset(allow_origins)
        self.cors = CORSMiddleware(
            app,
            allow_origins=allow_origins,
            allow_methods=("GET", "POST", "DELETE"),
            allow_headers=("*",),  # reflect what the page asks for
            expose_headers=("Location",),
            max_age=PREFLIGHT_CACHE_S,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(API_PREFIX):
            await self.cors(scope, receive, send)
            return
        if scope["type"] == "websocket" and not self._allowed(Headers(scope=scope)):
            refused = openai_error(
                403,
                "This server does not accept WebSocket connections from pages on this origin. "
                "Its operator may allow it with --cors-allow-origins.",
                "origin_not_allowed",
            )
            await WebSocket(scope, receive, send).send_denial_response(refused)
            return
        await self.app(scope, receive, send)

    def _allowed(self, headers: Headers) -> bool:
        origin = headers.get("origin")
        if origin is None or self.allow_all or origin in self.allow_origins:
            return True
        return urlsplit(origin).netloc == headers.get("host")  # the server's own pages
