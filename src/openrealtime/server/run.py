"""Run the server with uvicorn: websockets-sansio, uvloop, no per-message deflate by default."""

from __future__ import annotations

import logging

import uvicorn

from ..config import Settings
from .app import create_app


def uvicorn_config(settings: Settings, app: object) -> uvicorn.Config:
    try:
        import uvloop  # noqa: F401

        loop = "uvloop"
    except ImportError:
        loop = "asyncio"
    return uvicorn.Config(
        app,  # type: ignore[arg-type]
        host=settings.host,
        port=settings.port,
        loop=loop,
        http="httptools",
        ws="websockets-sansio",
        # Compression costs ~18x throughput on 20 KB audio events; opt in with the flag.
        ws_per_message_deflate=settings.ws_per_message_deflate,
        ws_max_size=32 * 1024 * 1024,
        log_level=settings.log_level,
        lifespan="on",
    )


def run(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )

    uvicorn.Server(uvicorn_config(settings, create_app(settings))).run()
