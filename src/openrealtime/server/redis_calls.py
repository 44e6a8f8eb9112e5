"""WebRTC calls across instances, through Redis: a sideband WebSocket (`?call_id=`) or a
hang-up that lands on an instance other than the one holding the call still reaches it.

The instance that answered the offer holds the call (its peer and driver); the others relay.

- Registration: `openrealtime:call:{call_id}` → `{"instance", "opener"}` (the opener's token
  digest), with a TTL of CALL_TTL_S renewed every HEARTBEAT_S while the call lives (and at
  once after Redis comes back), deleted when it ends. No record: 404, as for a call that never
  was. A holder that dies stops renewing, and its calls are forgotten within CALL_TTL_S.
- Commands: each instance subscribes to `openrealtime:instance:{instance}`. JSON messages:
  `attach` (answers the session's configuration, and starts the events), `event` (a client
  event from a remote sideband, GA wire shape), `reject` (a remote sideband's unparseable
  input, for the session to report as it reports any), `hangup`. `attach` and `hangup` answer
  on the `reply` channel they name; the asker subscribes to it before asking.
- Events: while a remote sideband listens, the holder publishes the call's server events
  (not audio deltas: audio is the peer's) on `openrealtime:call:{call_id}:events` as
  `{"event": ...}`, then `{"ended": true}` when the call ends. It stops by itself once PUBLISH
  reports no listener; the next `attach` starts it again.
- The session never waits on Redis: what the holder writes goes through a `RedisPublisher`
  (server/redis_publisher.py), a bounded queue that one task drains in order, pipelined.
  Queue full, or Redis down: dropped, logged once.
- A remote sideband gets a `RemoteDriver` (server/redis_relay.py), which `run_websocket`
  drives as it would the call's `SessionDriver`. Redis lost under it, or the holder not
  listening: closed with 1011 (before the handshake completes: 503). The call ending: closed
  with 1000, as a local sideband is.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from redis.asyncio.client import PubSub
from starlette.websockets import WebSocket

from ..protocol.client_events import parse_client_dict
from ..protocol.errors import ProtocolError
from ..protocol.server_events import AUDIO_DELTA, ServerEvent
from .auth import Principal
from .errors import SharedStateUnavailable
from .redis_publisher import RedisPublisher
from .redis_relay import RemoteDriver
from .redis_state import (
    CALL_TTL_S,
    ERRORS,
    HEARTBEAT_S,
    POLL_S,
    PREFIX,
    OutageLog,
    RedisState,
    call_key,
    close_quietly,
    digest,
    dumps,
    events_channel,
    instance_channel,
    ms,
)
from .registry import Call, MemoryCallRegistry

log = logging.getLogger(__name__)

# A holder that is up answers in milliseconds; a hang-up waits for the call's clean-up.
ANSWER_TIMEOUT_S = 3.0
HANGUP_TIMEOUT_S = 15.0

_ENDED = orjson.dumps({"ended": True})


@dataclass(frozen=True, slots=True)
class _Record:
    instance: str
    opener: str  # digest of the key or client secret that opened the call


@dataclass(eq=False)
class _Held:
    """A call held here, as the registry relays it."""

    call: Call
    sink: Callable[[ServerEvent], None] = lambda event: None
    listening: bool = False  # some remote sideband receives its events
    # Bumped by each attach, so a "no listener" answer to an earlier publish cannot stop the
    # events an attach has just started.
    attaches: int = 0


class RedisCallRegistry:
    """Calls held here (as `MemoryCallRegistry` holds them), registered in Redis so that the
    other instances can reach them, and a way to reach theirs."""

    def __init__(self, redis: RedisState) -> None:
        self.instance = redis.instance
        self._client = redis.client
        self._local = MemoryCallRegistry()
        self._held: dict[str, _Held] = {}
        self._publisher = RedisPublisher(
            redis.client, "relaying events of calls held here to other instances"
        )
        self._tasks: set[asyncio.Task[None]] = set()
        self._commands_outage = OutageLog("reaching calls held here from other instances")
        self._register_outage = OutageLog("registering calls held here")

    def start(self) -> None:
        self._publisher.start()
        self._spawn(self._listen(), "call commands")
        self._spawn(self._heartbeat(), "call registration")

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._publisher.aclose()

    def _spawn(self, work: Any, name: str) -> None:
        task = asyncio.get_running_loop().create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- CallRegistry: the calls held here ---------------------------------------------------

    async def add(self, call: Call) -> None:
        await self._local.add(call)
        held = _Held(call)
        channel = events_channel(call.id)

        def sink(event: ServerEvent) -> None:
            if held.listening and event["type"] != AUDIO_DELTA:
                attaches = held.attaches
                self._publisher.publish(
                    channel, dumps({"event": event}), lambda n: self._heard(held, attaches, n)
                )

        held.sink = sink
        call.driver.add_sink(sink)
        self._held[call.id] = held
        try:
            await self._client.set(call_key(call.id), self._record(call), px=ms(CALL_TTL_S))
        except ERRORS as exc:
            # The call goes on here; the heartbeat registers it once Redis is back.
            self._register_outage.failed(exc)

    async def get(self, call_id: str) -> Call | None:
        return await self._local.get(call_id)

    async def remove(self, call_id: str) -> None:
        await self._local.remove(call_id)
        held = self._held.pop(call_id, None)
        if held is None:
            return
        held.call.driver.remove_sink(held.sink)
        if held.listening:
            self._publisher.publish(events_channel(call_id), _ENDED)
        self._publisher.delete(call_key(call_id))

    async def all(self) -> list[Call]:
        return await self._local.all()

    # --- CallRegistry: calls held elsewhere ----------------------------------------------------

    async def attach_elsewhere(self, call_id: str, websocket: WebSocket) -> RemoteDriver | None:
        record = await self._lookup(call_id)
        if record is None or record.instance == self.instance:
            return None  # unknown, or held here and already ended
        pubsub = self._client.pubsub()
        try:
            answer = await self._ask(
                pubsub,
                record.instance,
                call_id,
                {"op": "attach"},
                ANSWER_TIMEOUT_S,
                also=events_channel(call_id),
            )
            session = answer.get("session")
            if not isinstance(session, dict):
                await close_quietly(pubsub)
                return None  # it ended meanwhile
        except BaseException:
            await close_quietly(pubsub)
            raise
        return RemoteDriver(self._client, call_id, record.instance, pubsub, session, websocket)

    async def hang_up_elsewhere(self, call_id: str, principal: Principal) -> bool:
        record = await self._lookup(call_id)
        if record is None or record.instance == self.instance:
            return False
        if principal.kind != "standard" and not hmac.compare_digest(
            digest(principal.token), record.opener
        ):
            return False  # someone else's call is not told apart from no call
        pubsub = self._client.pubsub()
        try:
            answer = await self._ask(
                pubsub, record.instance, call_id, {"op": "hangup"}, HANGUP_TIMEOUT_S
            )
        finally:
            await close_quietly(pubsub)
        return answer.get("ended") is True

    async def _lookup(self, call_id: str) -> _Record | None:
        try:
            raw = await self._client.get(call_key(call_id))
        except ERRORS as exc:
            raise SharedStateUnavailable(
                f"Call '{call_id}' is not held by this instance, and the others could not be asked."
            ) from exc
        if raw is None:
            return None
        data = orjson.loads(raw)
        return _Record(data["instance"], data["opener"])

    async def _ask(
        self,
        pubsub: PubSub,
        instance: str,
        call_id: str,
        command: dict[str, Any],
        timeout: float,
        also: str | None = None,
    ) -> dict[str, Any]:
        """Send `command` to the instance holding `call_id` and wait for its answer. `pubsub`
        stays subscribed to `also`, which it subscribed to before asking."""
        reply = f"{PREFIX}reply:{secrets.token_hex(12)}"
        channels = [reply] if also is None else [reply, also]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            await pubsub.subscribe(*channels)
            # Wait until subscribed: an answer published before would be lost.
            confirmed = 0
            while confirmed < len(channels) and loop.time() < deadline:
                message = await pubsub.get_message(timeout=deadline - loop.time())
                confirmed += message is not None and message["type"] == "subscribe"
            receivers = await self._client.publish(
                instance_channel(instance), dumps({**command, "call": call_id, "reply": reply})
            )
            if receivers:
                while (left := deadline - loop.time()) > 0:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=left)
                    if message is not None and message["channel"] == reply.encode():
                        await pubsub.unsubscribe(reply)
                        answer: dict[str, Any] = orjson.loads(message["data"])
                        return answer
        except ERRORS as exc:
            raise SharedStateUnavailable(
                f"Call '{call_id}' is held by another instance, which could not be reached."
            ) from exc
        raise SharedStateUnavailable(
            f"Call '{call_id}' is held by another instance ({instance}), which did not answer."
        )

    # --- holding calls for the others ----------------------------------------------------------

    def _record(self, call: Call) -> bytes:
        return orjson.dumps({"instance": self.instance, "opener": digest(call.opener)})

    def _heard(self, held: _Held, attaches: int, receivers: int) -> None:
        if receivers == 0 and held.attaches == attaches:
            held.listening = False  # the last remote sideband has gone

    async def _register_all(self) -> None:
        if not self._held:
            return
        async with self._client.pipeline(transaction=False) as pipe:
            for held in list(self._held.values()):
                pipe.set(call_key(held.call.id), self._record(held.call), px=ms(CALL_TTL_S))
            await pipe.execute()

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            try:
                await self._register_all()
            except ERRORS as exc:
                self._register_outage.failed(exc)
            else:
                self._register_outage.succeeded()

    async def _listen(self) -> None:
        """Take the commands for calls held here, reconnecting (with backoff) when Redis is
        lost; on reconnecting, register the calls at once (a restarted Redis has none)."""
        channel = instance_channel(self.instance)
        delay = 0.5
        while True:
            pubsub = self._client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(channel)
                await self._register_all()
                self._commands_outage.succeeded()
                delay = 0.5
                while True:
                    message = await pubsub.get_message(timeout=POLL_S)
                    if message is not None:
                        self._command(message["data"])
            except ERRORS as exc:
                self._commands_outage.failed(exc)
            finally:
                await close_quietly(pubsub)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    def _command(self, raw: bytes) -> None:
        try:
            command = orjson.loads(raw)
            op, call_id = command["op"], command["call"]
            held = self._held.get(call_id)
            if op == "attach":
                session = None
                if held is not None and not held.call.ended:
                    held.listening = True
                    held.attaches += 1
                    session = held.call.driver.session_wire()
                # In the publisher's order: the answer goes out before any event after it.
                self._publisher.publish(command["reply"], dumps({"session": session}))
            elif op == "hangup":
                self._spawn(self._hang_up(held, command["reply"]), f"{call_id} relayed hang-up")
            elif held is None or held.call.ended:
                return  # an event for a call that has just ended
            elif op == "event":
                driver = held.call.driver
                try:
                    event = parse_client_dict(command["event"])
                except ProtocolError as error:
                    driver.reject(error)
                    return
                driver.receive(event)
            elif op == "reject":
                held.call.driver.reject(ProtocolError(**command["error"]))
        except Exception:  # one bad command must not stop the others
            log.exception("could not apply a relayed call command")

    async def _hang_up(self, held: _Held | None, reply: str) -> None:
        ended = held is not None and not held.call.ended
        if held is not None and ended:
            await held.call.end()
        self._publisher.publish(reply, dumps({"ended": ended}))
