"""The translation socket (`/v1/realtime/translations`): the WebSocket transport's pump, with
the translation surface's own events. The driver is started and closed here, since
`run_websocket` only manages voice-session drivers it owns."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.websockets import WebSocket

from ..protocol import translation as wire
from ..runtime.translation import TranslationDriver
from .ending import Ending
from .send_queue import QueueLimits
from .websocket import run_websocket


class TranslationDialect:
    name = "translation"

    def parse(self, raw: str | bytes) -> Any:
        return wire.parse_client_event(raw)

    def encode(self, event: dict[str, Any]) -> str | None:
        return orjson.dumps(event).decode()


async def run_translation_websocket(
    websocket: WebSocket, driver: TranslationDriver, *, ending: Ending, limits: QueueLimits
) -> None:
    """Pump one accepted socket until the client goes away; the session's work then stops."""
    driver.start()
    try:
        await run_websocket(
            websocket,
            driver,
            TranslationDialect(),
            owner=False,
            first=wire.session_created(driver.session.snapshot()),
            ending=ending,
            limits=limits,
        )
    finally:
        await driver.close()
