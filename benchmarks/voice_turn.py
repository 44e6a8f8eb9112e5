"""Voice-to-voice latency of one turn: embedded STT and TTS (the defaults: Whisper tiny.en,
hibari), instant LLM.

Run: python -m benchmarks.voice_turn [--turns 50] [--sessions 1] [--stt faster-whisper]
     [--tts hibari] [--voice hibari]
Prints a table and writes benchmarks/results/voice_turn.json. Takes about 3 minutes: the audio
is paced in real time and the turns run one after another.

Three processes, as in text_turn.py: the fake LLM (instant replies, "Hello from
the scripted model."), openrealtime as `openrealtime serve` runs it (`--stt`, `--tts`), and
this client, which holds the conversation as `benchmarks/lib/conversation.py` says: a paced
real-time microphone, server VAD at its defaults (`silence_duration_ms` 500), input
transcription on; each turn a sentence spoken by `--voice` (hibari by default, espeak-ng's
en-us with `--voice espeak`), then silence until `response.done`, then 400 ms more.

Stages, each from the client's wall clock (time.monotonic, one clock for every process):

  end of speech        send time of the chunk holding the sentence's last sample above -50 dBFS
  → speech_stopped     `input_audio_buffer.speech_stopped` received (VAD; ≈ silence_duration_ms)
  → transcript         `conversation.item.input_audio_transcription.completed` received (STT)
  → LLM request        the fake LLM has read the request body (its own log)
  → first token        first `response.output_audio_transcript.delta` received
  → first audio        first `response.output_audio.delta` received (TTS)

Target (issue 10): first audio within silence_duration_ms + 300 ms of the end of speech, p50.

By default the turns run in sequence, in one session. `--sessions N` runs N sessions in
parallel, started at staggered times; every turn then records whether another session was
speaking or being transcribed between its speech start and its first audio ("contended"), and
the figures are also given for uncontended turns only (`concurrent_conversations` is the
capacity benchmark).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from benchmarks.lib.clients import LoopLag, run
from benchmarks.lib.conversation import (
    EV_AUDIO,
    EV_STOPPED,
    EV_TEXT,
    EV_TRANSCRIPT,
    STAGES,
    Turn,
    clean,
    mark_contention,
    match_llm_requests,
    run_session,
    stage_table,
    stamp,
)
from benchmarks.lib.machine import (
    CpuMeter,
    add_common_arguments,
    apply_common_arguments,
    wait_for_quiet,
)
from benchmarks.lib.payloads import SENTENCES, SILENCE_MS, prepare
from benchmarks.lib.processes import OpenRealtimeProcess, start_llm
from benchmarks.lib.stats import print_table, summary_ms, write_json
from benchmarks.lib.wer import wer

now = time.monotonic

TARGET_EXTRA_MS = 300


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    texts = [SENTENCES[i % len(SENTENCES)] for i in range(args.turns)]
    utterances = prepare(texts, args.voice)
    per_session = [utterances[s :: args.sessions] for s in range(args.sessions)]
    turns: list[Turn] = []
    errors: list[str] = []
    send_lags: list[float] = []
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
        url = server.ws_url
        processes = {"openrealtime": server, "scripted_llm": llm}
        background = wait_for_quiet(args.wait_quiet)
        # Warm-up: one turn, so the first measured turn does not build the STT decoder.
        # It is kept as the "cold" turn: what the first user after a start-up waits.
        cold: list[Turn] = []
        rss_mib = {"idle": server.rss_kib() / 1024}
        await run_session(99, url, prepare([SENTENCES[1]], args.voice), 0, cold, errors, [])
        rss_mib["after first turn"] = server.rss_kib() / 1024
        llm.reset_log()
        period = 3.5  # rough seconds per turn, to spread the sessions' turns apart
        lag = LoopLag()
        lag.start()
        meter = CpuMeter(processes)
        meter.start()
        started = now()
        await asyncio.gather(
            *(
                run_session(
                    s, url, per_session[s], s * period / args.sessions, turns, errors, send_lags
                )
                for s in range(args.sessions)
            )
        )
        wall = now() - started
        cpu = meter.stop()
        loop_lag = await lag.stop()
        rss_mib["after all turns"] = server.rss_kib() / 1024
        log = llm.log()
    match_llm_requests(turns, log)
    mark_contention(turns)
    good = [t for t in turns if clean(t)]
    uncontended = [t for t in good if not t.contended]
    totals = [t.events[EV_AUDIO] - t.end_of_speech for t in good]
    within = sum(1 for v in totals if v * 1000 <= SILENCE_MS + TARGET_EXTRA_MS)
    return {
        "turns_run": len(turns),
        "turns_clean": len(good),
        "turns_uncontended": len(uncontended),
        "anomalies": [
            {"session": t.session, "turn": t.index, "text": t.text, "counts": t.counts}
            for t in turns
            if not clean(t)
        ],
        "errors": errors[:20],
        "stages_ms": stage_table(good),
        "cold_first_turn_ms": {
            name: round(1000 * (stamp(cold[0], b) - stamp(cold[0], a)), 1)  # type: ignore[operator]
            for name, a, b in STAGES
            if cold and stamp(cold[0], a) is not None and stamp(cold[0], b) is not None
        },
        "stages_uncontended_ms": stage_table(uncontended),
        "target_ms": SILENCE_MS + TARGET_EXTRA_MS,
        "turns_within_target": within,
        "silence_duration_ms": SILENCE_MS,
        "speech_ms": summary_ms([t.speech_ms / 1000 for t in good], (50,)),
        "client_send_lag_ms": summary_ms(send_lags, (50, 99)),
        "client_loop_lag_ms": summary_ms(loop_lag, (50, 99)),
        "heard_wer_pct": round(100 * wer([(t.text, t.transcript or "") for t in turns]), 1),
        "cpu_cores": cpu,
        "server_rss_mib": {k: round(v, 1) for k, v in rss_mib.items()},
        "background_cores_before": background,
        "wall_s": round(wall, 1),
        "turns": [
            {
                "session": t.session,
                "turn": t.index,
                "said": t.text,
                "heard": t.transcript,
                "contended": t.contended,
                # ms after the end of speech
                "at_ms": {
                    key: round(1000 * (stamp(t, key) - t.end_of_speech), 1)  # type: ignore[operator]
                    for key in (EV_STOPPED, EV_TRANSCRIPT, "llm", EV_TEXT, EV_AUDIO)
                    if t.end_of_speech and stamp(t, key) is not None
                },
            }
            for t in turns
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--turns", type=int, default=50, help="turns in all (default 50)")
    parser.add_argument(
        "--sessions",
        type=int,
        default=1,
        help="parallel sessions, staggered (default 1: in sequence; see the docstring)",
    )
    parser.add_argument("--stt", default="faster-whisper", help="default faster-whisper (tiny.en)")
    parser.add_argument("--tts", default="hibari", help="default hibari")
    parser.add_argument(
        "--voice", default="hibari", choices=["hibari", "espeak"], help="who speaks the turns"
    )
    parser.add_argument(
        "--setting",
        action="append",
        default=[],
        help="a server setting, FIELD=VALUE (e.g. stt_short_window=true); repeatable",
    )
    add_common_arguments(parser)
    args = parser.parse_args()
    apply_common_arguments(args)
    if args.turns < 1 or not 1 <= args.sessions <= args.turns:
        parser.error("need --turns ≥ 1 and 1 ≤ --sessions ≤ --turns")
    results = run(bench(args))
    results["settings"] = vars(args)

    rows = []
    for name, _, _ in STAGES:
        s, u = results["stages_ms"][name], results["stages_uncontended_ms"][name]
        rows.append([name, s["p50"], s["p95"], s["p99"], u["p50"], u["p95"]])
    print_table(
        ["stage, ms", "p50", "p95", "p99", "uncont. p50", "uncont. p95"],
        rows,
        f"Voice turn stages: {results['turns_clean']} clean turns of {results['turns_run']} "
        f"({results['turns_uncontended']} uncontended), {args.sessions} staggered sessions, "
        f"{results['wall_s']:.0f} s",
    )
    cold = results["cold_first_turn_ms"]
    print(
        "first turn after start-up (cold): speech_stopped → transcript "
        f"{cold.get('speech_stopped → transcript completed', float('nan')):.0f} ms, "
        f"end of speech → first audio {cold.get('end of speech → first audio (total)', float('nan')):.0f} ms"
    )
    cpu = results["cpu_cores"]
    print(
        f"target: first audio ≤ {results['target_ms']} ms after end of speech: "
        f"{results['turns_within_target']}/{results['turns_clean']} turns within it"
    )
    print(
        f"client send lag p99 {results['client_send_lag_ms']['p99']:.1f} ms; CPU cores "
        f"openrealtime {cpu['openrealtime']:.2f}, LLM {cpu['scripted_llm']:.2f}, "
        f"client {cpu['client']:.2f}, other processes {cpu['other_processes']:.2f}"
    )
    print(f"word error rate of the transcripts: {results['heard_wer_pct']}%")
    print("server RSS MiB: " + ", ".join(f"{k} {v}" for k, v in results["server_rss_mib"].items()))
    if results["anomalies"]:
        print(f"{len(results['anomalies'])} turn(s) not clean, e.g. {results['anomalies'][:2]}")
    if results["errors"]:
        print(f"errors: {results['errors'][:3]}")
    path = write_json("voice_turn.json", results)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
