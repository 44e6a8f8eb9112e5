"""How many sessions can stream real-time audio at once: server VAD, transcription, no replies.

Run: python -m benchmarks.concurrent_voice [--sessions 10,50,100,200,300] [--duration 20]
                                          [--embedded] [--stt scripted,pocketsphinx]
                                          [--client-procs 2]
Prints a table per STT backend, writes benchmarks/results/concurrent_voice.json and a plot of
the `speech_stopped` lag against N (concurrent_voice.png). Speech-to-text defaults to an instant
HTTP fake (`scripted`); --embedded adds the embedded recognizer (pocketsphinx). Each step
restarts the server, so memory is measured afresh.

The goal (issue 9) is what passes: p99 `speech_stopped` lag (arrival - true end of speech -
silence_duration_ms, the VAD's own decision delay included) <= 100 ms and p50 <= 40 ms, no
sentence missed, no session's unread audio over 200 ms behind (the worst probe round trip),
and the checks below.

For each N in --steps, N sessions each stream one continuous microphone: 20 ms chunks of
24 kHz PCM16 sent on a fixed schedule (t0 + k x 20 ms, staggered across sessions), carrying
spoken sentences (espeak, `benchmarks.lib.speech.speak`) separated by --gap seconds of silence
(the time an assistant would spend answering), with server VAD (silence_duration_ms 500) and
input transcription configured. `create_response` is false: this measures what a session costs
to *listen* (ingest, resampling, Silero VAD per 32 ms frame, commit, transcription); a reply
would add the LLM and espeak, whose cost per turn text_turn.py and voice_turn.py measure.

N passes when, over --duration seconds:
  - no session falls behind real time: every session also sends a probe every 250 ms (a
    `conversation.item.retrieve` of a tiny text item); the server handles a connection's
    events in order, so the reply waits behind any of that session's audio not yet processed.
    The p99 of the probes' round trip, over all sessions, is under 100 ms;
  - the event stream keeps up: p99 of the server's event lag — `speech_stopped` arrival minus
    the send time of the chunk holding the end of the 32 ms VAD frame that decided it (the
    server could not have known earlier) — is under 100 ms. Its floor, ~25-45 ms, is the
    24->16 kHz resampler's block latency plus the 20 ms chunking;
  - the p99 of `speech_stopped` lag — arrival minus true end of speech (the send time of the
    chunk holding the last sample above -50 dBFS) minus silence_duration_ms — less the VAD's
    own end-of-speech offset, is under 100 ms. That offset (`audio_end_ms` - silence - the
    true end, on the audio clock) is where Silero with its hysteresis put the end of speech:
    the same at any load (~60-90 ms for espeak speech), so it is reported on its own, and the
    criterion with it included is reported too (`..._including_vad`) but does not stop the
    steps — it is missed at N=1 already;
  - every committed turn gets its transcript (`...transcription.completed`) before the stream
    ends plus --grace seconds;
  - no `error` event.
The first N that fails ends the steps. The load generator (`benchmarks/lib/voice_clients.py`)
runs in --client-procs uvloop processes, each with one timer for its share of the sessions and
the append events pre-framed. Its own CPU and lag (how late each chunk left against its
schedule, and its event loops' wake-up lag) are reported separately: if it falls behind (send lag p50 > 5 ms or p95 >
50 ms), the step is marked client-limited and does not count against the server. The server's
event lag is measured from when each chunk actually left, so a late client does not inflate it.

Server CPU is reported in all and per thread (/proc/<pid>/task/*/stat): the event loop (sockets,
protocol, session core), the VAD thread (Silero) and the rest.

Memory: the server's VmRSS (/proc/<pid>/status) before the sessions connect (after a warm-up
that builds the recogniser's decoders) and its peak while they stream; the delta / N is the
resident cost of a session.

--stt scripted swaps pocketsphinx for the OpenAI-compatible STT backend pointed at an instant
endpoint of the fake LLM's server: the same server path without the recogniser's CPU, i.e. the capacity of
everything else.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import time
from pathlib import Path
from typing import Any

import orjson

from benchmarks.lib.clients import run
from benchmarks.lib.machine import (
    CpuMeter,
    PySpy,
    add_common_arguments,
    apply_common_arguments,
    wait_for_quiet,
)
from benchmarks.lib.payloads import SENTENCES, SILENCE_MS, Utterance, prepare
from benchmarks.lib.processes import LlmProcess, OpenRealtimeProcess, sample_rss, start_llm
from benchmarks.lib.stats import print_table, summary_ms, write_json
from benchmarks.lib.voice_clients import (
    CHUNK_S,
    PROBE_INTERVAL,
    SessionLog,
    Shares,
    StreamPlan,
    drive,
    open_listening_session,
    outstanding,
    receive,
)

VAD_FRAME_MS = 32  # Silero v5 at 16 kHz: 512 samples
LAG_LIMIT_MS = 100.0
LAG_P50_LIMIT_MS = 40.0
BACKLOG_LIMIT_MS = 200.0
# The client has fallen behind when its chunks leave late as a rule (p50), or more than 1 in 20
# by over 2.5 chunk periods (p95); rarer spikes are the machine's scheduling (on a shared
# machine, whole-VM stalls of ~0.5 s were seen with the client using 4% of a core), and they
# stall the server too, which its own criteria see.
CLIENT_LAG_P50_LIMIT_MS = 5.0
CLIENT_LAG_LIMIT_MS = 50.0

now = time.monotonic
loads = orjson.loads


def analyse(logs: list[SessionLog]) -> dict[str, Any]:
    stopped_lag, vad_offset, stopped_lag_less_vad = [], [], []
    event_lag, transcript_latency = [], []
    expected = detected = split = missed = 0
    committed = transcribed = failed = 0
    worst_session_event_lag = 0.0
    for log in logs:
        session_lags = []
        for arrival, end_ms, item_id in log.stopped:
            # The VAD decides at the end of the first 32 ms frame reaching audio_end_ms; the
            # server could not have known before the chunk holding that instant arrived.
            decided_ms = math.ceil(end_ms / VAD_FRAME_MS - 1e-6) * VAD_FRAME_MS
            chunk = min(max(math.ceil(decided_ms / 20) - 1, 0), len(log.send_times) - 1)
            lag = arrival - log.send_times[chunk]
            event_lag.append(lag)
            session_lags.append(lag)
            if item_id in log.transcribed:
                transcript_latency.append(log.transcribed[item_id] - arrival)
        if session_lags:
            worst_session_event_lag = max(worst_session_event_lag, max(session_lags))
        for i, spoken in enumerate(log.spoken):
            expected += 1
            upper = log.spoken[i + 1].start_ms if i + 1 < len(log.spoken) else float("inf")
            mine = [s for s in log.stopped if spoken.end_of_speech_ms - 60 <= s[1] < upper + 60]
            if not mine:
                missed += 1
                continue
            detected += 1
            split += len(mine) > 1
            arrival, end_ms, _ = mine[-1]
            lag = arrival - spoken.end_of_speech_sent - SILENCE_MS / 1000
            # Where the VAD put the end of speech, on the audio clock, against the truth: its
            # own decision delay (Silero's tail, hysteresis), the same under any load.
            offset = (end_ms - SILENCE_MS - spoken.end_of_speech_ms) / 1000
            stopped_lag.append(lag)
            vad_offset.append(offset)
            stopped_lag_less_vad.append(lag - offset)
        committed += len(log.committed)
        transcribed += len(log.committed & log.transcribed.keys())
        failed += len(log.committed & log.failed)
    return {
        "turns_spoken": expected,
        "turns_detected": detected,
        "turns_split": split,
        "turns_missed": missed,
        "committed": committed,
        "transcribed": transcribed,
        "transcription_failed": failed,
        "speech_stopped_lag_ms": summary_ms(stopped_lag),
        "vad_end_offset_ms": summary_ms(vad_offset),
        "speech_stopped_lag_less_vad_offset_ms": summary_ms(stopped_lag_less_vad),
        "server_event_lag_ms": summary_ms(event_lag),
        "worst_session_event_lag_ms": round(worst_session_event_lag * 1000, 1),
        "transcript_after_speech_stopped_ms": summary_ms(transcript_latency),
    }


async def warm_up(url: str, utterance: Utterance, sessions: int = 4) -> None:
    """Speak once in a few sessions at the same time, so the recogniser builds its decoders
    (one per concurrent decode) before memory is measured."""
    conns = [await open_listening_session(url) for _ in range(sessions)]
    logs = [SessionLog() for _ in conns]
    receivers = [asyncio.create_task(receive(ws, log)) for ws, log in zip(conns, logs, strict=True)]
    plans = [StreamPlan(0.0, 0, 10) for _ in conns]
    seconds = 1 + len(utterance.chunks) / 50 + 1.5
    await drive(conns, logs, plans, [utterance], now() + 0.05, seconds, 1e9, probe_interval=None)
    deadline = now() + 30
    while now() < deadline and outstanding(logs):
        await asyncio.sleep(0.1)
    for ws in conns:
        await ws.close()
    for task in receivers:
        task.cancel()
    await asyncio.gather(*receivers, return_exceptions=True)


async def run_step(
    n: int, stt: str, args: argparse.Namespace, utterances: list[Utterance], llm: LlmProcess
) -> dict[str, Any]:
    server = OpenRealtimeProcess(llm, args.server_log_level, stt, workers=args.server_workers)
    shares: Shares | None = None
    try:
        url = server.ws_url
        await warm_up(url, utterances[0])
        await asyncio.sleep(0.5)
        rss_idle = server.rss_kib()
        threads_idle = server.threads()
        rng = random.Random(n)
        cycle_chunks = round(args.gap * 50) + 80
        plans = [
            # Staggered across one chunk period; the sentences spread over the cycle.
            StreamPlan(CHUNK_S * i / n, i, rng.randrange(5, cycle_chunks))
            for i in range(n)
        ]
        procs = max(1, min(args.client_procs, n))
        shares = Shares(
            procs,
            url,
            plans,
            utterances,
            args.duration,
            args.gap * 1000,
            args.grace,
            args.probe_interval,
        )
        await shares.ready()
        base = now() + 0.3
        rss: list[int] = []
        stop_rss = asyncio.Event()
        rss_task = asyncio.create_task(sample_rss(server, rss, stop_rss))
        # By thread over the server's processes: with --workers, each worker's loop and VAD.
        meter = CpuMeter({"openrealtime": server, "scripted": llm}, {"openrealtime": server.tree()})
        shares.start(base)
        await asyncio.sleep(max(0.0, base - now()))
        meter.start()
        spy_out = None
        if args.py_spy:
            stem, dot, ext = args.py_spy.rpartition(".")
            spy_out = f"{stem}.{stt}.{n}.{ext}" if dot else f"{args.py_spy}.{stt}.{n}.svg"
        spy = PySpy(server.pid, spy_out, args.duration)
        await asyncio.sleep(max(0.0, base + args.duration - now()))
        cpu = meter.stop()
        spy.wait()
        # Every committed turn should get its transcript, and every probe its reply, within
        # the grace period (the last probes leave just before the stream ends): each client
        # process waits so long before it reports.
        logs, loop_lag, client_cpu = await shares.results()
        cpu["client"] = round(cpu["client"] + client_cpu / args.duration, 3)
        cpu["other_processes"] = round(
            max(0.0, cpu["other_processes"] - client_cpu / args.duration), 3
        )
        stop_rss.set()
        await rss_task
        threads_peak = server.threads()
    finally:
        if shares is not None:
            shares.stop()
        server.stop()
    result = analyse(logs)
    send_lags = [x for log in logs for x in log.lags]
    per_session_p99 = sorted(
        sorted(log.lags)[int(0.99 * (len(log.lags) - 1))] for log in logs if log.lags
    )
    errors = [e for log in logs for e in log.errors]
    probes = [x for log in logs for x in log.probe_rtt]
    worst_probe_p99 = max(
        (
            sorted(log.probe_rtt)[int(0.99 * (len(log.probe_rtt) - 1))]
            for log in logs
            if log.probe_rtt
        ),
        default=float("nan"),
    )
    unanswered = sum(len(log.probe_order) for log in logs)
    peak = max(rss) if rss else rss_idle
    result.update(
        {
            "sessions": n,
            "stt": stt,
            "duration_s": args.duration,
            "probe_rtt_ms": summary_ms(probes),
            "probe_rtt_worst_session_p99_ms": round(worst_probe_p99 * 1000, 2),
            "probes_unanswered": unanswered,
            "client_send_lag_ms": summary_ms(send_lags),
            "client_worst_session_send_lag_p99_ms": round(per_session_p99[-1] * 1000, 2)
            if per_session_p99
            else None,
            "client_loop_lag_ms": summary_ms(loop_lag),
            "cpu_cores": cpu,
            "server_rss_idle_mib": round(rss_idle / 1024, 1),
            "server_rss_peak_mib": round(peak / 1024, 1),
            "rss_per_session_kib": round((peak - rss_idle) / n, 1),
            # Server CPU per session, in ms per second of streamed audio: what bounds N on a
            # machine of its own (the event loop is one thread, so ~1000 ms/s in all).
            "server_cpu_ms_per_session_second": round(1000 * cpu["openrealtime"] / n, 2),
            "server_cpu_percent_core_per_session": round(100 * cpu["openrealtime"] / n, 3),
            # The same by thread: the event loop (sockets, protocol, session core), the VAD
            # thread (Silero), and the rest (executors, model threads): "models excluded" is
            # the loop's share plus the rest less what the models use there.
            "server_cpu_percent_core_per_session_by_thread": {
                role.split(".", 1)[1]: round(100 * cores / n, 3)
                for role, cores in cpu.items()
                if role.startswith("openrealtime.")
            },
            "client_cpu_cores": cpu["client"],
            # How far behind real time a session's unread audio got: the worst probe round
            # trip (the probe waits behind every chunk of that session not yet processed).
            "unread_audio_max_ms": round(1000 * max(probes, default=0.0), 1),
            "server_threads_idle_peak": [threads_idle, threads_peak],
            "errors": len(errors),
            "first_errors": errors[:3],
        }
    )
    client_ok = (
        result["client_send_lag_ms"]["p50"] <= CLIENT_LAG_P50_LIMIT_MS
        and result["client_send_lag_ms"]["p95"] <= CLIENT_LAG_LIMIT_MS
    )
    checks = {
        "probe_rtt_p99_under_100ms": result["probe_rtt_ms"]["p99"] < LAG_LIMIT_MS
        and unanswered == 0,
        "server_event_lag_p99_under_100ms": result["server_event_lag_ms"]["p99"] < LAG_LIMIT_MS,
        "speech_stopped_lag_p99_under_100ms": result["speech_stopped_lag_ms"]["p99"]
        <= LAG_LIMIT_MS,
        "speech_stopped_lag_p50_under_40ms": result["speech_stopped_lag_ms"]["p50"]
        <= LAG_P50_LIMIT_MS,
        "no_sentence_missed": result["turns_missed"] == 0,
        "unread_audio_under_200ms": result["unread_audio_max_ms"] <= BACKLOG_LIMIT_MS,
        "every_commit_transcribed": result["committed"] > 0
        and result["transcribed"] == result["committed"],
        "no_errors": not errors,
    }
    result["checks"] = checks
    result["client_kept_up"] = client_ok
    result["passed"] = all(checks.values())
    return result


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    utterances = prepare(SENTENCES[:10])
    out: dict[str, Any] = {"runs": {}}
    llm = start_llm()
    try:
        out["background_cores_before"] = wait_for_quiet(args.wait_quiet)
        for stt in args.stt.split(","):
            steps = []
            for n in [int(x) for x in args.steps.split(",")]:
                if args.wait_quiet:
                    wait_for_quiet(args.wait_quiet)
                print(f"  {stt}: {n} sessions…", flush=True)
                result = await run_step(n, stt, args, utterances, llm)
                steps.append(result)
                failed = [name for name, ok in result["checks"].items() if not ok]
                print(
                    f"    {'pass' if result['passed'] else 'FAIL ' + ', '.join(failed)}"
                    f"{'' if result['client_kept_up'] else ' (client fell behind)'}",
                    flush=True,
                )
                if not args.keep_going and not (result["client_kept_up"] and result["passed"]):
                    break
            passing = [s["sessions"] for s in steps if s["passed"] and s["client_kept_up"]]
            out["runs"][stt] = {
                "steps": steps,
                "max_sessions_passing": max(passing) if passing else 0,
                "stopped_by": "client"
                if steps and not steps[-1]["client_kept_up"]
                else "server"
                if steps and not steps[-1]["passed"]
                else "last step",
            }
    finally:
        llm.stop()
    return out


def report(results: dict[str, Any]) -> None:
    for stt, data in results["runs"].items():
        rows = []
        for s in data["steps"]:
            cpu = s["cpu_cores"]
            rows.append(
                [
                    s["sessions"],
                    "yes" if s["passed"] else "NO",
                    f"{s['client_send_lag_ms']['p99']:.1f}",
                    f"{s['probe_rtt_ms']['p50']:.1f}/{s['probe_rtt_ms']['p99']:.0f}",
                    f"{s['server_event_lag_ms']['p50']:.0f}/{s['server_event_lag_ms']['p99']:.0f}",
                    f"{s['speech_stopped_lag_ms']['p50']:.0f}/{s['speech_stopped_lag_ms']['p99']:.0f}",
                    f"{s['vad_end_offset_ms']['p50']:.0f}/{s['vad_end_offset_ms']['p99']:.0f}",
                    f"{s['transcript_after_speech_stopped_ms']['p50']:.0f}/{s['transcript_after_speech_stopped_ms']['p99']:.0f}",
                    f"{s['transcribed']}/{s['committed']}",
                    f"{s['turns_detected']}/{s['turns_spoken']}",
                    f"{cpu['openrealtime']:.2f}/{cpu['client']:.2f}/{cpu['other_processes']:.2f}",
                    f"{s['server_cpu_percent_core_per_session']:.2f}",
                    _by_thread(s["server_cpu_percent_core_per_session_by_thread"]),
                    f"{s['unread_audio_max_ms']:.0f}",
                    f"{s['turns_missed']}",
                    f"{s['server_rss_idle_mib']:.0f}/{s['server_rss_peak_mib']:.0f}",
                ]
            )
        print_table(
            [
                "N",
                "pass",
                "send lag p99",
                "probe p50/p99",
                "event lag p50/p99",
                "stopped lag p50/p99",
                "VAD offset p50/p99",
                "transcript p50/p99",
                "transcribed",
                "turns found",
                "CPU srv/cli/other",
                "srv CPU %core/session",
                "loop/vad/other",
                "unread max",
                "missed",
                "RSS MiB idle/peak",
            ],
            rows,
            f"STT {stt}: largest passing N = {data['max_sessions_passing']} "
            f"(stopped by: {data['stopped_by']}); lags in ms",
        )


def _by_thread(percent: dict[str, float]) -> str:
    return "/".join(f"{percent.get(role, 0.0):.2f}" for role in ("loop", "vad", "other"))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--sessions", "--steps", dest="steps", default="1,10,50,100,200,300", help="N levels"
    )
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per step")
    parser.add_argument(
        "--gap", type=float, default=4.0, help="seconds of silence between sentences"
    )
    parser.add_argument("--grace", type=float, default=10.0, help="seconds to wait for transcripts")
    parser.add_argument(
        "--stt", default="scripted", help="comma-separated: scripted (instant fake), pocketsphinx"
    )
    parser.add_argument(
        "--embedded", action="store_true", help="also run with the embedded recognizer"
    )
    parser.add_argument(
        "--keep-going", action="store_true", help="run every N even after one fails"
    )
    parser.add_argument(
        "--py-spy",
        metavar="PREFIX",
        help="profile each step with py-spy to PREFIX.<stt>.<N>.svg (.txt: raw, .json: speedscope)",
    )
    parser.add_argument(
        "--probe-interval",
        type=float,
        default=PROBE_INTERVAL,
        help="seconds between a session's probes (its server-side cost is the benchmark's own)",
    )
    parser.add_argument(
        "--client-procs",
        type=int,
        default=2,
        help="client processes sharing the sessions (each with one timer for all its sessions)",
    )
    parser.add_argument(
        "--server-workers",
        type=int,
        default=1,
        help="openrealtime serve --workers N (CPU and memory: all its processes together)",
    )
    add_common_arguments(parser)
    args = parser.parse_args()
    apply_common_arguments(args)
    if args.embedded and "pocketsphinx" not in args.stt.split(","):
        args.stt += ",pocketsphinx"
    results = run(bench(args))
    results["settings"] = vars(args)
    results["limits"] = {
        "lag_ms": LAG_LIMIT_MS,
        "client_send_lag_p50_ms": CLIENT_LAG_P50_LIMIT_MS,
        "probe_interval_s": args.probe_interval,
        "client_send_lag_p95_ms": CLIENT_LAG_LIMIT_MS,
        "silence_duration_ms": SILENCE_MS,
    }
    report(results)
    path = write_json("concurrent_voice.json", results)
    print(f"wrote {path}")
    print(f"wrote {plot(results, path.with_suffix('.png'))}")


def plot(results: dict[str, Any], path: Path) -> Path:
    """`speech_stopped` lag (p50, p99) against N, one line pair per STT backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for stt, data in results["runs"].items():
        steps = data["steps"]
        n = [s["sessions"] for s in steps]
        for q, style in (("p50", "o-"), ("p99", "s--")):
            lag = [s["speech_stopped_lag_ms"][q] for s in steps]
            ax.plot(n, lag, style, label=f"{stt} {q}")
    ax.axhline(LAG_LIMIT_MS, color="red", linewidth=0.8, label="p99 limit")
    ax.axhline(LAG_P50_LIMIT_MS, color="orange", linewidth=0.8, label="p50 limit")
    ax.set_xlabel("concurrent speaking sessions")
    ax.set_ylabel("speech_stopped lag after the silence setting (ms)")
    ax.set_yscale("symlog", linthresh=100)
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


if __name__ == "__main__":
    main()
