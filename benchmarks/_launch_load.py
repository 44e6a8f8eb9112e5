"""Launch the servers of `load.py` and `soak_disconnect.py` (run by them as subprocesses).

python benchmarks/_launch_load.py llm --port P [--delay S] [--chunks N]
    The scripted Chat Completions server of the tests (`tests/scripted_llm.py`) on uvicorn with
    uvloop + httptools, like `_launch.py llm`, but answering like a (fast) model: a text reply
    streamed as N chunks with S seconds between them, and a tool call when the request offers
    tools and the last message is a user message containing "[tool]". It also serves
    `POST /v1/audio/transcriptions` (an instant remote STT, as `_launch.py` does),
    `GET /bench/stats`: how many chat streams started, ran to their end, and were abandoned by
    the client before it (the stream's generator was cancelled or closed mid-way; the
    `cancelled` count of `ScriptedLLM` is reported too, it only sees cancellations that land
    while the stream sleeps between chunks), and `GET /bench/arrivals`: the time.monotonic()
    at which each chat and transcription request had been read, by request number. The number
    goes back in the reply — a text reply's usage `prompt_tokens`, a tool call's id
    `call_<n>`, a transcript "scripted transcript <n>" — so the client can tell when the
    backend had each of its requests. `GET /bench/streams`: per chat stream, the request's
    system message (a benchmark's tag), its start and end times, and whether it ran to its end.

python benchmarks/_launch_load.py openrealtime --port P --llm-url URL [--stt S] [--control PATH]
    openrealtime as `openrealtime serve` runs it (`create_app` under `uvicorn_config`, as
    `server.run.run` does), with the session limits raised out of the way (this measures
    capacity, not the limiter). With `--control PATH`, a debug-only side channel for the
    benchmark, outside the product: a thread serving a Unix socket at PATH that answers one
    JSON line per connection with what an outsider cannot see in /proc — the number of asyncio
    tasks on the server's event loop, Python threads, allocated Python memory blocks, and live
    instances of the per-session classes (after a `gc.collect()` when asked with "gc"); or,
    asked "lag", how long a callback scheduled from outside waited for the event loop to run it.
    `--collect-every S` (a diagnostic, off by default) runs `gc.collect()` every S seconds;
    "tracemalloc PATH" dumps a tracemalloc snapshot (when started with PYTHONTRACEMALLOC).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import os
import socket
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from fastapi import Request  # module level: FastAPI resolves the endpoints' annotations here

ROOT = Path(__file__).resolve().parents[1]
BENCH_API_KEY = "sk-bench"
TOOL_MARKER = "[tool]"


def run_llm(port: int, delay: float, chunks: int) -> None:
    sys.path.insert(0, str(ROOT / "tests"))
    import uvicorn
    from scripted_llm import Reply, ScriptedLLM, Text, ToolCalls

    words = ["Sure", ",", " here", " is", " a", " short", " answer", " for", " you", "."]
    pieces = [words[i % len(words)] for i in range(chunks)]
    stats: Counter[str] = Counter()
    # When each request had been read, by its number; the number travels back to the client
    # in the reply (as the usage's prompt_tokens, the tool call's id, the transcript's text),
    # so the client can split its latencies at the backend (CLOCK_MONOTONIC is shared).
    arrivals: dict[str, dict[int, float]] = {"chat": {}, "stt": {}}
    # Each chat stream: the request's system message (the benchmark's tag), when it started,
    # when it ended, and whether it ran to its end or was abandoned.
    streams: list[dict[str, Any]] = []

    class LoadLLM(ScriptedLLM):
        def next_reply(self, body: dict[str, Any]) -> Reply:
            # Not ScriptedLLM.next_reply: it keeps every body, which grows without bound here.
            stats["requests"] += 1
            n = stats["requests"]
            if len(arrivals["chat"]) < 1_000_000:
                arrivals["chat"][n] = time.monotonic()
            messages = body.get("messages") or []
            last = messages[-1] if messages else {}
            content = last.get("content")
            reply: Reply
            if (
                body.get("tools")
                and last.get("role") == "user"
                and isinstance(content, str)
                and TOOL_MARKER in content
            ):
                stats["tool_call_replies"] += 1
                reply = ToolCalls([(f"call_{n}", "get_weather", '{"city": "Paris", "unit": "c"}')])
            else:
                stats["text_replies"] += 1
                reply = Text(list(pieces), delay=delay, usage=(n, 7))
            system = messages[0].get("content") if messages else None
            setattr(reply, "bench_tag", system if isinstance(system, str) else "")  # noqa: B010
            return reply

        async def _stream(self, reply: Any, model: str) -> Any:
            stats["streams_started"] += 1
            record = {"tag": getattr(reply, "bench_tag", ""), "start": time.monotonic()}
            if len(streams) < 1_000_000:
                streams.append(record)
            finished = False
            try:
                async for piece in super()._stream(reply, model):
                    yield piece
                finished = True
            finally:
                record["end"] = time.monotonic()
                record["completed"] = finished
                stats["streams_completed" if finished else "streams_abandoned"] += 1

    llm = LoadLLM()
    app = llm.app()

    @app.post("/v1/audio/transcriptions")
    async def transcriptions(request: Request) -> dict[str, Any]:
        await request.body()
        stats["transcriptions"] += 1
        n = stats["transcriptions"]
        if len(arrivals["stt"]) < 1_000_000:
            arrivals["stt"][n] = time.monotonic()
        return {"text": f"scripted transcript {n}"}

    @app.get("/bench/arrivals")
    async def bench_arrivals() -> dict[str, Any]:
        return arrivals

    @app.get("/bench/streams")
    async def bench_streams() -> dict[str, Any]:
        return {"streams": streams}

    @app.get("/bench/stats")
    async def bench_stats() -> dict[str, Any]:
        return {**stats, "cancelled": llm.cancelled}

    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
        lifespan="on",
    )


# --- openrealtime, with the control side channel ---------------------------------------------

_LOOP: asyncio.AbstractEventLoop | None = None
# The per-session objects whose live count after all sessions closed must come back to zero.
_TRACKED = {
    "Session": "openrealtime.core.session",
    "SessionDriver": "openrealtime.runtime.driver",
    "TranscriptFeed": "openrealtime.runtime.transcripts",
    "SpeechPipeline": "openrealtime.runtime.speech",
    "Response": "openrealtime.core.responses",
}


def _live_instances() -> dict[str, int]:
    classes = {}
    for name, module in _TRACKED.items():
        mod = sys.modules.get(module)
        if mod is not None and hasattr(mod, name):
            classes[getattr(mod, name)] = name
    counts = dict.fromkeys(classes.values(), 0)
    for obj in gc.get_objects():
        found = classes.get(type(obj))
        if found is not None:
            counts[found] += 1
    return counts


def _stats(collect: bool) -> dict[str, Any]:
    """Runs on the server's event loop thread (so the task set is stable while counted)."""
    if collect:
        gc.collect()
    loop = asyncio.get_running_loop()
    tasks = asyncio.all_tasks(loop)
    names: Counter[str] = Counter()
    for task in tasks:
        coro = task.get_coro()
        names[getattr(coro, "__qualname__", type(coro).__name__)] += 1
    return {
        "tasks": len(tasks),
        "tasks_by_coroutine": dict(names.most_common(12)),
        "threads": threading.active_count(),
        "allocated_blocks": sys.getallocatedblocks(),
        "gc_objects": len(gc.get_objects()),
        "live": _live_instances(),
    }


