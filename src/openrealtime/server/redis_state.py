"""Shared state in Redis (`--redis-url`): the connection every Redis piece uses, the names of
what openrealtime keeps there, and the store of client secrets.

Everything lives under `openrealtime:`:

| key or channel                          | what                                   | lifetime                 |
|-----------------------------------------|----------------------------------------|--------------------------|
| `openrealtime:secret:{digest}`          | a client secret: `{expires_at, session}` | the secret's (key TTL)   |
| `openrealtime:call:{call_id}`           | `{instance, opener}` of a live call    | 30 s, refreshed every 10 s |
| `openrealtime:call:{call_id}:events`    | channel: the call's events, for remote sidebands | —              |
| `openrealtime:instance:{instance}`      | channel: commands to an instance's calls | —                      |
| `openrealtime:reply:{nonce}`            | channel: the answer to one command     | —                        |
| `openrealtime:sessions:{digest}`        | sorted set: a key's sessions, by lease expiry | 30 s, refreshed every 10 s |

Tokens (API keys, client secrets) appear only as digests: someone reading Redis learns no
credential. Time-to-live is Redis's own clock, so every instance sees a secret expire at once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import orjson
from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import RedisError

from .errors import SharedStateUnavailable
from .secrets import ClientSecret

log = logging.getLogger(__name__)

PREFIX = "openrealtime:"
# What a lost, refused, reset or silent connection raises (redis-py wraps most of them).
ERRORS = (RedisError, OSError)
# Short: an operation that needs Redis should fail in a couple of seconds, not hang.
TIMEOUT_S = 2.0
# A live call's registration lives this long, renewed every HEARTBEAT_S (server/redis_calls.py).
CALL_TTL_S = 30.0
HEARTBEAT_S = 10.0
POLL_S = 5.0  # pub/sub reads wake this often, so the connection's health check runs


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()[:32]


def call_key(call_id: str) -> str:
    return f"{PREFIX}call:{call_id}"


def events_channel(call_id: str) -> str:
    return f"{PREFIX}call:{call_id}:events"


def instance_channel(instance: str) -> str:
    return f"{PREFIX}instance:{instance}"


def dumps(value: Any) -> bytes:
    try:
        return orjson.dumps(value)
    except TypeError:  # integers past 64 bits, which a client may send and orjson refuses
        return json.dumps(value, separators=(",", ":")).encode()


def ms(seconds: float) -> int:
    return int(seconds * 1000)


async def close_quietly(pubsub: PubSub) -> None:
    try:
        await pubsub.aclose()
    except Exception:  # a pub/sub on a lost connection may fail to unsubscribe; it is gone
        log.debug("pub/sub close failed", exc_info=True)


class RedisState:
    """One Redis client per process (a pool), shared by the secret store, the call registry
    and the limiter, and this process's instance id."""

    def __init__(self, url: str) -> None:
        self.client: Redis = Redis.from_url(
            url,
            socket_timeout=TIMEOUT_S,
            socket_connect_timeout=TIMEOUT_S,
            # One quick retry: a restarted server is reconnected to; a dead one fails fast.
            retry=Retry(ExponentialBackoff(cap=0.2, base=0.05), 1),
            # Pub/sub connections sit idle; a ping now and then finds a dead one.
            health_check_interval=10,
        )
        self.display_url = _without_password(url)
        # Readable in logs and `CLIENT LIST`; the random tail tells restarts apart.
        self.instance = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"

    async def check(self) -> None:
        """At start-up: say so if Redis cannot be reached (the server starts anyway; what
        needs Redis answers 503 until it can)."""
        try:
            await self.client.ping()
        except ERRORS as exc:
            log.warning(
                "Redis at %s is unreachable (%s): client secrets, per-key limits and calls held "
                "by other instances will be refused with 503 until it is.",
                self.display_url,
                exc,
            )

    async def aclose(self) -> None:
        await self.client.aclose()


class OutageLog:
    """Logs the start and the end of an outage once each, not every failed operation.
    `what` names what stops meanwhile: "relaying call events to other instances"."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.down = False

    def failed(self, exc: BaseException) -> None:
        if not self.down:
            self.down = True
            log.warning("Redis unreachable (%s): %s stops until it is back", exc, self.what)

    def succeeded(self) -> None:
        if self.down:
            self.down = False
            log.info("Redis reachable again: %s resumes", self.what)


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host += f":{parts.port}"
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit(parts._replace(netloc=user + host))


# --- client secrets ------------------------------------------------------------------------


class RedisSecretStore:
    """Client secrets any instance accepts. The key's TTL is the secret's lifetime, so the
    secret expires in Redis, for every instance at the same moment."""

    def __init__(self, redis: RedisState, clock: Callable[[], float] = time.time) -> None:
        self._client = redis.client
        self._clock = clock

    async def put(self, secret: ClientSecret) -> None:
        # `expires_at` is what the client was told; the TTL makes Redis agree with it.
        ttl_ms = int((secret.expires_at - self._clock()) * 1000)
        if ttl_ms <= 0:
            return
        record = orjson.dumps({"expires_at": secret.expires_at, "session": secret.session})
        try:
            await self._client.set(_secret_key(secret.value), record, px=ttl_ms)
        except ERRORS as exc:
            raise SharedStateUnavailable("The client secret could not be stored.") from exc

    async def get(self, value: str) -> ClientSecret | None:
        try:
            record = await self._client.get(_secret_key(value))
        except ERRORS as exc:
            raise SharedStateUnavailable("The client secret could not be checked.") from exc
        if record is None:
            return None  # unknown, or expired (Redis dropped it)
        data = orjson.loads(record)
        return ClientSecret(value, data["expires_at"], data["session"])


def _secret_key(value: str) -> str:
    return f"{PREFIX}secret:{digest(value)}"
