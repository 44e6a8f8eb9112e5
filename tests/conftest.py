"""Shared fixtures: a scripted LLM, an openrealtime server on a loopback port, SDK clients."""

from __future__ import annotations

import typing
from collections.abc import Iterator
from typing import Any

import openai
import orjson
import pytest
import websocket
from openai.types.beta.realtime import RealtimeServerEvent as BetaServerEvent
from openai.types.realtime import RealtimeServerEvent as GaServerEvent
from pydantic import TypeAdapter
from redis_server import MISSING as REDIS_MISSING
from redis_server import RedisServer
from redis_server import installed as redis_installed
from scripted_llm import ScriptedLLM
from servers import ServerThread

from openrealtime.backends.registry import Backends, create_backends
from openrealtime.config import Settings
from openrealtime.server.app import create_app

API_KEY = "sk-test-key"
# The function tool of the tests, in the GA session shape (beta's is the same).
WEATHER_TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "Current weather for a city.",
    "parameters": {
        "type": "object",
        "properties": {
            "city": {"type": "string", "description": "City name"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            "days": {"type": "array", "items": {"type": "integer", "minimum": 1}},
        },
        "required": ["city"],
        "additionalProperties": False,
    },
}


def _by_type(union: Any) -> dict[str, TypeAdapter[Any]]:
    """One strict adapter per event type, so a failure names the one type that was expected."""
    members = typing.get_args(typing.get_args(union)[0]) or typing.get_args(union)
    return {
        typing.get_args(cls.model_fields["type"].annotation)[0]: TypeAdapter(cls)
        for cls in members
        if hasattr(cls, "model_fields")
    }


GA_EVENTS = _by_type(GaServerEvent)
BETA_EVENTS = _by_type(BetaServerEvent)


@pytest.fixture(scope="session")
def scripted_llm_server() -> Iterator[tuple[ScriptedLLM, ServerThread]]:
    llm = ScriptedLLM()
    with ServerThread(llm.app()) as thread:
        yield llm, thread


@pytest.fixture
def llm(scripted_llm_server: tuple[ScriptedLLM, ServerThread]) -> ScriptedLLM:
    scripted, _ = scripted_llm_server
    scripted.reset()
    return scripted


@pytest.fixture(scope="session")
def settings(scripted_llm_server: tuple[ScriptedLLM, ServerThread]) -> Settings:
    _, thread = scripted_llm_server
    return Settings(api_keys=[API_KEY], llm_base_url=thread.url + "/v1", llm_model="scripted-model")


@pytest.fixture(scope="session")
def backends(settings: Settings) -> Backends:
    return create_backends(settings)


@pytest.fixture(scope="session")
def server(settings: Settings, backends: Backends) -> Iterator[ServerThread]:
    with ServerThread(create_app(settings, backends)) as thread:
        yield thread


@pytest.fixture
def client(server: ServerThread) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key=API_KEY)


@pytest.fixture
def async_client(server: ServerThread) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=server.url + "/v1", api_key=API_KEY)


def validated(raw: bytes | str, *, beta: bool = False) -> Any:
    """Parse a server event strictly with the SDK's own pydantic types (required fields and
    literals checked; the SDK's lenient `recv()` would not)."""
    event_type = orjson.loads(raw)["type"]
    adapters = BETA_EVENTS if beta else GA_EVENTS
    assert event_type in adapters, f"{event_type} is not a {'beta' if beta else 'GA'} server event"
    return adapters[event_type].validate_json(raw)


def recv(connection: Any, *, beta: bool = False) -> Any:
    return validated(connection.recv_bytes(), beta=beta)


async def arecv(connection: Any, *, beta: bool = False) -> Any:
    return validated(await connection.recv_bytes(), beta=beta)


def recv_until(
    connection: Any, event_type: str, *, beta: bool = False, limit: int = 500
) -> list[Any]:
    """Receive (validating each) up to and including the first event of `event_type`."""
    events = []
    for _ in range(limit):
        event = recv(connection, beta=beta)
        events.append(event)
        if event.type == event_type:
            return events
    raise AssertionError(f"no {event_type} within {limit} events: {[e.type for e in events]}")


async def arecv_until(
    connection: Any, event_type: str, *, beta: bool = False, limit: int = 500
) -> list[Any]:
    events = []
    for _ in range(limit):
        event = await arecv(connection, beta=beta)
        events.append(event)
        if event.type == event_type:
            return events
    raise AssertionError(f"no {event_type} within {limit} events: {[e.type for e in events]}")


def close_frame(ws: Any) -> tuple[int, str]:
    """Read a `websocket-client` connection until its close frame: (code, reason)."""
    while True:
        opcode, data = ws.recv_data(control_frame=True)
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            return int.from_bytes(data[:2], "big"), data[2:].decode()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A real redis-server on a free loopback port, for the shared-state tests."""
    if not redis_installed():
        pytest.skip(REDIS_MISSING)
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.stop()