def _serve_control(path: str) -> None:
    if os.path.exists(path):
        os.unlink(path)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(4)
    while True:
        conn, _ = server.accept()
        with conn:
            try:
                command = conn.recv(4096).decode().strip()
                loop = _LOOP
                if loop is None:
                    reply: dict[str, Any] = {"error": "the server's loop has not started"}
                elif command.startswith("tracemalloc "):
                    # A diagnostic (the server runs with PYTHONTRACEMALLOC): dump a snapshot.
                    import tracemalloc

                    if not tracemalloc.is_tracing():
                        reply = {"error": "not tracing: start the server with PYTHONTRACEMALLOC"}
                    else:
                        gc.collect()
                        tracemalloc.take_snapshot().dump(command.split(" ", 1)[1])
                        reply = {"ok": True}
                elif command == "lag":
                    # How long a callback waits for the loop: what every event waits, too.
                    ran = threading.Event()
                    asked = time.monotonic()
                    waited: list[float] = []

                    def on_loop_thread(
                        waited: list[float] = waited, asked: float = asked, ran: Any = ran
                    ) -> None:
                        waited.append(time.monotonic() - asked)
                        ran.set()

                    loop.call_soon_threadsafe(on_loop_thread)
                    ran.wait(60)
                    reply = {"lag_s": waited[0] if waited else None}
                else:

                    async def on_loop(collect: bool = command == "gc") -> dict[str, Any]:
                        return _stats(collect)

                    future = asyncio.run_coroutine_threadsafe(on_loop(), loop)
                    # The one task this adds to the count is the query's own: take it off.
                    reply = future.result(timeout=30)
                    reply["tasks"] -= 1
                    own = "_serve_control.<locals>.on_loop"
                    by = reply["tasks_by_coroutine"]
                    if by.get(own):
                        by[own] -= 1
                        if not by[own]:
                            del by[own]
                conn.sendall(json.dumps(reply).encode() + b"\n")
            except Exception as exc:  # the side channel must never disturb the server
                conn.sendall(json.dumps({"error": repr(exc)}).encode() + b"\n")


