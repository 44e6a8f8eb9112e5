"""Model workers (`backends/workers.py`): what a job costs the pool, and what two workers buy.

1. Overhead: the round trip of a job that does nothing with 3 s of 16 kHz PCM16 (96 KB), one
   at a time, and the longest the event loop stalled meanwhile (a 1 ms ticker's lateness).
2. Throughput: Whisper tiny.en on 8 utterances submitted at once, in-process (faster-whisper's
   own threads) and in 1 and 2 worker processes.

Run: python -m benchmarks.model_workers [--jobs N] [--utterances N]
Prints a table and writes benchmarks/results/model_workers.json.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import time
from typing import Any

from benchmarks.lib.machine import loadavg
from benchmarks.lib.speech import speak
from benchmarks.lib.stats import print_table, summary_ms, write_json
from openrealtime.backends.stt.base import Transcriber, TranscriptDone, TranscriptionOptions
from openrealtime.backends.stt.faster_whisper import FasterWhisperTranscriber
from openrealtime.backends.stt.pooled import PooledTranscriber
from openrealtime.backends.stt.whisper_weights import locate_model
from openrealtime.backends.workers import WorkerPool

SENTENCES = [
    "turn on the lights in the kitchen please",
    "what is the weather like today",
    "remind me to call my sister tomorrow morning",
    "how far is it from here to the station",
    "play some quiet music in the living room",
    "set a timer for ten minutes",
    "what time does the library close tonight",
    "add milk and bread to my shopping list",
]


def audio_length(model: object, pcm: bytes) -> int:
    """A job that does nothing: what is left is the pool's own cost."""
    return len(pcm)


async def loop_stall(stop: asyncio.Event) -> float:
    """The longest a 1 ms sleep overslept, in seconds, until `stop`."""
    worst = 0.0
    while not stop.is_set():
        before = time.perf_counter()
        await asyncio.sleep(0.001)
        worst = max(worst, time.perf_counter() - before - 0.001)
    return worst


async def overhead(jobs: int) -> dict[str, Any]:
    pool: WorkerPool[object] = WorkerPool("bench", object, 1)
    await asyncio.to_thread(pool.start)
    pcm = bytes(3 * 16000 * 2)
    for _ in range(20):
        await pool.run(audio_length, pcm)  # warm
    stop = asyncio.Event()
    ticker = asyncio.create_task(loop_stall(stop))
    times = []
    for _ in range(jobs):
        started = time.perf_counter()
        assert await pool.run(audio_length, pcm) == len(pcm)
        times.append(time.perf_counter() - started)
    stop.set()
    stall = await ticker
    await pool.aclose()
    return {"round_trip": summary_ms(times), "loop_stall_max_ms": round(stall * 1000, 3)}


async def transcribe_all(stt: Transcriber, utterances: list[bytes]) -> dict[str, Any]:
    options = TranscriptionOptions(language="en")

    async def one(pcm: bytes) -> tuple[float, str]:
        started = time.perf_counter()
        text = ""
        async for event in stt.transcribe(pcm, options):
            if isinstance(event, TranscriptDone):
                text = event.text
        return time.perf_counter() - started, text

    await one(utterances[0])  # warm
    stop = asyncio.Event()
    ticker = asyncio.create_task(loop_stall(stop))
    started = time.perf_counter()
    results = await asyncio.gather(*(one(pcm) for pcm in utterances))
    wall = time.perf_counter() - started
    stop.set()
    stall = await ticker
    audio_s = sum(len(p) for p in utterances) / 32000
    return {
        "wall_s": round(wall, 3),
        "utterances_per_s": round(len(utterances) / wall, 3),
        "audio_s_per_s": round(audio_s / wall, 3),
        "latency": summary_ms([r[0] for r in results]),
        "loop_stall_max_ms": round(stall * 1000, 3),
        "transcripts": [r[1] for r in results],
    }


async def throughput(utterances: int) -> dict[str, Any]:
    model_dir = locate_model("tiny.en")
    sentences = (SENTENCES * (utterances // len(SENTENCES) + 1))[:utterances]
    pcm = [speak(text, 16000).tobytes() for text in sentences]
    build = functools.partial(FasterWhisperTranscriber, model_dir)
    out: dict[str, Any] = {}
    in_process = build()
    await asyncio.to_thread(in_process.load)
    out["in-process"] = await transcribe_all(in_process, pcm)
    await in_process.aclose()
    for workers in (1, 2):
        pooled = PooledTranscriber(build, workers, max_wait_s=600.0)
        await asyncio.to_thread(pooled.load)
        out[f"{workers} worker(s)"] = await transcribe_all(pooled, pcm)
        await pooled.aclose()
    return out


async def run(args: argparse.Namespace) -> dict[str, Any]:
    load_before = loadavg()
    results = {"overhead": await overhead(args.jobs)}
    if not args.no_whisper:
        results["whisper_tiny_en"] = await throughput(args.utterances)
    results["loadavg_before"] = load_before
    results["loadavg_after"] = loadavg()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=300, help="round trips timed (default 300)")
    parser.add_argument("--utterances", type=int, default=8, help="submitted at once (default 8)")
    parser.add_argument("--no-whisper", action="store_true", help="only the overhead")
    args = parser.parse_args()
    results = asyncio.run(run(args))
    trip = results["overhead"]["round_trip"]
    print_table(
        ["job", "p50 ms", "p99 ms", "max ms", "loop stall max ms"],
        [
            [
                "3 s PCM16 round trip",
                trip["p50"],
                trip["p99"],
                trip["max"],
                results["overhead"]["loop_stall_max_ms"],
            ]
        ],
        title=f"Pool overhead ({trip['n']} jobs, one at a time)",
    )
    if "whisper_tiny_en" in results:
        rows = [
            [
                name,
                r["wall_s"],
                r["utterances_per_s"],
                r["latency"]["p50"],
                r["latency"]["max"],
                r["loop_stall_max_ms"],
            ]
            for name, r in results["whisper_tiny_en"].items()
        ]
        print_table(
            ["where", "wall s", "utt/s", "p50 ms", "max ms", "loop stall max ms"],
            rows,
            title=f"Whisper tiny.en, {args.utterances} utterances at once",
        )
    print(f"\nload average before {results['loadavg_before']}, after {results['loadavg_after']}")
    print(f"cpus: {os.cpu_count()}")
    path = write_json("model_workers.json", results)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
