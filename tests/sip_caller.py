"""For the SIP tests: the phone (benchmarks/lib/sip_phone.py, shared with the benchmark) and a
webhook receiver that verifies each webhook with the official SDK (`client.webhooks.unwrap`),
as an operator's server would.
"""

from __future__ import annotations

import asyncio
import queue
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import openai
from fastapi import FastAPI, Request, Response
from servers import ServerThread

from benchmarks.lib.sip_phone import Phone, free_sip_port

__all__ = ["Phone", "WebhookReceiver", "free_sip_port", "webhook_receiver"]


class WebhookReceiver:
    """The operator's webhook endpoint: each POST verified and parsed with the official SDK
    (a bad signature is answered 400 and recorded as such)."""

    def __init__(self, secret: str) -> None:
        self.sdk = openai.OpenAI(api_key="unused", webhook_secret=secret)
        self.events: queue.Queue[Any] = queue.Queue()
        app = FastAPI()

        @app.post("/webhook")
        async def webhook(request: Request) -> Response:
            body = (await request.body()).decode()
            try:
                event = self.sdk.webhooks.unwrap(body, dict(request.headers))
            except Exception as exc:  # InvalidWebhookSignatureError and friends
                self.events.put(exc)
                return Response(status_code=400)
            self.events.put(event)
            return Response(status_code=200)

        self.app = app

    async def next_event(self, timeout: float = 10) -> Any:
        event = await asyncio.to_thread(self.events.get, timeout=timeout)
        if isinstance(event, Exception):
            raise event
        return event


@contextmanager
def webhook_receiver(secret: str) -> Iterator[tuple[WebhookReceiver, str]]:
    receiver = WebhookReceiver(secret)
    with ServerThread(receiver.app) as thread:
        yield receiver, thread.url + "/webhook"
