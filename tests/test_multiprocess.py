"""Two openrealtime processes (`python -m openrealtime serve --redis-url ...`) serving one
deployment through a real redis-server, with the scripted LLM in this process: a client
secret minted on one opens sessions on the other and expires on both; a WebRTC call answered
by one is watched and steered by a sideband on the other; the per-key limit holds across
them; and losing Redis refuses what needs it while running sessions go on, until it is back.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest
import websocket
from conftest import API_KEY, close_frame, recv, recv_until
from redis_server import MISSING, RedisServer, installed
from scripted_llm import ScriptedLLM
from servers import ServerThread, free_port
from webrtc_client import CallClient, sideband_answers_a_tool_call

AUTH = {"Authorization": f"Bearer {API_KEY}"}


class Instance:
    """One `openrealtime serve` process on a loopback port, its output in a log file."""

    def __init__(self, name: str, args: list[str], logs: Path) -> None:
        self.name = name
        self.port = free_port()
        self.log_path = logs / f"{name}.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("OPENREALTIME_")}
        command = [sys.executable, "-m", "openrealtime", "serve", "--port", str(self.port)]
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                command + args, stdout=log, stderr=subprocess.STDOUT, env=env
            )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/realtime"

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"instance {self.name} exited:\n{self.log()}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"instance {self.name} did not get ready:\n{self.log()}")
            time.sleep(0.1)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


@dataclass
class Cluster:
    redis: RedisServer
    a: Instance
    b: Instance


@pytest.fixture(scope="module")
def cluster(
    scripted_llm_server: tuple[ScriptedLLM, ServerThread], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    if not installed():
        pytest.skip(MISSING)
    _, llm_thread = scripted_llm_server
    # Its own Redis: a test here kills and restarts it.
    redis = RedisServer().start()
    logs = tmp_path_factory.mktemp("instances")
    args = [
        "--api-key",
        API_KEY,
        "--redis-url",
        redis.url,
        "--llm-base-url",
        llm_thread.url + "/v1",
        "--llm-model",
        "scripted-model",
        "--max-sessions-per-key",
        "2",
        "--shutdown-grace-seconds",
        "1",
        "--log-level",
        "info",
    ]
    a, b = Instance("a", args, logs), Instance("b", args, logs)
    try:
        a.wait_ready()
        b.wait_ready()
        yield Cluster(redis, a, b)
    finally:
        a.stop()
        b.stop()
        redis.stop()


@pytest.fixture(autouse=True)
def show_logs(request: pytest.FixtureRequest) -> Iterator[None]:
    """Printed after each test; pytest shows it when the test failed."""
    yield
    if "cluster" in request.fixturenames:
        cluster: Cluster = request.getfixturevalue("cluster")
        for instance in (cluster.a, cluster.b):
            print(f"--- instance {instance.name} ---\n{instance.log()[-6000:]}")


def handshake(instance: Instance, key: str, query: str = "") -> tuple[int, dict | None]:
    """The handshake's status (101 if accepted; the connection is then closed) and the body
    of a refusal."""
    try:
        websocket.create_connection(
            instance.ws_url + query, header=[f"Authorization: Bearer {key}"], timeout=10
        ).close()
    except websocket.WebSocketBadStatusException as refused:
        return refused.status_code, json.loads(refused.resp_body or b"null")
    return 101, None


def sdk(instance: Instance, key: str = API_KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=instance.url + "/v1", api_key=key, max_retries=0)


def text_turn(connection: openai.resources.realtime.realtime.RealtimeConnection, text: str):
    connection.conversation.item.create(
        item={
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": text}],
        }
    )
    connection.response.create()
    return recv_until(connection, "response.done")[-1].response


def test_a_client_secret_minted_on_one_instance_works_on_the_other_until_it_expires(
    cluster: Cluster,
) -> None:
    a, b = cluster.a, cluster.b
    minted = sdk(a).realtime.client_secrets.create(
        expires_after={"anchor": "created_at", "seconds": 10},
        session={"type": "realtime", "instructions": "Answer in one word."},
    )
    secret = minted.value
    with sdk(b, secret).realtime.connect(model="gpt-realtime") as connection:
        created = recv(connection)
        assert created.type == "session.created"
        assert created.session.instructions == "Answer in one word."  # the minted configuration
    assert handshake(a, secret) == (101, None)

    # Redis drops it when it expires: every instance refuses it from that moment.
    time.sleep(max(0.0, minted.expires_at - time.time()) + 0.3)
    for instance in (a, b):
        status, body = handshake(instance, secret)
        assert status == 401
        assert body is not None and "expired or unknown" in body["error"]["message"]


async def test_a_call_answered_by_one_instance_is_steered_by_a_sideband_on_the_other(
    cluster: Cluster, llm: ScriptedLLM
) -> None:
    a, b = cluster.a, cluster.b
    client = CallClient(a.url, API_KEY)  # the browser's call goes to A
    # The application server's sideband lands on B.
    on_b = openai.AsyncOpenAI(base_url=b.url + "/v1", api_key=API_KEY, max_retries=0)
    try:
        await sideband_answers_a_tool_call(client, on_b, llm)

        # B's sideband sending what is not an event: the session on A reports it, to all.
        ws = await asyncio.to_thread(
            websocket.create_connection,
            f"{b.ws_url}?call_id={client.call_id}",
            header=[f"Authorization: Bearer {API_KEY}"],
            timeout=10,
        )
        assert json.loads(await asyncio.to_thread(ws.recv))["type"] == "session.updated"
        await asyncio.to_thread(ws.send, "{not json")
        reported = json.loads(await asyncio.to_thread(ws.recv))
        assert (reported["type"], reported["error"]["code"]) == ("error", "invalid_json")
        assert (await client.until("error"))[-1].error.code == "invalid_json"

        # Hung up from B: the call on A ends, and B's sideband is closed.
        async with httpx.AsyncClient(base_url=b.url, timeout=20) as http:
            hung_up = await http.post(f"/v1/realtime/calls/{client.call_id}/hangup", headers=AUTH)
            assert hung_up.status_code == 200

            # As a local sideband is closed.
            assert (await asyncio.to_thread(close_frame, ws))[0] == 1000
            ws.close()
            for instance in (a, b):
                status, body = await asyncio.to_thread(
                    handshake, instance, API_KEY, f"?call_id={client.call_id}"
                )
                assert status == 404
                assert body is not None and body["error"]["code"] == "call_not_found"
            again = await http.post(f"/v1/realtime/calls/{client.call_id}/hangup", headers=AUTH)
            assert again.status_code == 404
    finally:
        await client.close()


def test_the_per_key_limit_holds_across_instances(cluster: Cluster) -> None:
    a, b = cluster.a, cluster.b
    with (
        sdk(a).realtime.connect(model="gpt-realtime") as first,
        sdk(b).realtime.connect(model="gpt-realtime") as second,
    ):
        assert recv(first).type == recv(second).type == "session.created"
        for instance in (a, b):
            status, body = handshake(instance, API_KEY)
            assert status == 429, body
            assert body is not None and "--max-sessions-per-key" in body["error"]["message"]
    # Both closed: their slots are back, on either instance.
    assert handshake(b, API_KEY) == (101, None)
    assert handshake(a, API_KEY) == (101, None)


async def test_losing_redis_closes_remote_sidebands_and_the_call_goes_on(
    cluster: Cluster,
) -> None:
    a, b = cluster.a, cluster.b
    client = CallClient(a.url, API_KEY)
    try:
        await client.connect(session={"type": "realtime", "output_modalities": ["text"]})
        await client.until("session.created")
        ws = await asyncio.to_thread(
            websocket.create_connection,
            f"{b.ws_url}?call_id={client.call_id}",
            header=[f"Authorization: Bearer {API_KEY}"],
            timeout=10,
        )
        assert json.loads(await asyncio.to_thread(ws.recv))["type"] == "session.updated"

        def turn() -> None:
            client.send(
                {
                    "type": "conversation.item.create",
                    "item": {
                        "type": "message",
                        "role": "user",
                        "content": [{"type": "input_text", "text": "Hello?"}],
                    },
                }
            )
            client.send({"type": "response.create"})

        cluster.redis.kill()
        try:
            # B's sideband cannot follow the call any more, and is told so.
            code, reason = await asyncio.to_thread(close_frame, ws)
            assert code == 1011 and "Redis" in reason
            ws.close()
            # The call on A, whose events A was publishing for B, goes on.
            turn()
            done = (await client.until("response.done"))[-1].response
            assert done.status == "completed"
            await asyncio.sleep(0.5)  # A's attempts to relay them fail (quietly) meanwhile
        finally:
            cluster.redis.start()  # the same port, empty

        # Back: A registers its call again, and B's sidebands reach it.
        deadline = time.monotonic() + 15
        while True:
            status, _ = await asyncio.to_thread(handshake, b, API_KEY, f"?call_id={client.call_id}")
            if status == 101 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        assert status == 101
    finally:
        await client.close()


def test_losing_redis_refuses_what_needs_it_and_running_sessions_go_on(cluster: Cluster) -> None:
    a, b = cluster.a, cluster.b
    with sdk(a).realtime.connect(model="gpt-realtime") as running:
        assert recv(running).type == "session.created"
        running.session.update(session={"type": "realtime", "output_modalities": ["text"]})
        recv_until(running, "session.updated")
        assert text_turn(running, "Hello?").status == "completed"

        cluster.redis.kill()
        try:
            # The running session does not notice.
            assert text_turn(running, "Still there?").status == "completed"

            # What needs Redis is refused, saying why, in OpenAI's shape.
            minted = httpx.post(a.url + "/v1/realtime/client_secrets", json={}, headers=AUTH)
            assert minted.status_code == 503
            error = minted.json()["error"]
            assert error["code"] == "shared_state_unavailable"
            assert error["type"] == "server_error"
            assert "Redis" in error["message"] and "could not be stored" in error["message"]
            status, body = handshake(b, "ek_minted_before_the_outage")
            assert status == 503 and body is not None
            assert "could not be checked" in body["error"]["message"]
            status, body = handshake(b, API_KEY)  # the per-key limit cannot be checked
            assert status == 503 and body is not None
            assert "per-key session limit" in body["error"]["message"]
            status, body = handshake(b, API_KEY, "?call_id=rtc_somewhere")
            assert status == 503 and body is not None
            assert body["error"]["code"] == "shared_state_unavailable"
        finally:
            cluster.redis.start()  # the same port, empty

        # Back: everything recovers without a restart.
        deadline = time.monotonic() + 15
        while True:
            minted = httpx.post(a.url + "/v1/realtime/client_secrets", json={}, headers=AUTH)
            if minted.status_code == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert minted.status_code == 200, minted.text
        assert handshake(b, minted.json()["value"]) == (101, None)
        assert handshake(b, API_KEY) == (101, None)
        assert text_turn(running, "And now?").status == "completed"
