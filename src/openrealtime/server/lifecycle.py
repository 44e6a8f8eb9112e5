"""A session's life on this server, from admission to its end. The rules, in one place:

- Admission comes before the WebSocket handshake is accepted (or the call's offer answered):
  refused with HTTP 503 once shutdown has begun, and with HTTP 429 when a concurrent-session
  limit is reached — per process (`--max-sessions`) or per key (`--max-sessions-per-key`),
  counted by `app.state.limiter` (in memory, or shared through Redis). A granted `Slot` is
  given back exactly once when the session ends, whatever ends it.
- The key is the bearer token, a client secret counting as itself. The limiter sees a digest,
  never the token (a shared limiter must not hold credentials). In open mode a key is not an
  identity — any string is accepted — so the per-key limit counts each key as sent, clients
  sending none share one, and `--max-sessions` is the limit that really holds.
- Sideband connections are not sessions: they are not admitted, counted or registered.
- A live session (WebSocket or WebRTC call) is registered with its driver and its transport's
  `end` handle: say this error, then close with this code.
- At `--max-session-minutes` it ends: `session_expired`, close 1000 (OpenAI's behaviour).
- At shutdown, admission stops; each session ends as soon as it has no active response, and
  at `--shutdown-grace-seconds` the rest are cut: `server_shutting_down`, close 1001 (going
  away). A response cut this way (or by the age limit) is cancelled first, so the client gets
  its `response.done` (status `cancelled`, no reason: the error event that follows says why).
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

from starlette.responses import JSONResponse

from ..backends.registry import Backends
from ..config import Settings
from ..protocol import errors
from ..protocol.base import build_validators
from ..protocol.errors import ProtocolError
from ..transports.ending import Close
from ..transports.send_queue import QueueLimits
from .auth import Principal
from .errors import openai_error
from .limits import SessionLimiter

log = logging.getLogger(__name__)

POLL_S = 0.05  # how often shutdown looks for sessions whose responses have finished
# After every session was told to end: how long their transports get to close.
CLOSE_WAIT_S = 5.0
GOING_AWAY = 1001


class NotAdmitted(Exception):
    """The HTTP answer to a handshake or offer that may not start a session."""

    def __init__(self, response: JSONResponse) -> None:
        self.response = response


class Slot:
    """One session's place under the limits."""

    def __init__(self, limiter: SessionLimiter, key: str) -> None:
        self._limiter = limiter
        self._key = key
        self._released = False

    async def release(self) -> None:
        """Idempotent; survives its caller being cancelled (the limiter may be remote)."""
        if self._released:
            return
        self._released = True
        try:
            await asyncio.shield(self._limiter.release(self._key))
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("could not give back a session slot")


class LiveDriver(Protocol):
    """What the age limit and shutdown need of a session's driver (a voice session's
    `SessionDriver`, or a translation session's)."""

    @property
    def session_id(self) -> str: ...
    @property
    def responding(self) -> bool: ...
    def cancel_responses(self) -> None: ...


@dataclass(eq=False)
class LiveSession:
    driver: LiveDriver
    end: Callable[[Close], None]  # the transport's: the error event, then close or hang up
    ended: bool = False


def limit_key(principal: Principal) -> str:
    return hashlib.sha256(principal.token.encode()).hexdigest()[:32]


def duration_phrase(minutes: float) -> str:
    return f"{minutes:g} minute{'' if minutes == 1 else 's'}"


class Lifecycle:
    def __init__(
        self,
        settings: Settings,
        limiter: Callable[[], SessionLimiter],
        on_refused: Callable[[str], None] = lambda reason: None,
    ) -> None:
        """`limiter` is looked up at each admission: `app.state.limiter` may be swapped in
        after the app is made (a Redis one, at start-up). `on_refused` hears each refusal's
        reason (for metrics)."""
        self.settings = settings
        self._limiter = limiter
        self._on_refused = on_refused
        self.queue_limits = QueueLimits(settings.send_queue_limit, settings.send_queue_bytes)
        self.shutting_down = False
        self._live: set[LiveSession] = set()
        self._shutdown: asyncio.Task[None] | None = None

    @property
    def sessions(self) -> int:
        """Live sessions in this process."""
        return len(self._live)

    async def admit(self, principal: Principal) -> Slot:
        """A slot for a new session; raises NotAdmitted with the HTTP answer otherwise."""
        if self.shutting_down:
            self._on_refused("shutting_down")
            raise NotAdmitted(
                openai_error(
                    503,
                    "The server is shutting down and takes no new sessions; connect again "
                    "(another instance will answer).",
                    errors.SERVER_SHUTTING_DOWN,
                    type_=errors.SERVER_ERROR,
                )
            )
        limiter, key = self._limiter(), limit_key(principal)
        refused = await limiter.acquire(key)
        if refused is not None:
            self._on_refused(refused.reason)
            raise NotAdmitted(
                openai_error(
                    429,
                    f"Too many concurrent sessions: {refused.message}.",
                    "rate_limit_exceeded",
                    type_="rate_limit_error",
                )
            )
        return Slot(limiter, key)

    @contextmanager
    def live(self, driver: LiveDriver, end: Callable[[Close], None]) -> Iterator[LiveSession]:
        """Register a session while it runs, with its age limit armed."""
        entry = LiveSession(driver, end)
        self._live.add(entry)
        loop = asyncio.get_running_loop()
        minutes = self.settings.max_session_minutes
        timer = loop.call_later(minutes * 60, self._expire, entry) if minutes > 0 else None
        if self.shutting_down:  # admitted just before shutdown began: it will not be waited for
            loop.call_soon(self._end, entry, _shutting_down(), GOING_AWAY, "server shutting down")
        try:
            yield entry
        finally:
            if timer is not None:
                timer.cancel()
            self._live.discard(entry)

    def _expire(self, entry: LiveSession) -> None:
        minutes = self.settings.max_session_minutes
        log.info("session %s reached %s", entry.driver.session_id, duration_phrase(minutes))
        error = ProtocolError(
            f"Your session hit the maximum duration of {duration_phrase(minutes)}.",
            errors.SESSION_EXPIRED,
        )
        self._end(entry, error, 1000, "session expired")

    def _end(self, entry: LiveSession, error: ProtocolError, code: int, reason: str) -> None:
        if entry.ended or entry not in self._live:
            return
        entry.ended = True
        entry.driver.cancel_responses()
        entry.end(Close(error, code, reason))

    # --- shutdown ------------------------------------------------------------------------------

    async def shutdown(self) -> None:
        """Stop admitting; end every session once its responses finish, or at the grace
        deadline; wait (bounded) for their transports to close. Idempotent."""
        if self._shutdown is None:
            self._shutdown = asyncio.get_running_loop().create_task(self._drain())
        await asyncio.shield(self._shutdown)

    async def _drain(self) -> None:
        self.shutting_down = True
        loop = asyncio.get_running_loop()
        grace = self.settings.shutdown_grace_seconds
        deadline = loop.time() + grace
        if self._live:
            log.info(
                "shutting down: %d session(s); active responses may finish within %g s",
                len(self._live),
                grace,
            )
        error = _shutting_down()
        while pending := [entry for entry in self._live if not entry.ended]:
            late = loop.time() >= deadline
            for entry in pending:
                if late or not entry.driver.responding:
                    self._end(entry, error, GOING_AWAY, "server shutting down")
            await asyncio.sleep(POLL_S)
        closing = loop.time() + CLOSE_WAIT_S
        while self._live and loop.time() < closing:
            await asyncio.sleep(POLL_S)
        if self._live:
            log.warning("%d session(s) did not close in time", len(self._live))


