"""The Redis pieces of the shared state, each against a real redis-server, two "instances"
(two `RedisState`s, as two processes would have) at a time: client secrets, per-key limits
(and their crash safety), and calls reached from another instance.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
import pytest
import redis
from fuzz_strategies import event_objects
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from redis_server import RedisServer

from openrealtime.config import Settings
from openrealtime.protocol.client_events import parse_client_dict, parse_client_event
from openrealtime.protocol.errors import ProtocolError
from openrealtime.server import redis_publisher
from openrealtime.server.auth import Principal
from openrealtime.server.errors import SharedStateUnavailable
from openrealtime.server.limits import MemorySessionLimiter
from openrealtime.server.redis_calls import RedisCallRegistry
from openrealtime.server.redis_limits import RedisSessionLimiter
from openrealtime.server.redis_relay import RemoteDriver, relay_form
from openrealtime.server.redis_state import RedisSecretStore, RedisState, dumps
from openrealtime.server.registry import Call, MemoryCallRegistry
from openrealtime.server.secrets import ClientSecret, MemorySecretStore, new_secret
from openrealtime.server.shared import create_shared_state

UNREACHABLE = "redis://127.0.0.1:1/0"  # nothing listens on port 1


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    redis.Redis.from_url(redis_server.url).flushall()
    return redis_server.url


@pytest.fixture
async def states(redis_url: str) -> AsyncIterator[Callable[[], RedisState]]:
    """Make as many instances' connections as a test needs; closed after it."""
    made: list[RedisState] = []

    def make() -> RedisState:
        made.append(RedisState(redis_url))
        return made[-1]

    yield make
    for state in made:
        await state.aclose()


def keys(url: str) -> list[str]:
    return sorted(key.decode() for key in redis.Redis.from_url(url).keys("*"))


# --- the factory -----------------------------------------------------------------------------


def test_without_redis_everything_stays_in_process() -> None:
    shared = create_shared_state(Settings())
    assert isinstance(shared.secrets, MemorySecretStore)
    assert isinstance(shared.calls, MemoryCallRegistry)
    assert isinstance(shared.limiter, MemorySessionLimiter)


def test_with_redis_the_state_is_shared(redis_url: str) -> None:
    shared = create_shared_state(Settings(redis_url=redis_url))
    assert isinstance(shared.secrets, RedisSecretStore)
    assert isinstance(shared.calls, RedisCallRegistry)
    assert isinstance(shared.limiter, RedisSessionLimiter)
    assert redis_url.split("//")[1].split("/")[0] in shared.description


# --- client secrets --------------------------------------------------------------------------


async def test_a_secret_minted_on_one_instance_is_accepted_on_another(states, redis_url) -> None:
    a, b = RedisSecretStore(states()), RedisSecretStore(states())
    secret = new_secret({"type": "realtime", "instructions": "be brief"}, 60, time.time())
    await a.put(secret)
    found = await b.get(secret.value)
    assert found == secret
    assert await b.get("ek_unknown") is None
    # Only a digest of the secret is in Redis, and it expires when the secret does.
    [key] = keys(redis_url)
    assert secret.value not in key
    ttl_ms = redis.Redis.from_url(redis_url).pttl(key)
    assert (secret.expires_at - time.time() - 1) * 1000 < ttl_ms <= 60_000


async def test_a_secret_expires_everywhere_at_once(states) -> None:
    a, b = RedisSecretStore(states()), RedisSecretStore(states())
    # One to two seconds left (`expires_at` is in whole seconds), in Redis's own TTL.
    secret = ClientSecret("ek_" + secrets.token_urlsafe(8), int(time.time()) + 2, {})
    await a.put(secret)
    assert await a.get(secret.value) is not None
    await asyncio.sleep(secret.expires_at - time.time() + 0.1)
    assert await a.get(secret.value) is None
    assert await b.get(secret.value) is None


async def test_an_unreachable_store_says_so() -> None:
    state = RedisState(UNREACHABLE)
    store = RedisSecretStore(state)
    try:
        with pytest.raises(SharedStateUnavailable, match="could not be stored"):
            await store.put(new_secret({}, 60, time.time()))
        with pytest.raises(SharedStateUnavailable, match="could not be checked"):
            await store.get("ek_anything")
    finally:
        await state.aclose()


