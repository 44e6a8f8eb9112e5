"""How many WebRTC calls one openrealtime process carries: N concurrent aiortc calls, idle and
talking, with the models on instant fakes (so the figures are the server's own cost).

Run: python -m benchmarks.concurrent_webrtc [--calls 1,10,20,30,40] [--talk-seconds 20]
Prints a table and writes benchmarks/results/concurrent_webrtc.json. ~1 min per level.

Processes: the fake LLM (instant replies; also the STT and TTS backends, `--stt/--tts
scripted`: canned transcript, canned speech), openrealtime as `openrealtime serve` runs it,
and this client: N aiortc peers as browsers make them (`oai-events` channel, a microphone
that sends with Opus DTX as the server's answer asks, like a browser: a packet per 400 ms in
silence, 50 a second while speaking; `--no-dtx` for a browser without it). The client is kept
cheap: speech encoded once and shared, the server's audio decoded inline (`InlineAudio`), no
decoder thread per call.

Per level N, one server for all levels, calls opened afresh:
  idle   N calls connected, nobody speaking: server CPU per call, RSS
  talk   each call, staggered, speaks a sentence (real-time paced), waits for the answer to
         play out, pauses 0.5 to 1.5 s, and again, for --talk-seconds. Lag: the last packet of
         the sentence sent → the first loud frame of the answer received (server VAD with
         `silence_duration_ms` 500 is inside it, and the aiortc client's 4-frame prefetch).
A level passes when every sentence was answered and the lag's p99 ≤ --max-lag-ms (1500: the
answer heard within a second after the 500 ms of silence that ends the turn).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import time
from typing import Any

import numpy as np

from benchmarks.lib.clients import AUTH_HEADERS, run
from benchmarks.lib.machine import CpuMeter, add_common_arguments, apply_common_arguments, loadavg
from benchmarks.lib.processes import OpenRealtimeProcess, sample_rss, start_llm
from benchmarks.lib.speech import speak
from benchmarks.lib.stats import percentile, print_table, write_json
from benchmarks.lib.webrtc import RATE, CallClient, PacketMicrophone, encode_opus

PROMPTS = ["what is the weather like today", "turn on the lights please", "tell me a joke"]
SESSION = {
    "type": "realtime",
    "audio": {"input": {"turn_detection": {"type": "server_vad", "silence_duration_ms": 500}}},
}
LOUD = 300  # rms of a frame that is heard, not silence
ANSWER_TIMEOUT_S = 10.0
STOPPED = "input_audio_buffer.speech_stopped"


def loud_after(client: CallClient, since: float, start: int) -> tuple[float | None, int]:
    """When the first loud frame that arrived after `since` arrived (from index `start`)."""
    frames = client.frames
    for i in range(start, len(frames)):
        at, _, samples = frames[i]
        if at >= since and np.sqrt(np.mean(samples.astype(np.float64) ** 2)) > LOUD:
            return at, i
    return None, len(frames)


async def talk(
    client: CallClient,
    utterances: list[list[bytes]],
    until: float,
    lags: list[float],
    stopped_lags: list[float],
) -> int:
    """Turn after turn until `until`; the lag of each answered turn, and of its
    `speech_stopped` event; how many went unanswered."""
    microphone: PacketMicrophone = client.microphone
    rng = random.Random(id(client))
    await asyncio.sleep(rng.uniform(0, 1.5))  # calls do not speak in step
    missed, turn, seen = 0, rng.randrange(len(utterances)), 0
    while time.monotonic() < until:
        microphone.play(utterances[turn % len(utterances)])
        turn += 1
        await microphone.done.wait()
        spoken = microphone.speech_end or time.monotonic()
        heard: float | None = None
        while heard is None and time.monotonic() < spoken + ANSWER_TIMEOUT_S:
            await asyncio.sleep(0.01)
            heard, seen = loud_after(client, spoken, seen)
        if heard is None:
            missed += 1
            continue
        lags.append(heard - spoken)
        stopped_at = next(
            (at for at, kind in client.arrivals if at >= spoken and kind == STOPPED), None
        )
        if stopped_at is not None and stopped_at <= heard:
            stopped_lags.append(stopped_at - spoken)
        # the answer plays out; then the next sentence after a pause
        with_timeout = spoken + ANSWER_TIMEOUT_S - time.monotonic()
        # its end not seen: the lag still counts, the next turn goes on
        with contextlib.suppress(AssertionError):
            await client.until("output_audio_buffer.stopped", timeout=max(with_timeout, 0.1))
        await asyncio.sleep(rng.uniform(0.5, 1.5))
    return missed


async def level(
    server: OpenRealtimeProcess, llm: Any, n: int, args: argparse.Namespace, utterances: Any
) -> dict[str, Any]:
    key = AUTH_HEADERS["Authorization"].split()[1]
    clients = [
        CallClient(
            server.url,
            key,
            microphone=PacketMicrophone(allow_dtx=not args.no_dtx),
            lean_audio=True,
        )
        for _ in range(n)
    ]
    meter = CpuMeter({"openrealtime": server, "fake_models": llm})
    rss: list[int] = []
    stop = asyncio.Event()
    sampler = asyncio.get_running_loop().create_task(sample_rss(server, rss, stop))
    try:
        rss_before = server.rss_kib()
        await asyncio.gather(*(c.connect(session=SESSION) for c in clients))
        await asyncio.gather(*(c.until("session.created") for c in clients))
        await asyncio.sleep(2)  # every peer connected, its first frames through
        meter.start()
        await asyncio.sleep(args.idle_seconds)
        idle = meter.stop()
        rss_idle = server.rss_kib()

        lags: list[float] = []
        stopped_lags: list[float] = []
        meter.start()
        until = time.monotonic() + args.talk_seconds
        missed = await asyncio.gather(
            *(talk(c, utterances, until, lags, stopped_lags) for c in clients)
        )
        talking = meter.stop()
    finally:
        stop.set()
        await sampler
        await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
    ms = [lag * 1000 for lag in lags]
    p99 = percentile(ms, 99)
    result = {
        "calls": n,
        "idle_cores": idle,
        "talk_cores": talking,
        "idle_pct_per_call": round(100 * idle["openrealtime"] / n, 2),
        "talk_pct_per_call": round(100 * talking["openrealtime"] / n, 2),
        "rss_mib_before": round(rss_before / 1024, 1),
        "rss_mib_idle": round(rss_idle / 1024, 1),
        "rss_mib_peak": round(max(rss, default=rss_idle) / 1024, 1),
        "turns": len(lags) + sum(missed),
        "missed": sum(missed),
        "lag_ms_p50": round(percentile(ms, 50), 1),
        "lag_ms_p99": round(p99, 1),
        "stopped_lag_ms_p50": round(percentile([x * 1000 for x in stopped_lags], 50), 1),
        "stopped_lag_ms_p99": round(percentile([x * 1000 for x in stopped_lags], 99), 1),
        "client_dtx": all(c.microphone.dtx for c in clients),
        "client_idle_cores": idle["client"],
        "client_talk_cores": talking["client"],
        "loadavg": loadavg(),
    }
    result["passed"] = result["missed"] == 0 and bool(ms) and p99 <= args.max_lag_ms
    return result


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    utterances = [encode_opus(speak(p, RATE)) for p in PROMPTS]
    levels = [int(n) for n in args.calls.split(",")]
    results: list[dict[str, Any]] = []
    with (
        start_llm() as llm,
        OpenRealtimeProcess(llm, stt="scripted", tts="scripted") as server,
    ):
        for n in levels:
            result = await level(server, llm, n, args, utterances)
            results.append(result)
            print(
                f"  {n} calls: {result['idle_pct_per_call']}% / {result['talk_pct_per_call']}% "
                f"of a core per call idle / talking, lag p50 {result['lag_ms_p50']} ms p99 "
                f"{result['lag_ms_p99']} ms (speech_stopped p50 {result['stopped_lag_ms_p50']} ms "
                f"p99 {result['stopped_lag_ms_p99']} ms), missed {result['missed']}/{result['turns']}: "
                f"{'pass' if result['passed'] else 'FAIL'}",
                flush=True,
            )
            if not result["passed"] and not args.keep_going:
                break
            await asyncio.sleep(2)  # the closed calls freed
    passing = [r["calls"] for r in results if r["passed"]]
    return {"levels": results, "max_calls_passing": max(passing, default=0)}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", default="1,10,20,30,40", help="levels of N (default 1..40)")
    parser.add_argument("--idle-seconds", type=float, default=10.0)
    parser.add_argument("--talk-seconds", type=float, default=20.0)
    parser.add_argument("--max-lag-ms", type=float, default=1500.0, help="p99 to pass (1500)")
    parser.add_argument("--keep-going", action="store_true", help="past a failing level")
    parser.add_argument("--no-dtx", action="store_true", help="microphones send 50 packets/s")
    add_common_arguments(parser)
    args = parser.parse_args()
    apply_common_arguments(args)
    results = run(bench(args))
    results["settings"] = vars(args)
    rows = [
        [
            r["calls"],
            r["idle_pct_per_call"],
            r["talk_pct_per_call"],
            100 * r["talk_cores"]["client"],
            r["rss_mib_idle"],
            r["rss_mib_peak"],
            f"{r['missed']}/{r['turns']}",
            r["lag_ms_p50"],
            r["lag_ms_p99"],
            "yes" if r["passed"] else "NO",
        ]
        for r in results["levels"]
    ]
    print_table(
        [
            "calls",
            "idle %/call",
            "talk %/call",
            "client % (talk)",
            "RSS idle MiB",
            "RSS peak MiB",
            "missed",
            "lag p50 ms",
            "lag p99 ms",
            "pass",
        ],
        rows,
        f"Concurrent WebRTC calls (server CPU in % of a core per call; instant fake models): "
        f"largest passing N = {results['max_calls_passing']}",
    )
    path = write_json("concurrent_webrtc.json", results)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
