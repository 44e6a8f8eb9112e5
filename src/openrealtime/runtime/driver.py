"""The asyncio driver of one session: runs the core's effects as tasks against the backends,
feeds their results back, and cancels them on `response.cancel`, barge-in or disconnect."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from ..backends.errors import BackendError
from ..backends.llm.base import Finished, TextDelta
from ..backends.registry import Backends
from ..core.effects import CancelResponse, GenerateResponse
from ..core.session import Session
from ..protocol.errors import ProtocolError
from ..protocol.server_events import ServerEvent

log = logging.getLogger(__name__)


class SessionDriver:
    def __init__(
        self, session: Session, backends: Backends, send: Callable[[ServerEvent], None]
    ) -> None:
        self.session = session
        self.backends = backends
        self._send = send
        self._responses: dict[str, asyncio.Task[None]] = {}
        self._closed = False

    # --- from the transport ------------------------------------------------------------------

    def start(self) -> None:
        self.session.open()
        self.flush()

    def receive(self, event: Any) -> None:
        self.session.handle(event)
        self.flush()

    def reject(self, error: ProtocolError) -> None:
        self.session.reject(error)
        self.flush()

    async def close(self) -> None:
        """The client has gone: stop all backend work for it."""
        self._closed = True
        tasks = list(self._responses.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # --- effects ---------------------------------------------------------------------------

    def flush(self) -> None:
        for out in self.session.drain():
            if isinstance(out, dict):
                self._send(out)
            elif isinstance(out, GenerateResponse):
                self._start(out.response_id, self._respond(out))
            elif isinstance(out, CancelResponse):
                task = self._responses.pop(out.response_id, None)
                if task is not None:
                    task.cancel()

    def _start(self, key: str, work: Any) -> None:
        if self._closed:
            work.close()
            return
        task = asyncio.get_running_loop().create_task(work)
        self._responses[key] = task
        task.add_done_callback(lambda _: self._responses.pop(key, None))

    async def _respond(self, effect: GenerateResponse) -> None:
        response_id = effect.response_id
        session = self.session
        try:
            finished = False
            async for event in self.backends.llm.stream(effect.request):
                session.on_llm_event(response_id, event)
                self.flush()
                finished |= isinstance(event, Finished)
                if isinstance(event, TextDelta):
                    pass
            if not finished:
                session.on_llm_event(response_id, Finished())
        except BackendError as exc:
            log.warning("response %s failed: %s", response_id, exc)
            session.on_response_failed(response_id, exc.code, exc.message)
        except Exception as exc:  # a backend bug must fail one response, not the session
            log.exception("response %s failed unexpectedly", response_id)
            session.on_response_failed(response_id, "server_error", f"internal error: {exc!r}")
        self.flush()