# --- per-key limits --------------------------------------------------------------------------


async def test_the_per_key_limit_holds_across_instances(states) -> None:
    a = RedisSessionLimiter(states(), per_process=10, per_key=2)
    b = RedisSessionLimiter(states(), per_process=10, per_key=2)
    assert await a.acquire("key-1") is None
    assert await b.acquire("key-1") is None
    refused = await a.acquire("key-1")
    assert refused is not None and "--max-sessions-per-key" in refused.message
    assert refused.reason == "max_sessions_per_key"
    assert await b.acquire("key-1") is not None
    assert await b.acquire("key-2") is None  # another key has its own count
    await a.release("key-1")
    assert await b.acquire("key-1") is None
    assert (a.active, b.active) == (0, 3)


async def test_the_per_process_limit_stays_local(states) -> None:
    a = RedisSessionLimiter(states(), per_process=1, per_key=10)
    b = RedisSessionLimiter(states(), per_process=1, per_key=10)
    assert await a.acquire("k") is None
    refused = await a.acquire("k")
    assert refused is not None and "--max-sessions" in refused.message
    assert refused.reason == "max_sessions"
    assert await b.acquire("k") is None  # another process has room of its own


async def test_a_dead_instances_slots_lapse_and_a_live_ones_do_not(states) -> None:
    live = RedisSessionLimiter(states(), per_process=10, per_key=2, lease_s=0.6)
    dead = RedisSessionLimiter(states(), per_process=10, per_key=2, lease_s=0.6)
    other = RedisSessionLimiter(states(), per_process=10, per_key=2, lease_s=0.6)
    live.start()  # renews its leases; `dead` never does, as a process killed would not
    try:
        assert await live.acquire("k") is None
        assert await dead.acquire("k") is None
        assert await other.acquire("k") is not None
        await asyncio.sleep(1.5)  # past the lease: the dead one's slot is gone, not the live one's
        assert await other.acquire("k") is None
        assert await other.acquire("k") is not None
    finally:
        await live.aclose()


async def test_renewal_restores_slots_a_restarted_redis_lost(states, redis_url) -> None:
    a = RedisSessionLimiter(states(), per_process=10, per_key=1, lease_s=0.6)
    b = RedisSessionLimiter(states(), per_process=10, per_key=1, lease_s=0.6)
    a.start()
    try:
        assert await a.acquire("k") is None
        redis.Redis.from_url(redis_url).flushall()  # what a restart with no persistence does
        await asyncio.sleep(0.5)  # one renewal
        assert await b.acquire("k") is not None
    finally:
        await a.aclose()
    assert keys(redis_url) == []  # a clean stop gives its slots back at once
    assert await b.acquire("k") is None


async def test_a_limiter_that_cannot_reach_redis_refuses_with_a_reason() -> None:
    state = RedisState(UNREACHABLE)
    limiter = RedisSessionLimiter(state, per_process=10, per_key=2)
    try:
        with pytest.raises(SharedStateUnavailable, match="per-key session limit could not"):
            await limiter.acquire("k")
        assert limiter.active == 0
    finally:
        await state.aclose()


async def test_a_release_that_cannot_reach_redis_does_not_raise(redis_server) -> None:
    doomed = RedisServer().start()
    state = RedisState(doomed.url)
    try:
        limiter = RedisSessionLimiter(state, per_process=10, per_key=2)
        assert await limiter.acquire("k") is None
        doomed.kill()
        await limiter.release("k")  # its slot lapses with its lease
        assert limiter.active == 0
    finally:
        doomed.kill()
        await state.aclose()


# --- calls held elsewhere --------------------------------------------------------------------


