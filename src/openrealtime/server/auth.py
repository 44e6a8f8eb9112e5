"""Who may connect: standard API keys from the settings (or anyone, in open mode)."""

from __future__ import annotations

import hmac

from ..config import Settings

SUBPROTOCOL_KEY_PREFIX = "openai-insecure-api-key."


def bearer_token(headers: dict[str, str], subprotocols: list[str] = ()) -> str | None:  # type: ignore[assignment]
    """The key from `Authorization: Bearer KEY`, or from the browser's subprotocol form."""
    authorization = headers.get("authorization", "")
    if authorization[:7].lower() == "bearer ":
        return authorization[7:].strip() or None
    for protocol in subprotocols:
        if protocol.startswith(SUBPROTOCOL_KEY_PREFIX):
            return protocol[len(SUBPROTOCOL_KEY_PREFIX) :] or None
    return None


class Authenticator:
    def __init__(self, settings: Settings) -> None:
        self._keys = [key.encode() for key in settings.api_keys]

    @property
    def open_mode(self) -> bool:
        return not self._keys

    def is_standard_key(self, token: str | None) -> bool:
        if self.open_mode:
            return True
        if token is None:
            return False
        candidate = token.encode()
        # Constant-time comparison: the keys are secrets.
        return any(hmac.compare_digest(candidate, key) for key in self._keys)
