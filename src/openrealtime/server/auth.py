"""Who may connect: standard API keys from the settings (or anyone, in open mode), and the
client secrets they mint."""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ..config import Settings
from .secrets import PREFIX, SecretStore

SUBPROTOCOL_KEY_PREFIX = "openai-insecure-api-key."


def bearer_token(headers: dict[str, str], subprotocols: Sequence[str] = ()) -> str | None:
    """The key from `Authorization: Bearer KEY`, or from the browser's subprotocol form."""
    authorization = headers.get("authorization", "")
    if authorization[:7].lower() == "bearer ":
        return authorization[7:].strip() or None
    for protocol in subprotocols:
        if protocol.startswith(SUBPROTOCOL_KEY_PREFIX):
            return protocol[len(SUBPROTOCOL_KEY_PREFIX) :] or None
    return None


@dataclass(frozen=True, slots=True)
class Principal:
    kind: Literal["standard", "client_secret"]
    token: str  # the key or secret; limits are counted per token
    session: dict[str, Any] | None = None  # a client secret's minted configuration


class AuthError(Exception):
    """Why a token was refused, in words for the client."""


class Authenticator:
    def __init__(self, settings: Settings, secrets: SecretStore) -> None:
        self._keys = [key.encode() for key in settings.api_keys]
        self.secrets = secrets

    @property
    def open_mode(self) -> bool:
        return not self._keys

    def is_standard_key(self, token: str | None) -> bool:
        if token is not None and token.startswith(PREFIX):
            return False  # a client secret is never a standard key, even in open mode
        if self.open_mode:
            return True
        if token is None:
            return False
        candidate = token.encode()
        # Constant-time comparison: the keys are secrets.
        return any(hmac.compare_digest(candidate, key) for key in self._keys)

    async def authenticate(self, token: str | None) -> Principal:
        """A standard key or a live client secret; raises AuthError otherwise."""
        if token is not None and token.startswith(PREFIX):
            secret = await self.secrets.get(token)
            if secret is None:
                raise AuthError(
                    "This client secret is expired or unknown. Mint a new one with "
                    "POST /v1/realtime/client_secrets."
                )
            return Principal("client_secret", token, secret.session)
        if self.is_standard_key(token):
            return Principal("standard", token or "")
        raise AuthError(
            "Incorrect API key provided. Send a configured key as 'Authorization: Bearer KEY'."
            if token
            else "Missing API key. Send 'Authorization: Bearer KEY'."
        )