def _collect_every(seconds: float) -> None:
    while True:
        time.sleep(seconds)
        gc.collect()


def run_openrealtime(
    port: int,
    llm_url: str,
    log_level: str,
    stt: str,
    control: str | None,
    collect_every: float | None = None,
) -> None:
    for key in list(os.environ):
        if key.startswith("OPENREALTIME_"):
            del os.environ[key]  # the benchmark decides every setting
    import uvicorn

    from openrealtime.config import Settings
    from openrealtime.server.app import create_app
    from openrealtime.server.run import uvicorn_config

    options: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": port,
        "api_keys": [BENCH_API_KEY],
        "llm_base_url": llm_url,
        "llm_model": "scripted-model",
        "log_level": log_level,
        # "scripted": the OpenAI-compatible STT backend against the scripted server's instant
        # /v1/audio/transcriptions, to measure everything but the recogniser.
        "stt": "openai" if stt == "scripted" else stt,
        "stt_base_url": llm_url if stt == "scripted" else None,
    }
    # Session limits out of the way (the code measured may or may not enforce them yet).
    for name in ("max_sessions", "max_sessions_per_key"):
        if name in Settings.model_fields:
            options[name] = 100_000
    settings = Settings(**options)
    # As server.run.run does, with the app wrapped only to learn its event loop.
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    app = create_app(settings)

    async def asgi(scope: Any, receive: Any, send: Any) -> None:
        global _LOOP
        if _LOOP is None:
            _LOOP = asyncio.get_running_loop()
        await app(scope, receive, send)

    if control:
        threading.Thread(target=_serve_control, args=(control,), daemon=True).start()
    if collect_every:
        # A diagnostic, off by default: run the cyclic garbage collector every so often, to
        # tell memory held by uncollected garbage from memory leaked.
        threading.Thread(target=_collect_every, args=(collect_every,), daemon=True).start()
    uvicorn.Server(uvicorn_config(settings, asgi)).run()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("what", choices=["llm", "openrealtime"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--delay", type=float, default=0.02, help="llm: seconds between chunks")
    parser.add_argument("--chunks", type=int, default=10, help="llm: text chunks per reply")
    parser.add_argument("--llm-url")
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--stt", default="scripted", help="scripted (default) or pocketsphinx")
    parser.add_argument("--control", help="openrealtime: Unix socket path of the side channel")
    parser.add_argument(
        "--collect-every",
        type=float,
        help="openrealtime, diagnostic: gc.collect() every this many seconds",
    )
    args = parser.parse_args()
    if args.what == "llm":
        run_llm(args.port, args.delay, args.chunks)
    else:
        run_openrealtime(
            args.port, args.llm_url, args.log_level, args.stt, args.control, args.collect_every
        )


if __name__ == "__main__":
    main()
