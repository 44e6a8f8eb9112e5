"""How many spoken conversations the embedded models hold at once: first audio under 1.5 s p99.

Run: python -m benchmarks.concurrent_conversations [--sessions 1,2,4,6,8,10,12] [--turns 5]
     [--stt faster-whisper] [--tts hibari] [--voice hibari] [--keep-going]
Prints a table and writes benchmarks/results/concurrent_conversations.json. About 30 s a level.

One server with the embedded models (by default the shipped defaults: Whisper tiny.en, hibari,
Silero VAD) and the instant fake LLM, started once for every level. At each level N sessions
hold a conversation (`benchmarks/lib/conversation.py`): a paced real-time microphone; speak a
sentence (hibari's voice), wait for the answer and for its audio to play out (from its first
delta, at real time), pause 400 ms, speak again; `--turns` turns each. The sessions start spread
over one turn's length, so their turns interleave as independent callers' would.

A level passes when every turn is clean (one `speech_stopped`, a transcript, a completed
response with audio) and end of speech → first `response.output_audio.delta` is ≤ 1.5 s at
p99. Levels run in order until one fails (`--keep-going` runs them all). Per level: the
server's CPU (cores, from /proc), its peak RSS, and what other processes used meanwhile.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from typing import Any

from benchmarks.lib.clients import run
from benchmarks.lib.conversation import (
    Turn,
    clean,
    first_audio_s,
    mark_contention,
    run_session,
    stage_table,
)
from benchmarks.lib.machine import (
    CpuMeter,
    add_common_arguments,
    apply_common_arguments,
    loadavg,
)
from benchmarks.lib.payloads import SENTENCES, prepare
from benchmarks.lib.processes import OpenRealtimeProcess, sample_rss, start_llm
from benchmarks.lib.speech import Engine
from benchmarks.lib.stats import percentile, print_table, summary_ms, write_json
from benchmarks.lib.wer import wer

LIMIT_S = 1.5
TURN_S = 5.0  # about one turn's length here (speech, answer, pauses): the start spread


async def level(url: str, sessions: int, turns: int, voice: Engine) -> tuple[list[Turn], list[str]]:
    utterances = prepare(SENTENCES, voice)
    done: list[Turn] = []
    errors: list[str] = []
    await asyncio.gather(
        *(
            run_session(
                s,
                url,
                [utterances[(s * 7 + k) % len(utterances)] for k in range(turns)],
                s * TURN_S / sessions,
                done,
                errors,
                [],
                play_answers=True,
            )
            for s in range(sessions)
        )
    )
    return done, errors


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    levels: list[dict[str, Any]] = []
    with (
        start_llm() as llm,
        OpenRealtimeProcess(
            llm,
            args.server_log_level,
            args.stt,
            tts=args.tts,
            settings=dict(setting.split("=", 1) for setting in args.setting),
        ) as server,
    ):
        rss_idle = server.rss_kib() / 1024
        await level(server.ws_url, 1, 1, args.voice)  # warm-up: the first turn's allocations
        for n in args.sessions:
            loads = loadavg()
            meter = CpuMeter({"openrealtime": server, "llm": llm})
            rss: list[int] = []
            stop = asyncio.Event()
            sampler = asyncio.create_task(sample_rss(server, rss, stop))
            meter.start()
            started = time.monotonic()
            turns, errors = await level(server.ws_url, n, args.turns, args.voice)
            wall = time.monotonic() - started
            cpu = meter.stop()
            stop.set()
            with contextlib.suppress(asyncio.CancelledError):
                await sampler
            mark_contention(turns)
            good = [t for t in turns if clean(t)]
            waits = [w for t in good if (w := first_audio_s(t)) is not None]
            p99 = percentile(waits, 99) if waits else float("inf")
            passed = len(good) == n * args.turns and p99 <= LIMIT_S
            levels.append(
                {
                    "sessions": n,
                    "passed": passed,
                    "turns": len(turns),
                    "turns_clean": len(good),
                    "first_audio_ms": summary_ms(waits, (50, 95, 99))
                    | {"max": 1000 * max(waits, default=0)},
                    "stages_ms": stage_table(good, (50, 99)),
                    "server_cpu_cores": cpu["openrealtime"],
                    "other_processes_cores": cpu["other_processes"],
                    "server_rss_peak_mib": round(max(rss, default=0) / 1024, 1),
                    "load_average_before": loads,
                    "wall_s": round(wall, 1),
                    "errors": errors[:10],
                    "wer_pct": round(100 * wer([(t.text, t.transcript or "") for t in turns]), 1),
                    "heard": [(t.text, t.transcript) for t in turns[:3]],
                }
            )
            print(
                f"{n} sessions: {'pass' if passed else 'FAIL'}, first audio p99 {1000 * p99:.0f} ms, "
                f"{len(good)}/{n * args.turns} clean, server {cpu['openrealtime']:.2f} cores",
                flush=True,
            )
            if not passed and not args.keep_going:
                break
    return {"server_rss_idle_mib": round(rss_idle, 1), "levels": levels}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--sessions",
        type=lambda s: [int(n) for n in s.split(",")],
        default=[1, 2, 4, 6, 8, 10, 12],
        help="levels, comma-separated (default 1,2,4,6,8,10,12)",
    )
    parser.add_argument("--turns", type=int, default=5, help="turns per session (default 5)")
    parser.add_argument("--stt", default="faster-whisper")
    parser.add_argument("--tts", default="hibari")
    parser.add_argument("--voice", default="hibari", choices=["hibari", "espeak"])
    parser.add_argument("--keep-going", action="store_true", help="run every level")
    parser.add_argument(
        "--setting",
        action="append",
        default=[],
        help="a server setting, FIELD=VALUE (e.g. stt_beam_size=1); repeatable",
    )
    add_common_arguments(parser)
    args = parser.parse_args()
    apply_common_arguments(args)
    results = run(bench(args))
    results["settings"] = vars(args)
    rows = [
        [
            r["sessions"],
            "pass" if r["passed"] else "FAIL",
            f"{r['turns_clean']}/{r['turns']}",
            r["first_audio_ms"]["p50"],
            r["first_audio_ms"]["p99"],
            r["stages_ms"]["speech_stopped → transcript completed"]["p50"],
            r["wer_pct"],
            r["server_cpu_cores"],
            r["server_rss_peak_mib"],
            r["other_processes_cores"],
        ]
        for r in results["levels"]
    ]
    print_table(
        [
            "sessions",
            "≤ 1.5 s p99",
            "clean",
            "first audio p50 ms",
            "p99 ms",
            "transcript p50 ms",
            "WER %",
            "server cores",
            "RSS MiB",
            "others' cores",
        ],
        rows,
        f"Concurrent embedded conversations ({args.stt} + {args.tts}, instant LLM), "
        f"{args.turns} turns each; idle RSS {results['server_rss_idle_mib']} MiB",
    )
    passing = [r["sessions"] for r in results["levels"] if r["passed"]]
    print(f"most sessions passing: {max(passing, default=0)} (target ≥ 8)")
    print(f"wrote {write_json('concurrent_conversations.json', results)}")


if __name__ == "__main__":
    main()
