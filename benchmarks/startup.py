"""Start time of `openrealtime serve`, as an operator starts it (issue 9: ≤ 1 s with HTTP
speech backends, ≤ 3 s with the embedded models ready).

Run: python -m benchmarks.startup [--starts 5] [--configs http,defaults] [--nice N]
Prints a table and writes benchmarks/results/startup.json. About 5 s per start.

Each start spawns `python -m openrealtime serve` on a free port (its LLM, and with `http` its
speech, on the benchmarks' instant fake) and polls /healthz every 10 ms:
- to /healthz: spawn → the first 200 answer (the socket listens, the app answers);
- models ready: → the first answer whose `models` is no longer "loading" (the embedded
  models loaded and warmed after the socket listens; the same as /healthz for HTTP backends);
- CPU to /healthz: the server process's user + system CPU at that first 200 (on a loaded
  machine wall time grows with the others' work; CPU is what this code costs), and its main
  thread's (the rest is the warm-up's threads, started as the server begins to listen);
- RSS: VmRSS 1 s after the models are ready;
- then the first session (`--session-at ready`, or at the first 200 with `healthz`): connect
  → `session.created`, and a text turn's `response.create` → first text delta (what a first
  client would wait for the session code and validators the server loads after it listens;
  with `healthz`, the ready time and the RSS are taken after that session).
Configurations: `http` is `--stt openai --tts openai` (speech over HTTP, Silero VAD in
process), `defaults` is `openrealtime serve` as shipped (Whisper tiny.en + hibari).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from benchmarks.lib import machine
from benchmarks.lib.clients import connect_session, recv_until, start_session
from benchmarks.lib.launch import BENCH_API_KEY
from benchmarks.lib.payloads import session_update
from benchmarks.lib.processes import free_port, start_llm
from benchmarks.lib.stats import RESULTS_DIR, percentile, print_table, write_json
from benchmarks.text_turn import turn_via_openrealtime

CONFIGS: dict[str, list[str]] = {
    "http": ["--stt", "openai", "--tts", "openai"],
    "defaults": [],
}
POLL_S = 0.01


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


async def first_session(port: int) -> dict[str, float]:
    started = time.monotonic()
    ws = await connect_session(f"ws://127.0.0.1:{port}/v1/realtime")
    try:
        await start_session(ws)
        created = time.monotonic() - started
        await ws.send(session_update("You are a benchmark. Answer briefly."))  # text only
        await recv_until(ws, "session.updated")
        return {"session_created_s": created, "first_delta_s": await turn_via_openrealtime(ws, 0)}
    finally:
        await ws.close()


def start_once(
    flags: list[str], llm_url: str, session_at: str, timeout_s: float = 60.0
) -> dict[str, float]:
    port = free_port()
    argv = [sys.executable, "-m", "openrealtime", "serve", "--port", str(port)]
    argv += ["--log-level", "warning", "--llm-base-url", llm_url, "--api-key", BENCH_API_KEY]
    argv += ["--llm-model", "scripted-model"]
    if "--stt" in flags:
        argv += ["--stt-base-url", llm_url, "--tts-base-url", llm_url]
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENREALTIME_")}
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    with open(RESULTS_DIR / "startup.log", "a") as log:
        spawned = time.monotonic()
        proc = subprocess.Popen(
            argv + flags,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            preexec_fn=machine.child_setup,
        )
        try:
            return _watch(proc, port, spawned, session_at, timeout_s)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _watch(
    proc: subprocess.Popen[bytes], port: int, spawned: float, session_at: str, timeout_s: float
) -> dict[str, float]:
    url = f"http://127.0.0.1:{port}/healthz"
    healthy_s: float | None = None
    cpu_s = main_cpu_s = 0.0
    session: dict[str, float] = {}
    with httpx.Client(timeout=2.0) as client:
        while time.monotonic() - spawned < timeout_s:
            if proc.poll() is not None:
                raise RuntimeError("the server exited at start-up; see results/startup.log")
            try:
                answer = client.get(url)
            except httpx.HTTPError:
                time.sleep(POLL_S)
                continue
            now = time.monotonic() - spawned
            if answer.status_code == 200:
                if healthy_s is None:
                    healthy_s, cpu_s = now, machine.cpu_seconds(proc.pid)
                    main_cpu_s = machine.thread_cpu_seconds(proc.pid).get("loop", 0.0)
                    if session_at == "healthz":
                        session = asyncio.run(first_session(port))
                if answer.json().get("models") != "loading":
                    time.sleep(1.0)
                    rss = _rss_mib(proc.pid)
                    if session_at == "ready":
                        session = asyncio.run(first_session(port))
                    return {
                        "healthz_s": healthy_s,
                        "cpu_s": cpu_s,
                        "main_cpu_s": main_cpu_s,
                        "ready_s": now,
                        "rss_mib": rss,
                        **session,
                    }
            time.sleep(POLL_S)
    raise RuntimeError(f"no healthy answer within {timeout_s:.0f} s")


def summarize(name: str, starts: list[dict[str, float]]) -> dict[str, Any]:
    out: dict[str, Any] = {"config": name, "starts": starts}
    for key in (
        "healthz_s",
        "cpu_s",
        "main_cpu_s",
        "ready_s",
        "rss_mib",
        "session_created_s",
        "first_delta_s",
    ):
        values = [s[key] for s in starts]
        out[key] = {"p50": round(percentile(values, 50), 3), "max": round(max(values), 3)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--starts", type=int, default=5, help="starts per configuration")
    parser.add_argument("--configs", default="http,defaults", help=", ".join(CONFIGS))
    parser.add_argument(
        "--nice",
        type=int,
        default=0,
        help="niceness of the servers and of this process's autogroup (negative needs root): "
        "-10 keeps other users' work from stretching the wall times",
    )
    parser.add_argument(
        "--session-at", choices=["ready", "healthz"], default="ready", help="the first session"
    )
    args = parser.parse_args()
    machine.apply_common_arguments(args)
    results: dict[str, Any] = {"load_average_before": machine.loadavg(), "configs": []}
    results["session_at"] = args.session_at
    with start_llm() as llm:
        for name in args.configs.split(","):
            starts = [
                start_once(CONFIGS[name], llm.url + "/v1", args.session_at)
                for _ in range(args.starts)
            ]
            results["configs"].append(summarize(name, starts))
    results["load_average_after"] = machine.loadavg()

    def cell(summary: dict[str, float], scale: float = 1.0) -> str:
        return f"{summary['p50'] * scale:.0f} / {summary['max'] * scale:.0f}"

    print_table(
        [
            "config",
            "to /healthz ms",
            "CPU until then ms",
            "main thread's ms",
            "models ready ms",
            "RSS MiB",
            "1st session.created ms",
            "1st text delta ms",
        ],
        [
            [
                c["config"],
                cell(c["healthz_s"], 1000),
                cell(c["cpu_s"], 1000),
                cell(c["main_cpu_s"], 1000),
                cell(c["ready_s"], 1000),
                cell(c["rss_mib"]),
                cell(c["session_created_s"], 1000),
                cell(c["first_delta_s"], 1000),
            ]
            for c in results["configs"]
        ],
        f"Start of `openrealtime serve`, p50 / max of {args.starts} starts, "
        f"first session at {args.session_at} "
        f"(load average {results['load_average_before'][0]:.1f} → "
        f"{results['load_average_after'][0]:.1f})",
    )
    print(f"wrote {write_json('startup.json', results)}")


if __name__ == "__main__":
    main()