class FakeDriver:
    """The surface of `SessionDriver` the registry uses, recording what reaches it."""

    def __init__(self) -> None:
        self.session_id = "sess_fake"
        self.wire = {"id": self.session_id, "type": "realtime", "instructions": "hello"}
        self.sinks: list[Callable[[dict[str, Any]], None]] = []
        self.received: list[Any] = []
        self.rejected: list[ProtocolError] = []

    def session_wire(self) -> dict[str, Any]:
        return self.wire

    def add_sink(self, sink: Callable[[dict[str, Any]], None]) -> None:
        self.sinks.append(sink)

    def remove_sink(self, sink: Callable[[dict[str, Any]], None]) -> None:
        self.sinks.remove(sink)

    def emit(self, event: dict[str, Any]) -> None:
        for sink in list(self.sinks):
            sink(event)

    def receive(self, event: Any) -> None:
        self.received.append(event)

    def reject(self, error: ProtocolError) -> None:
        self.rejected.append(error)


class FakePeer:
    def __init__(self) -> None:
        self.driver = FakeDriver()
        self.ended = False

    def hang_up(self) -> None:
        self.ended = True


class FakeWebSocket:
    def __init__(self) -> None:
        self.closed: asyncio.Future[tuple[int, str]] = asyncio.get_running_loop().create_future()

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        if not self.closed.done():
            self.closed.set_result((code, reason or ""))


@pytest.fixture
async def registries(states) -> AsyncIterator[tuple[RedisCallRegistry, RedisCallRegistry]]:
    a, b = RedisCallRegistry(states()), RedisCallRegistry(states())
    a.start()
    b.start()
    await asyncio.sleep(0.1)  # subscribed to their command channels
    yield a, b
    await a.aclose()
    await b.aclose()


def new_call(call_id: str = "rtc_test", opener: str = "sk-opener") -> Call:
    return Call(call_id, opener, FakePeer())  # type: ignore[arg-type]


