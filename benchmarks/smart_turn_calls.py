"""What one Smart Turn call costs, and what makes it slow: features and inference apart, intra-op
threads, and the call through the server's judge (its thread pool, from an event loop) while
the loop's thread is kept busy with Python work, as a server's is.

Run: python -m benchmarks.smart_turn_calls [--calls 30]
Prints a table and writes benchmarks/results/smart_turn_calls.json. Wall and CPU (the calling
thread's) ms per call; the audio is 3 s of real speech (espeak-ng), the model hears the last 8 s.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from benchmarks.lib.speech import speak
from benchmarks.lib.stats import percentile, print_table, write_json
from openrealtime.backends.turn import smart_turn
from openrealtime.backends.turn.features import last_window, log_mel
from openrealtime.runtime import turn_judge


def timed(call: Callable[[], Any], n: int) -> dict[str, float]:
    walls, cpus = [], []
    for _ in range(n):
        wall, cpu = time.perf_counter(), time.thread_time()
        call()
        cpus.append((time.thread_time() - cpu) * 1000)
        walls.append((time.perf_counter() - wall) * 1000)
    return {
        "wall_p50": percentile(walls, 50),
        "wall_p95": percentile(walls, 95),
        "cpu_p50": percentile(cpus, 50),
    }


def through_judge(pcm: np.ndarray, n: int, busy_loop: bool) -> dict[str, float]:
    """`turn_judge.probability_complete` awaited from an event loop, optionally while the
    loop's thread runs pure-Python work (holding the GIL) between awaits."""

    async def run() -> list[float]:
        stop = False

        async def hog() -> None:
            while not stop:
                end = time.perf_counter() + 0.004  # 4 ms slices of Python, as a busy loop
                while time.perf_counter() < end:
                    sum(range(200))
                await asyncio.sleep(0)

        task = asyncio.create_task(hog()) if busy_loop else None
        walls = []
        for _ in range(n):
            start = time.perf_counter()
            await turn_judge.probability_complete(pcm)
            walls.append((time.perf_counter() - start) * 1000)
        stop = True
        if task is not None:
            await task
        return walls

    walls = asyncio.run(run())
    return {"wall_p50": percentile(walls, 50), "wall_p95": percentile(walls, 95), "cpu_p50": 0.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=30)
    args = parser.parse_args()
    n = args.calls
    pcm = speak("turn on the lights in the kitchen please", 16000)
    pcm = np.concatenate([pcm, np.zeros(3200, np.int16)])
    load_before = os.getloadavg()
    turn_judge.warm()
    features = log_mel(last_window(pcm))[None]
    results: dict[str, dict[str, float]] = {}
    results["features (numpy)"] = timed(lambda: log_mel(last_window(pcm)), n)
    for threads in (1, 2):
        session = smart_turn._session(threads)
        session.run(None, {"input_features": features})
        results[f"inference, {threads} intra-op thread(s)"] = timed(
            lambda s=session: s.run(None, {"input_features": features}), n
        )
    model = smart_turn.SmartTurn()
    results["whole call (features + inference)"] = timed(lambda: model.probability_complete(pcm), n)
    batch = [pcm] * 4
    per_turn = timed(lambda: model.probabilities_complete(batch), max(3, n // 4))
    results["batch of 4, per turn"] = {k: v / 4 for k, v in per_turn.items()}
    results["via turn_judge, idle loop"] = through_judge(pcm, n, busy_loop=False)
    results["via turn_judge, busy loop"] = through_judge(pcm, n, busy_loop=True)
    load_after = os.getloadavg()
    print_table(
        ["Smart Turn v3.2", "wall p50 ms", "wall p95 ms", "CPU p50 ms"],
        [[name, r["wall_p50"], r["wall_p95"], r["cpu_p50"]] for name, r in results.items()],
        title=f"{n} calls each; load {load_before[0]:.1f} → {load_after[0]:.1f}, "
        f"{os.cpu_count()} cores, {threading.active_count()} threads",
    )
    path = write_json(
        "smart_turn_calls.json",
        {"calls": n, "results": results, "loadavg": {"before": load_before, "after": load_after}},
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
