"""Short-lived client secrets (`ek_…`): minted by a standard key, each carrying the session
configuration it was minted with. In-process by default; a shared store can replace it."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

DEFAULT_TTL_S = 600
MIN_TTL_S = 10
MAX_TTL_S = 7200
PREFIX = "ek_"


@dataclass(frozen=True, slots=True)
class ClientSecret:
    value: str
    expires_at: int  # unix seconds
    session: dict[str, Any]  # the GA session configuration, wire shape


class SecretStore(Protocol):
    async def put(self, secret: ClientSecret) -> None: ...

    async def get(self, value: str) -> ClientSecret | None:
        """The secret if it exists and has not expired."""
        ...


class MemorySecretStore:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._secrets: dict[str, ClientSecret] = {}
        self._clock = clock

    async def put(self, secret: ClientSecret) -> None:
        now = self._clock()
        # Expired secrets are dropped as new ones come in, so the map stays bounded.
        for value in [v for v, s in self._secrets.items() if s.expires_at <= now]:
            del self._secrets[value]
        self._secrets[secret.value] = secret

    async def get(self, value: str) -> ClientSecret | None:
        secret = self._secrets.get(value)
        if secret is None or secret.expires_at <= self._clock():
            return None
        return secret


def new_secret(session: dict[str, Any], ttl_s: int, now: float) -> ClientSecret:
    return ClientSecret(PREFIX + secrets.token_urlsafe(24), int(now) + ttl_s, session)
