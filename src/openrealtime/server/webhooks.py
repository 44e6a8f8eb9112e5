"""Outgoing webhooks, signed as OpenAI signs its own (Standard Webhooks), so that the official
SDK's `client.webhooks.unwrap(body, headers)` verifies them with the same `whsec_` secret:

- `webhook-id`: the event's id; `webhook-timestamp`: Unix seconds;
- `webhook-signature`: `v1,` and the base64 HMAC-SHA256 of `{id}.{timestamp}.{body}`, keyed by
  the base64-decoded part of the secret after `whsec_`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import Any

import orjson

from ..ids import new_id


def sign(secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def call_incoming(call_id: str, sip_headers: list[dict[str, str]], now: float) -> dict[str, Any]:
    """The `realtime.call.incoming` event, as OpenAI sends it."""
    return {
        "object": "event",
        "id": new_id("evt"),
        "type": "realtime.call.incoming",
        "created_at": int(now),
        "data": {"call_id": call_id, "sip_headers": sip_headers},
    }


def signed_request(event: dict[str, Any], secret: str | None) -> tuple[bytes, dict[str, str]]:
    """The body and headers to POST `event` with (unsigned without a secret)."""
    body = orjson.dumps(event)
    timestamp = int(time.time())
    headers = {
        "content-type": "application/json",
        "webhook-id": event["id"],
        "webhook-timestamp": str(timestamp),
    }
    if secret is not None:
        headers["webhook-signature"] = sign(secret, event["id"], timestamp, body)
    return body, headers