async def until(predicate: Callable[[], bool], timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def test_a_remote_sideband_sees_the_calls_events_and_drives_it(registries) -> None:
    a, b = registries
    call = new_call()
    await a.add(call)
    driver: FakeDriver = call.driver  # type: ignore[assignment]
    websocket = FakeWebSocket()
    remote = await b.attach_elsewhere(call.id, websocket)  # type: ignore[arg-type]
    assert isinstance(remote, RemoteDriver)
    assert remote.session_id == driver.session_id
    assert remote.session_wire() == driver.wire
    seen: list[dict[str, Any]] = []
    remote.add_sink(seen.append)
    try:
        # The holder's events reach the remote sideband, in order, audio deltas aside.
        for n in range(50):
            driver.emit({"type": "response.output_text.delta", "delta": str(n)})
        driver.emit({"type": "response.output_audio.delta", "delta": "AAAA"})
        driver.emit({"type": "response.done"})
        await until(lambda: len(seen) == 51)
        assert [e.get("delta") for e in seen[:50]] == [str(n) for n in range(50)]
        assert seen[-1]["type"] == "response.done"

        # Its client events reach the holder's driver, typed, in order; its rejections too.
        remote.receive(parse_client_event('{"type": "response.create", "event_id": "e1"}'))
        remote.receive(
            parse_client_event(
                '{"type": "conversation.item.create", "item": {"type": "function_call_output",'
                ' "call_id": "c1", "output": "{\\"sky\\": \\"sunny\\"}"}}'
            )
        )
        remote.reject(ProtocolError("Binary frames are not supported.", "invalid_binary_frame"))
        await until(lambda: len(driver.received) == 2 and len(driver.rejected) == 1)
        assert [e.type for e in driver.received] == ["response.create", "conversation.item.create"]
        assert driver.received[0].event_id == "e1"
        assert driver.received[1].item.output == '{"sky": "sunny"}'
        assert driver.rejected[0].code == "invalid_binary_frame"

        # The call ending closes the remote sideband as a local one is closed.
        await a.remove(call.id)
        assert await asyncio.wait_for(websocket.closed, 5) == (1000, "call ended")
        assert await b.attach_elsewhere(call.id, FakeWebSocket()) is None  # type: ignore[arg-type]
    finally:
        await remote.aclose()


def _parsed(event: dict[str, Any]) -> Any:
    try:
        return parse_client_dict(event)
    except ProtocolError:
        return None


@hypothesis_settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(event_objects.map(_parsed).filter(lambda parsed: parsed is not None))
def test_a_relayed_client_event_arrives_as_it_was_sent(parsed: Any) -> None:
    """What a remote sideband relays parses, on the holder, to the event it parsed: the same
    values, and the same fields set (a `session.update` applies only those)."""
    relayed = parse_client_dict(orjson.loads(dumps(relay_form(parsed))))
    assert relayed == parsed
    assert relayed.model_dump(exclude_unset=True) == parsed.model_dump(exclude_unset=True)


async def test_the_holder_stops_publishing_when_no_sideband_listens(registries) -> None:
    a, b = registries
    call = new_call()
    await a.add(call)
    driver: FakeDriver = call.driver  # type: ignore[assignment]
    remote = await b.attach_elsewhere(call.id, FakeWebSocket())  # type: ignore[arg-type]
    assert remote is not None
    remote.add_sink(lambda event: None)
    held = a._held[call.id]
    assert held.listening
    await remote.aclose()
    driver.emit({"type": "response.done"})  # nobody hears it: PUBLISH says 0 receivers
    await until(lambda: not held.listening)
    # Attaching again starts the events again.
    again = await b.attach_elsewhere(call.id, FakeWebSocket())  # type: ignore[arg-type]
    assert again is not None and held.listening
    await again.aclose()


async def test_unknown_calls_and_hang_ups_across_instances(registries) -> None:
    a, b = registries
    assert await b.attach_elsewhere("rtc_nope", FakeWebSocket()) is None  # type: ignore[arg-type]
    assert not await b.hang_up_elsewhere("rtc_nope", Principal("standard", "sk-x"))

    call = new_call(opener="ek_opener")
    await a.add(call)
    assert await a.get(call.id) is call and await b.get(call.id) is None  # held by a only
    # A client secret may hang up only the call it opened.
    assert not await b.hang_up_elsewhere(call.id, Principal("client_secret", "ek_other"))
    assert not call.peer.ended
    assert await b.hang_up_elsewhere(call.id, Principal("client_secret", "ek_opener"))
    assert call.peer.ended
    # Ended (not yet removed): another hang-up finds nothing to end.
    assert not await b.hang_up_elsewhere(call.id, Principal("standard", "sk-x"))


async def test_a_holder_that_does_not_answer_is_a_503_not_a_404(registries, states) -> None:
    a, b = registries
    call = new_call()
    await a.add(call)
    await a.aclose()  # registered, but no longer listening: as a holder that died
    with pytest.raises(SharedStateUnavailable, match="held by another instance"):
        await b.attach_elsewhere(call.id, FakeWebSocket())  # type: ignore[arg-type]


async def test_calls_registered_while_redis_was_away_are_registered_when_it_is_back(
    registries, redis_url, monkeypatch
) -> None:
    a, b = registries
    call = new_call()
    await a.add(call)
    redis.Redis.from_url(redis_url).flushall()  # what a restart with no persistence does
    assert await b.attach_elsewhere(call.id, FakeWebSocket()) is None  # type: ignore[arg-type]
    await a._register_all()  # what the heartbeat (every HEARTBEAT_S) does
    remote = await b.attach_elsewhere(call.id, FakeWebSocket())  # type: ignore[arg-type]
    assert remote is not None
    await remote.aclose()


async def test_the_holder_never_waits_for_redis(monkeypatch) -> None:
    """With Redis unreachable, emitting events costs the session nothing and raises nothing;
    past the queue's bound they are dropped."""
    monkeypatch.setattr(redis_publisher, "QUEUE_LIMIT", 100)
    state = RedisState(UNREACHABLE)
    registry = RedisCallRegistry(state)
    registry.start()
    try:
        call = new_call()
        await registry.add(call)  # registration fails quietly; the call goes on
        registry._held[call.id].listening = True
        driver: FakeDriver = call.driver  # type: ignore[assignment]
        started = time.perf_counter()
        for n in range(10_000):
            driver.emit({"type": "response.output_text.delta", "delta": str(n)})
        assert time.perf_counter() - started < 1.0
        assert registry._publisher._queue.qsize() <= 100
        await registry.remove(call.id)
    finally:
        await registry.aclose()
        await state.aclose()