def _shutting_down() -> ProtocolError:
    return ProtocolError(
        "The server is shutting down; this session has ended. Connect again to continue "
        "(another instance will answer).",
        errors.SERVER_SHUTTING_DOWN,
        type=errors.SERVER_ERROR,
    )


class ModelWarmup:
    """The models load and warm in the background once the server listens, so `/healthz`
    answers within a second or two of the start instead of after the slowest model.

    A session that arrives first is accepted and waits for what it uses: every backend loads
    on first use behind the same lock as this warm-up (the recognizer, the voice, the worker
    pool, the end-of-turn model), so nothing fails for being early; it is only slower. A model
    that fails to load here is logged; each later use tries again and reports its own error.
    The end-of-turn model (Smart Turn, for `semantic_vad`) is warmed beside them when a speech
    model runs here; on HTTP speech backends the server stays lean (~100 MB idle), and it loads
    with the first `semantic_vad` pause instead.

    The session machinery warms here too (`load_session_code`): with HTTP backends it is
    the only thing that does, and "ready" means a first session pays no import.

    A load cannot be interrupted, and a process must not exit while a thread is inside a
    model's native code (it crashes), so shutdown waits for the loads in hand (`finished`)."""

    def __init__(self, backends: Backends, *, settle: bool = False) -> None:
        """`settle`: freeze the start-up heap once ready (`settle_heap`): for a process that
        is the server, not one that embeds the app (its heap is not ours to freeze)."""
        self.state = "loading"  # then "ready" or "failed", shown by /healthz
        self._settle = settle
        loads = {"stt": backends.stt.load, "tts": backends.tts.load}
        if backends.stt.capabilities.local_model or backends.tts.capabilities.local_model:
            loads["turn"] = _warm_turn_model
        loop = asyncio.get_running_loop()
        # Done when a first session (and the LLM check) will find its code imported.
        self.code: asyncio.Future[None] = loop.create_task(asyncio.to_thread(load_session_code))
        self._task = loop.create_task(self._run(loads))

    async def _run(self, loads: dict[str, Callable[[], None]]) -> None:
        started = time.perf_counter()
        kinds = ["session code", *(f"{kind} model" for kind in loads)]
        results = await asyncio.gather(
            self.code, *(asyncio.to_thread(load) for load in loads.values()), return_exceptions=True
        )
        failed = False
        for kind, result in zip(kinds, results, strict=True):
            if isinstance(result, BaseException):
                failed = True
                log.error("the %s failed to load at start-up", kind, exc_info=result)
        self.state = "failed" if failed else "ready"
        if self._settle:
            settle_heap()
        log.info(
            "models %s", self.state, extra={"seconds": round(time.perf_counter() - started, 2)}
        )

    async def finished(self) -> None:
        """Wait for the warm-up (at shutdown: see above)."""
        await asyncio.wait([self._task])


def settle_heap() -> None:
    """What start-up loaded (modules, models, validators: ~85k objects) lives as long as the
    process. Frozen out of the garbage collector's sight, a full collection under load walks
    only what the sessions made: measured at 100 sessions a worker, 20 ms instead of 58-92 ms,
    during which every socket of the process waits (issue 9)."""
    gc.freeze()


def load_session_code() -> None:
    """Import what a session runs on (the core, the driver, the transports, numpy, soxr,
    aiohttp for the backends' requests) and build the wire models' validators
    (protocol/base.py). The server starts without them (~0.5 s of CPU, issue 9) and loads them
    here, on a thread, once it listens."""
    import aiohttp  # noqa: F401 - imported for its cost

    from ..transports import translation, websocket  # noqa: F401

    build_validators()


def _warm_turn_model() -> None:
    from ..runtime import turn_judge  # numpy, on the warm-up's thread (issue 9)

    turn_judge.warm()
