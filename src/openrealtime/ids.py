"""Identifiers in OpenAI's style: a prefix and a random base62 tail."""

import secrets
import string

_ALPHABET = string.ascii_letters + string.digits


def new_id(prefix: str, length: int = 22) -> str:
    return prefix + "_" + "".join(secrets.choice(_ALPHABET) for _ in range(length))


def new_event_id() -> str:
    # Event ids are minted for every delta; a hex tail is ~10x cheaper than choice() per char.
    return "event_" + secrets.token_hex(11)
