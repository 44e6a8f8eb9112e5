"""Run ASGI apps on loopback ports in background threads, for tests and benchmarks."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request
from typing import Any

import uvicorn

from openrealtime.server.run import ws_options


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _models_loading(url: str) -> bool:
    """openrealtime's /healthz says its models are still loading (other apps: False)."""
    try:
        with urllib.request.urlopen(url + "/healthz", timeout=5) as answer:
            return bool(json.loads(answer.read()).get("models") == "loading")
    except (urllib.error.URLError, ValueError, AttributeError):
        return False


class ServerThread:
    def __init__(self, app: Any, *, warm: bool = True, **config: Any) -> None:
        """`warm`: for an openrealtime app, wait on entering until its models have loaded
        (they load after it listens), so tests start from a warm server."""
        self.warm = warm
        self.port = free_port()
        options = {
            "host": "127.0.0.1",
            "port": self.port,
            "log_level": "warning",
            "lifespan": "on",
            **ws_options(),  # as in production: the frame size limit, no compression
            **config,
        }
        self.server = uvicorn.Server(uvicorn.Config(app, **options))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("test server did not start")
            time.sleep(0.01)
        while self.warm and _models_loading(self.url):
            if time.monotonic() > deadline + 60:
                raise RuntimeError("the test server's models did not load")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
