"""A group of routes, and what runs with the app while it serves them (a lifespan): what each
route module gives `create_app` to include. Plain Starlette: no FastAPI, whose import (its
OpenAPI models, ~0.3 s) was most of an HTTP-backed start (issue 9)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.websockets import WebSocket

Endpoint = Callable[[Request], Awaitable[Response]]
SocketEndpoint = Callable[[WebSocket], Awaitable[None]]
Lifespan = Callable[[Starlette], AbstractAsyncContextManager[None]]


class Routes:
    """Routes added in the order they are declared. A GET route answers HEAD too (Starlette's
    rule: HTTP's own)."""

    def __init__(self, lifespan: Lifespan | None = None) -> None:
        self.routes: list[BaseRoute] = []
        self.lifespan = lifespan

    def get(self, path: str) -> Callable[[Endpoint], Endpoint]:
        return self._http(path, "GET")

    def post(self, path: str) -> Callable[[Endpoint], Endpoint]:
        return self._http(path, "POST")

    def websocket(self, path: str) -> Callable[[SocketEndpoint], SocketEndpoint]:
        def add(endpoint: SocketEndpoint) -> SocketEndpoint:
            self.routes.append(WebSocketRoute(path, endpoint))
            return endpoint

        return add

    def _http(self, path: str, method: str) -> Callable[[Endpoint], Endpoint]:
        def add(endpoint: Endpoint) -> Endpoint:
            self.routes.append(Route(path, endpoint, methods=[method]))
            return endpoint

        return add
