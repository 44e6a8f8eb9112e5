"""The WebRTC client of the tests (`benchmarks.lib.webrtc.CallClient`, every event validated
strictly with the SDK's types), a server whose app the tests can reach, and the sideband
scenario that the local and the multi-process tests share.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import numpy as np
from conftest import WEATHER_TOOL, arecv, arecv_until, validated
from scripted_llm import Text, ToolCalls
from servers import ServerThread
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from benchmarks.lib import webrtc
from benchmarks.lib.webrtc import RATE
from openrealtime.backends.registry import Backends
from openrealtime.config import Settings
from openrealtime.server.app import create_app

__all__ = ["RATE", "CallClient", "rms", "serve", "sideband_answers_a_tool_call"]


class CallClient(webrtc.CallClient):
    def parse(self, message: str) -> Any:
        return validated(message)


def rms(samples: np.ndarray) -> float:
    if not len(samples):
        return 0.0
    return float(np.sqrt(np.mean(samples.astype(np.float64) ** 2)))


# --- a server whose app the tests can reach ---------------------------------------------------


def serve(settings: Settings, backends: Backends) -> Iterator[ServerThread]:
    """For a module's `rtc_server` fixture: an openrealtime server (as conftest's) with its app
    at hand, and a test-only route listing the coroutines of every task on its event loop (a
    call must leave none behind)."""
    app = create_app(settings, backends)

    async def tasks(request: Request) -> JSONResponse:
        current = asyncio.current_task()
        return JSONResponse(
            sorted(
                getattr(t.get_coro(), "__qualname__", "?")
                for t in asyncio.all_tasks()
                if t is not current
            )
        )

    app.router.routes.append(Route("/_test/tasks", tasks))

    with ServerThread(app) as thread:
        thread.app = app  # type: ignore[attr-defined]
        yield thread


async def sideband_answers_a_tool_call(client: CallClient, sideband_sdk: Any, llm: Any) -> None:
    """The browser's call (`client`, not yet connected) offers the weather tool; the
    application server's sideband attaches through `sideband_sdk` (an `openai.AsyncOpenAI` on
    this instance or another) and first gets the session as it is; the model calls the tool
    (scripted `call_w1`); the sideband sees the same events as the data channel, runs the tool
    and answers; the call hears it. The sideband has left when this returns."""
    llm.script(
        ToolCalls([("call_w1", "get_weather", '{"city": "Paris"}')]),
        Text(["It is ", "sunny in Paris."]),
    )
    await client.connect(
        session={"type": "realtime", "output_modalities": ["text"], "tools": [WEATHER_TOOL]}
    )
    created = (await client.until("session.created")).pop()
    async with sideband_sdk.realtime.connect(call_id=client.call_id) as sideband:
        # The current session first: an SDK gets state without asking.
        attached = await arecv(sideband)
        assert attached.type == "session.updated"
        assert attached.session.id == created.session.id
        assert attached.session.tools[0].name == "get_weather"

        client.send(
            {
                "type": "conversation.item.create",
                "item": {
                    "type": "message",
                    "role": "user",
                    "content": [{"type": "input_text", "text": "Weather in Paris?"}],
                },
            }
        )
        client.send({"type": "response.create"})
        on_channel = await client.until("response.done")
        on_sideband = await arecv_until(sideband, "response.done")
        assert [e.event_id for e in on_sideband] == [e.event_id for e in on_channel]
        call = on_sideband[-1].response.output[0]
        assert (call.type, call.name, call.call_id) == ("function_call", "get_weather", "call_w1")

        # The application server runs the tool and answers; the call hears it.
        await sideband.conversation.item.create(
            item={
                "type": "function_call_output",
                "call_id": call.call_id,
                "output": json.dumps({"sky": "sunny"}),
            }
        )
        await sideband.response.create()
        answer = (await client.until("response.done"))[-1].response
        assert answer.output[0].content[0].text == "It is sunny in Paris."
        assert llm.last_request["messages"][-1] == {
            "role": "tool",
            "tool_call_id": "call_w1",
            "content": '{"sky": "sunny"}',
        }
        await arecv_until(sideband, "response.done")
