"""A debug-only side channel into the openrealtime process, for the benchmark (nothing in
src/ knows of it).

A thread serves a Unix socket that answers one JSON line per connection with what an outsider
cannot see in /proc: the number of asyncio tasks on the server's event loop, Python threads,
allocated Python memory blocks, and live instances of the per-session classes (after a
`gc.collect()` when asked "gc"); asked "lag", how long a callback scheduled from outside
waited for the event loop to run it; asked "tracemalloc PATH", it dumps a tracemalloc
snapshot there (when the server runs with PYTHONTRACEMALLOC).
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import socket
import sys
import threading
import time
from collections import Counter
from typing import Any

# The per-session objects whose live count after all sessions closed must come back to zero.
TRACKED = {
    "Session": "openrealtime.core.session",
    "SessionDriver": "openrealtime.runtime.driver",
    "TranscriptFeed": "openrealtime.runtime.transcripts",
    "SpeechPipeline": "openrealtime.runtime.speech",
    "Response": "openrealtime.core.responses",
}


class LoopProbe:
    """An ASGI wrapper around the app that learns the server's event loop from its first call."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.loop: asyncio.AbstractEventLoop | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self.loop is None:
            self.loop = asyncio.get_running_loop()
        await self.app(scope, receive, send)


def _live_instances() -> dict[str, int]:
    classes = {}
    for name, module in TRACKED.items():
        mod = sys.modules.get(module)
        if mod is not None and hasattr(mod, name):
            classes[getattr(mod, name)] = name
    counts = dict.fromkeys(classes.values(), 0)
    for obj in gc.get_objects():
        found = classes.get(type(obj))
        if found is not None:
            counts[found] += 1
    return counts


async def _inside(collect: bool) -> dict[str, Any]:
    """Runs on the server's event loop thread (so the task set is stable while counted)."""
    if collect:
        gc.collect()
    tasks = asyncio.all_tasks()
    names: Counter[str] = Counter()
    for task in tasks:
        coro = task.get_coro()
        names[getattr(coro, "__qualname__", type(coro).__name__)] += 1
    # The one task this adds to the count is the query's own: take it off.
    names[_inside.__qualname__] -= 1
    return {
        "tasks": len(tasks) - 1,
        "tasks_by_coroutine": dict((+names).most_common(12)),
        "threads": threading.active_count(),
        "allocated_blocks": sys.getallocatedblocks(),
        "gc_objects": len(gc.get_objects()),
        "live": _live_instances(),
    }


def _lag(loop: asyncio.AbstractEventLoop) -> dict[str, Any]:
    """How long a callback waits for the loop: what every event waits, too."""
    ran = threading.Event()
    asked = time.monotonic()
    waited: list[float] = []

    def on_loop_thread() -> None:
        waited.append(time.monotonic() - asked)
        ran.set()

    loop.call_soon_threadsafe(on_loop_thread)
    ran.wait(60)
    return {"lag_s": waited[0] if waited else None}


def _tracemalloc(path: str) -> dict[str, Any]:
    import tracemalloc

    if not tracemalloc.is_tracing():
        return {"error": "not tracing: start the server with PYTHONTRACEMALLOC"}
    gc.collect()
    tracemalloc.take_snapshot().dump(path)
    return {"ok": True}


def _answer(command: str, probe: LoopProbe) -> dict[str, Any]:
    loop = probe.loop
    if loop is None:
        return {"error": "the server's loop has not started"}
    if command.startswith("tracemalloc "):
        return _tracemalloc(command.split(" ", 1)[1])
    if command == "lag":
        return _lag(loop)
    return asyncio.run_coroutine_threadsafe(_inside(command == "gc"), loop).result(timeout=30)


def _serve(path: str, probe: LoopProbe) -> None:
    if os.path.exists(path):
        os.unlink(path)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(4)
    while True:
        conn, _ = server.accept()
        with conn:
            try:
                reply = _answer(conn.recv(4096).decode().strip(), probe)
            except Exception as exc:  # the side channel must never disturb the server
                reply = {"error": repr(exc)}
            conn.sendall(json.dumps(reply).encode() + b"\n")


def serve_in_thread(path: str, probe: LoopProbe) -> None:
    threading.Thread(target=_serve, args=(path, probe), daemon=True).start()


def _collect_every(seconds: float) -> None:
    while True:
        time.sleep(seconds)
        gc.collect()


def collect_in_thread(seconds: float) -> None:
    """A diagnostic: run the cyclic garbage collector every so often, to tell memory held by
    uncollected garbage from memory leaked."""
    threading.Thread(target=_collect_every, args=(seconds,), daemon=True).start()
