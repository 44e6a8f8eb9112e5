"""Soak: 1,000 sessions that speak and vanish mid-response. Does the server keep anything?

Run: python -m benchmarks.soak_disconnect [--cycles 1000] [--lanes 8] [--stt scripted]
Prints tables and writes benchmarks/results/soak_disconnect.json. Takes about a minute.

Each cycle: connect; `session.update` (server VAD with `create_response`, input transcription
configured; output text, or audio for one cycle in five); append a short spoken utterance
(espeak, ~1 s) followed by 700 ms of silence, as 20 ms chunks sent at once (the VAD runs on the
audio's own clock, so pacing would only slow the soak); wait until the VAD-created response
has started — at `response.created` for one cycle in four (the response may still be waiting
for the transcript, or its LLM request be in flight), else at its first delta (the LLM stream,
which lasts ~1 s here, is under way; for audio cycles, synthesis too) — and disconnect at once,
three ways in turn:

  close_frame   a WebSocket close frame (the polite way)
  fin           no close frame: shutdown(SHUT_WR) — the server reads EOF — then the socket closes
  rst           no close frame: SO_LINGER 0 and close — the server gets a TCP reset

Cycles run in --lanes parallel lanes. The server runs in a process of its own with a debug-only
side channel added by the benchmark's launcher (`benchmarks/lib/control.py`, nothing in src/):
it reports the asyncio tasks on the server's loop, Python threads, allocated Python memory
blocks and the live count of per-session objects (Session, SessionDriver, Response,
TranscriptFeed, SpeechPipeline), and its loop's lag. From /proc: VmRSS, file descriptors (TCP
sockets classified as listening, client or backend from /proc/<pid>/net/tcp), OS threads.

Measured after the first 10 cycles and after all of them (and at --checkpoints between, to see
a trend), each time once the server has settled (no client connection left and no more tasks
than at start-up, or 15 s): everything as it is, then the session objects, allocated blocks and
RSS again after a forced gc.collect(). The checks, after all cycles against after 10: no more
asyncio tasks, OS threads or file descriptors (pooled backend connections counted apart: they
are bounded by concurrency, not cycles), no client connection left, no session object alive
after a collection, and RSS within --rss-tolerance-mib (default 5 MiB) — the allocators keep
some freed memory after a peak, so RSS moves by a few MiB between idle states; a session holds
~0.5 MiB resident, so a leak of even 1% of one per cycle (~5 KiB x 990) would exceed it. As
warm-up past the first 10 cycles can exceed it too, RSS must also stay within the tolerance
over the second half of the cycles, which a leak cannot.

The LLM (`benchmarks/lib/fake_llm.py`) reports how many streams it
started, ran to the end, and saw abandoned by the client, and when each ended (by the cycle
named in its instructions): every stream should be abandoned, none completed, none still
running; the time from the client's disconnect to the LLM seeing its stream end is reported.

Diagnostics: --server-gc-every S makes the server run gc.collect() every S s (tells garbage
not yet collected from memory leaked); --tracemalloc runs it under tracemalloc and reports
where Python memory grew between the first checkpoint and the last.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import struct
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection

from benchmarks.lib.clients import LoopLag, ServerError, connect_session, run, start_session
from benchmarks.lib.machine import (
    CpuMeter,
    add_common_arguments,
    apply_common_arguments,
    background_load,
    loadavg,
    wait_for_quiet,
)
from benchmarks.lib.payloads import SENTENCES, SILENCE_CHUNK, prepare, session_update
from benchmarks.lib.processes import (
    OpenRealtimeProcess,
    new_log_lines,
    sample_server_lag,
    start_llm,
)
from benchmarks.lib.stats import print_table, summary_ms, write_json

TAIL_MS = 700
CYCLE_TIMEOUT = 20.0
MODES = ("close_frame", "fin", "rst")
# The stream the LLM sends for each response: long enough that every disconnect lands in it.
LLM_CHUNKS, LLM_DELAY = 40, 0.025

now = time.monotonic
loads = orjson.loads


@dataclass
class Cycle:
    index: int
    mode: str
    trigger: str  # "created" or "delta"
    audio_out: bool
    ok: bool = False
    outcome: str = ""
    seconds: float = 0.0
    disconnect_at: float | None = None
    events: Counter[str] = field(default_factory=Counter)


def plan(index: int) -> Cycle:
    # Periods 3, 4 and 5: every combination within 60 cycles, and each way of closing, both
    # triggers and both outputs already within the first 10.
    return Cycle(
        index,
        mode=MODES[index % 3],
        trigger="created" if index % 4 == 3 else "delta",
        audio_out=index % 5 == 1,
    )


async def disconnect(ws: ClientConnection, mode: str) -> bool:
    """Close as `mode` says; False if the connection had already gone."""
    if mode == "close_frame":
        was_open = ws.state.name == "OPEN"
        with contextlib.suppress(Exception):
            await asyncio.wait_for(ws.close(), 10)
        return was_open
    transport = ws.transport
    sock = transport.get_extra_info("socket")
    if sock is None or transport.is_closing():
        return False
    else:
        # uvloop's transport sockets refuse shutdown(): act on a duplicate of the descriptor
        # (both name the same connection; closing the duplicate does not close it).
        with contextlib.suppress(OSError), socket.socket(fileno=os.dup(sock.fileno())) as dup:
            if mode == "rst":
                dup.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            else:
                dup.shutdown(socket.SHUT_WR)
    transport.abort()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(ws.wait_closed(), 5)
    return True


async def one_cycle(url: str, cycle: Cycle, chunks: list[str]) -> None:
    start = now()
    ws = None
    try:
        async with asyncio.timeout(CYCLE_TIMEOUT):
            ws = await connect_session(url, 15)
            # The LLM's stream log names the cycle by its instructions.
            instructions = f"Soak benchmark cycle {cycle.index}."
            update = session_update(instructions, audio_out=cycle.audio_out, listen=True)
            try:
                await start_session(ws, update)
            except ServerError as refusal:
                cycle.outcome = str(refusal)
                return
            for chunk in chunks:
                await ws.send(chunk)
            while True:
                event = loads(await ws.recv())
                kind = event["type"]
                cycle.events[kind] += 1
                if kind == "error":
                    cycle.outcome = f"error {event['error'].get('code')}"
                    return
                if kind == "response.done":
                    cycle.outcome = "response finished before the disconnect"
                    return
                if (cycle.trigger == "created" and kind == "response.created") or (
                    cycle.trigger == "delta" and kind.endswith(".delta") and "response" in kind
                ):
                    break
            cycle.ok = True
            cycle.outcome = "disconnected"
    except TimeoutError:
        cycle.outcome = "timeout"
    except Exception as exc:
        cycle.outcome = f"client error {exc!r}"[:200]
    finally:
        cycle.disconnect_at = now()
        if ws is not None and not await disconnect(ws, cycle.mode) and cycle.ok:
            cycle.ok = False
            cycle.outcome = "the connection had closed before the client closed it"
        cycle.seconds = now() - start


async def run_cycles(
    url: str, start: int, stop: int, lanes: int, chunks: list[str], out: list[Cycle]
) -> None:
    queue = list(range(start, stop))[::-1]

    async def lane() -> None:
        while queue:
            cycle = plan(queue.pop())
            await one_cycle(url, cycle, chunks)
            out.append(cycle)

    await asyncio.gather(*(lane() for _ in range(min(lanes, stop - start))))


async def settle(
    server: OpenRealtimeProcess, baseline_tasks: int | None, limit: float = 15.0
) -> dict[str, Any]:
    """Wait until no client connection is left and the tasks are back to the baseline (or
    `limit` s); then read everything: from inside, as is and after a gc.collect()."""
    started = now()
    await asyncio.sleep(1.0)
    while now() - started < limit:
        inside = server.inside()
        clients = sum(v for k, v in server.tcp_sockets().items() if "client" in k)
        if not clients and (baseline_tasks is None or inside["tasks"] <= baseline_tasks):
            break
        await asyncio.sleep(0.5)
    settled_s = now() - started
    inside = server.inside()
    status = server.status()
    fds = server.sockets()
    tcp = server.tcp_sockets()
    collected = server.inside(collect=True)
    rss_after_gc = server.status()["VmRSS"]
    backend = sum(v for k, v in tcp.items() if k.startswith("backend"))
    return {
        "settle_s": round(settled_s, 2),
        "rss_kib": status["VmRSS"],
        "rss_after_gc_kib": rss_after_gc,
        "rss_peak_kib": status["VmHWM"],
        "os_threads": status["Threads"],
        "fds": sum(fds.values()),
        "fds_by_kind": fds,
        "tcp_sockets": tcp,
        "backend_connections": backend,
        "fds_less_backend_connections": sum(fds.values()) - backend,
        "tasks": inside["tasks"],
        "tasks_by_coroutine": inside["tasks_by_coroutine"],
        "python_threads": inside["threads"],
        "live_objects": inside["live"],
        "live_objects_after_gc": collected["live"],
        "allocated_blocks_after_gc": collected["allocated_blocks"],
        "gc_objects_after_gc": collected["gc_objects"],
    }


def compare_snapshots(paths: list[str]) -> list[dict[str, Any]]:
    """Where Python memory grew between the first checkpoint and the last (tracemalloc)."""
    import tracemalloc

    first, last = (tracemalloc.Snapshot.load(paths[0]), tracemalloc.Snapshot.load(paths[-1]))
    for path in paths:
        os.unlink(path)
    out = []
    for stat in last.compare_to(first, "traceback")[:15]:
        out.append(
            {
                "size_diff_kib": round(stat.size_diff / 1024, 1),
                "count_diff": stat.count_diff,
                "traceback": [f"{f.filename}:{f.lineno}" for f in stat.traceback][-8:],
            }
        )
    return out


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    utterance = prepare([SENTENCES[0]])[0]
    silence = SILENCE_CHUNK
    chunks = [silence] * 10 + utterance.chunks + [silence] * (TAIL_MS // 20)
    out: dict[str, Any] = {"background_cores_before": wait_for_quiet(args.wait_quiet)}
    out["loadavg_before"] = loadavg()
    llm = start_llm(LLM_DELAY, LLM_CHUNKS)
    if args.tracemalloc:
        os.environ["PYTHONTRACEMALLOC"] = "8"  # the server inherits it; 8 frames per trace
    try:
        server = OpenRealtimeProcess(
            llm, args.server_log_level, args.stt, control=True, collect_every=args.server_gc_every
        )
    finally:
        os.environ.pop("PYTHONTRACEMALLOC", None)
    snapshots: list[str] = []
    log_offset = server.log_path.stat().st_size
    cycles: list[Cycle] = []
    checkpoints: list[dict[str, Any]] = []
    try:
        url = server.ws_url
        at_start = await settle(server, None, limit=2)
        at_start["after_cycles"] = 0
        llm_before = llm.stats()
        meter = CpuMeter({"openrealtime": server, "scripted": llm})
        lag = LoopLag()
        lag.start()
        server_lag: list[float] = []
        stop_lag = asyncio.Event()
        lag_task = asyncio.create_task(sample_server_lag(server, server_lag, stop_lag))
        meter.start()
        started = now()
        marks = sorted({10, *args.checkpoints, args.cycles} & set(range(1, args.cycles + 1)))
        done = 0
        baseline_tasks = at_start["tasks"]
        for mark in marks:
            await run_cycles(url, done, mark, args.lanes, chunks, cycles)
            done = mark
            point = await settle(server, baseline_tasks)
            point["after_cycles"] = mark
            point["llm"] = {k: v - llm_before.get(k, 0) for k, v in llm.stats().items()}
            if args.tracemalloc:
                path = f"{server.control_path}.{mark}.snapshot"
                server.tracemalloc_snapshot(path)
                snapshots.append(path)
            checkpoints.append(point)
            print(
                f"  {mark} cycles: RSS {point['rss_kib'] / 1024:.1f} MiB, fds {point['fds']}, "
                f"tasks {point['tasks']}, live session objects "
                f"{sum(point['live_objects'].values())} "
                f"({sum(point['live_objects_after_gc'].values())} after gc)",
                flush=True,
            )
        wall = now() - started
        cpu = meter.stop()
        loop_lag = await lag.stop()
        stop_lag.set()
        await lag_task
        llm_after = llm.stats()
        streams = llm.streams()
        log_lines = new_log_lines(server.log_path, log_offset)  # before the shutdown's lines
    finally:
        server.stop()
        llm.stop()
    problems = [
        line
        for line in log_lines
        if " ERROR " in line or " WARNING " in line or "Traceback" in line or "destroyed" in line
    ]
    first, last = checkpoints[0], checkpoints[-1]
    middle = min(checkpoints, key=lambda p: abs(p["after_cycles"] - args.cycles / 2))
    llm_delta = {k: v - llm_before.get(k, 0) for k, v in llm_after.items()}
    outcomes = Counter(c.outcome for c in cycles)
    by_mode = Counter(
        (c.mode, c.trigger, "audio" if c.audio_out else "text") for c in cycles if c.ok
    )
    tolerance = args.rss_tolerance_mib * 1024
    checks = {
        "every_cycle_disconnected_mid_response": outcomes.get("disconnected", 0) == args.cycles,
        "tasks_not_above_first_10": last["tasks"] <= first["tasks"],
        "fds_not_above_first_10": last["fds_less_backend_connections"]
        <= first["fds_less_backend_connections"],
        "no_client_connection_left": not any("client" in k for k in last["tcp_sockets"]),
        "backend_pool_bounded_by_lanes": last["backend_connections"] <= 2 * args.lanes + 1,
        "threads_not_above_first_10": last["os_threads"] <= first["os_threads"],
        "no_live_session_objects_after_gc": not any(last["live_objects_after_gc"].values()),
        "rss_within_tolerance_of_first_10": last["rss_kib"] - first["rss_kib"] <= tolerance,
        # A leak grows with the cycles; memory the allocators keep after a peak does not.
        "rss_flat_over_the_second_half": last["rss_kib"] - middle["rss_kib"] <= tolerance,
        "llm_streams_all_ended": llm_delta.get("streams_started", 0)
        == llm_delta.get("streams_completed", 0) + llm_delta.get("streams_abandoned", 0),
        "llm_no_stream_ran_to_its_end": llm_delta.get("streams_completed", 0) == 0,
        "no_errors_in_server_log": not problems,
    }
    blocks_growth = last["allocated_blocks_after_gc"] - first["allocated_blocks_after_gc"]
    growth_by_line = compare_snapshots(snapshots) if snapshots else None
    # Each cycle's LLM stream, by the cycle named in its instructions: how long after the
    # client's disconnect the LLM saw it end, and any that ran to their end.
    by_cycle = {c.index: c for c in cycles}
    cancel_delay, ran_to_end = [], []
    for stream in streams:
        tag = stream.get("tag", "")
        if not tag.startswith("Soak benchmark cycle "):
            continue
        cycle = by_cycle.get(int(tag.rsplit(" ", 1)[1].rstrip(".")))
        if cycle is None or cycle.disconnect_at is None or "end" not in stream:
            continue
        if stream["completed"]:
            ran_to_end.append(
                {
                    "cycle": cycle.index,
                    "trigger": cycle.trigger,
                    "output": "audio" if cycle.audio_out else "text",
                    "stream_started_after_disconnect_s": round(
                        stream["start"] - cycle.disconnect_at, 3
                    ),
                    "stream_ended_after_disconnect_s": round(
                        stream["end"] - cycle.disconnect_at, 3
                    ),
                }
            )
        else:
            cancel_delay.append(stream["end"] - cycle.disconnect_at)
    return {
        **out,
        "settings": {
            "cycles": args.cycles,
            "lanes": args.lanes,
            "stt": args.stt,
            "llm_stream": f"{LLM_CHUNKS} chunks, {LLM_DELAY * 1000:.0f} ms apart",
            "utterance": utterance.text,
            "utterance_ms": round(utterance.speech_ms),
            "rss_tolerance_mib": args.rss_tolerance_mib,
        },
        "wall_s": round(wall, 1),
        "cycle_seconds": summary_ms([c.seconds for c in cycles]),
        "outcomes": dict(outcomes),
        "cycles_by_mode_trigger_output": {"/".join(k): v for k, v in sorted(by_mode.items())},
        "client_events_seen": dict(sum((c.events for c in cycles), Counter())),
        "at_start": at_start,
        "checkpoints": checkpoints,
        "rss_growth_kib": last["rss_kib"] - first["rss_kib"],
        "rss_growth_second_half_kib": last["rss_kib"] - middle["rss_kib"],
        "allocated_blocks_growth": blocks_growth,
        "allocated_blocks_growth_per_cycle": round(blocks_growth / max(1, args.cycles - 10), 2),
        "llm": llm_delta,
        "disconnect_to_llm_stream_abandoned_ms": summary_ms(cancel_delay),
        "llm_streams_run_to_end": ran_to_end[:50],
        "server_loop_lag_ms": summary_ms(server_lag),
        "tracemalloc_growth_first_to_last": growth_by_line,
        "cpu_cores": cpu,
        "client_loop_lag_ms": summary_ms(loop_lag),
        "loadavg_after": loadavg(),
        "background_cores_after": background_load(1.0),
        "server_log_problems": problems[:20],
        "server_log_problem_count": len(problems),
        "checks": checks,
        "passed": all(checks.values()),
    }


def report(r: dict[str, Any]) -> None:
    print(
        f"\n{r['settings']['cycles']} cycles in {r['settings']['lanes']} lanes, "
        f"{r['wall_s']} s, STT {r['settings']['stt']}; load average before "
        f"{r['loadavg_before']}, after {r['loadavg_after']}; CPU cores "
        f"{r['cpu_cores']}"
    )
    print(f"outcomes: {r['outcomes']}")
    print(f"by mode/trigger/output: {r['cycles_by_mode_trigger_output']}")
    rows = []
    for p in [r["at_start"], *r["checkpoints"]]:
        rows.append(
            [
                p["after_cycles"],
                f"{p['rss_kib'] / 1024:.1f}",
                f"{p['rss_after_gc_kib'] / 1024:.1f}",
                p["fds"],
                p["backend_connections"],
                p["fds_less_backend_connections"],
                p["tasks"],
                f"{p['os_threads']}/{p['python_threads']}",
                f"{sum(p['live_objects'].values())}/{sum(p['live_objects_after_gc'].values())}",
                p["allocated_blocks_after_gc"],
                p["settle_s"],
            ]
        )
    print_table(
        [
            "after cycles",
            "RSS MiB",
            "after gc",
            "fds",
            "backend conns",
            "fds less backend",
            "asyncio tasks",
            "threads OS/py",
            "session objs live/after gc",
            "alloc blocks (after gc)",
            "settle s",
        ],
        rows,
        "server process, each after settling",
    )
    llm = r["llm"]
    print(
        f"\nLLM streams: started {llm.get('streams_started', 0)}, ran to the end "
        f"{llm.get('streams_completed', 0)}, abandoned {llm.get('streams_abandoned', 0)}; "
        f"transcriptions "
        f"{llm.get('transcriptions', 0)}; client disconnect → LLM saw the stream end: p50 "
        f"{r['disconnect_to_llm_stream_abandoned_ms']['p50']:.1f} ms, p99 "
        f"{r['disconnect_to_llm_stream_abandoned_ms']['p99']:.1f} ms, max "
        f"{r['disconnect_to_llm_stream_abandoned_ms'].get('max', float('nan')):.1f} ms; "
        f"server event-loop lag p50 {r['server_loop_lag_ms']['p50']:.1f} ms, p99 "
        f"{r['server_loop_lag_ms']['p99']:.1f} ms, max "
        f"{r['server_loop_lag_ms'].get('max', float('nan')):.0f} ms"
    )
    for stream in r["llm_streams_run_to_end"][:5]:
        print(f"  stream ran to its end: {stream}")
    print(
        f"RSS growth after the first 10: {r['rss_growth_kib']} KiB, over the second half: "
        f"{r['rss_growth_second_half_kib']} KiB (tolerance "
        f"{r['settings']['rss_tolerance_mib']} MiB); allocated blocks growth "
        f"{r['allocated_blocks_growth']} ({r['allocated_blocks_growth_per_cycle']} per cycle)"
    )
    print_table(
        ["check", "result"],
        [[name, "ok" if ok else "FAIL"] for name, ok in r["checks"].items()],
        "checks",
    )
    for line in r["server_log_problems"][:5]:
        print(f"  server log: {line}")
    if r.get("tracemalloc_growth_first_to_last"):
        print("\ntracemalloc: where Python memory grew from the first checkpoint to the last")
        for stat in r["tracemalloc_growth_first_to_last"][:8]:
            print(
                f"  {stat['size_diff_kib']:+.1f} KiB {stat['count_diff']:+d} blocks  "
                f"{' <- '.join(reversed(stat['traceback'][-3:]))}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cycles", type=int, default=1000)
    parser.add_argument("--lanes", type=int, default=8, help="cycles run in parallel")
    parser.add_argument(
        "--checkpoints",
        default="250,500,750",
        help="also measure after these many cycles (comma-separated)",
    )
    parser.add_argument("--stt", default="scripted", help="scripted (default) or pocketsphinx")
    parser.add_argument("--rss-tolerance-mib", type=float, default=5.0)
    parser.add_argument(
        "--server-gc-every",
        type=float,
        metavar="SECONDS",
        help="diagnostic: make the server run gc.collect() this often (tells garbage not yet "
        "collected from memory leaked)",
    )
    parser.add_argument(
        "--tracemalloc",
        action="store_true",
        help="diagnostic: run the server under tracemalloc and report where Python memory grew "
        "between the first checkpoint and the last",
    )
    parser.add_argument("--output", default="soak_disconnect.json")
    add_common_arguments(parser)
    args = parser.parse_args()
    args.checkpoints = [int(x) for x in args.checkpoints.split(",") if x.strip()]
    apply_common_arguments(args)
    results = run(bench(args))
    report(results)
    path = write_json(args.output, results)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
