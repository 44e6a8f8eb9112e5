"""Start time of `openrealtime serve`, as an operator starts it (issue 9: ≤ 1 s with HTTP
speech backends, ≤ 3 s with the embedded models ready).

Run: python -m benchmarks.startup [--starts 5] [--configs http,defaults] [--nice N]
Prints a table and writes benchmarks/results/startup.json. About 5 s per start.

Each start spawns `python -m openrealtime serve` on a free port (the LLM URL points at a
closed port: nothing answers, as before any backend is up) and polls /healthz every 10 ms:
- to /healthz: spawn → the first 200 answer (the socket listens, the app answers);
- models ready: → the first answer whose `models` is no longer "loading" (the embedded
  models loaded and warmed after the socket listens; the same as /healthz for HTTP backends);
- CPU to /healthz: the server process's user + system CPU at that first 200 (on a loaded
  machine wall time grows with the others' work; CPU is what this code costs);
- RSS: VmRSS 1 s after the models are ready.
Configurations: `http` is `--stt openai --tts openai` (speech over HTTP, Silero VAD in
process), `defaults` is `openrealtime serve` as shipped (Whisper tiny.en + hibari).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from benchmarks.lib import machine
from benchmarks.lib.processes import free_port
from benchmarks.lib.stats import RESULTS_DIR, percentile, print_table, write_json

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


def start_once(flags: list[str], timeout_s: float = 60.0) -> dict[str, float]:
    port = free_port()
    closed = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    argv = [sys.executable, "-m", "openrealtime", "serve", "--port", str(port)]
    argv += ["--log-level", "warning", "--llm-base-url", closed]
    if "--stt" in flags:
        argv += ["--stt-base-url", closed, "--tts-base-url", closed]
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
            return _watch(proc, port, spawned, timeout_s)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _watch(
    proc: subprocess.Popen[bytes], port: int, spawned: float, timeout_s: float
) -> dict[str, float]:
    url = f"http://127.0.0.1:{port}/healthz"
    healthy_s: float | None = None
    cpu_s = 0.0
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
                if answer.json().get("models") != "loading":
                    time.sleep(1.0)
                    return {
                        "healthz_s": healthy_s,
                        "cpu_s": cpu_s,
                        "ready_s": now,
                        "rss_mib": _rss_mib(proc.pid),
                    }
            time.sleep(POLL_S)
    raise RuntimeError(f"no healthy answer within {timeout_s:.0f} s")


def summarize(name: str, starts: list[dict[str, float]]) -> dict[str, Any]:
    out: dict[str, Any] = {"config": name, "starts": starts}
    for key in ("healthz_s", "cpu_s", "ready_s", "rss_mib"):
        values = [s[key] for s in starts]
        out[key] = {"p50": round(percentile(values, 50), 3), "max": round(max(values), 3)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--starts", type=int, default=5, help="starts per configuration")
    parser.add_argument("--configs", default="http,defaults", help=", ".join(CONFIGS))
    parser.add_argument("--nice", type=int, default=0, help="niceness of the servers")
    args = parser.parse_args()
    machine._nice = args.nice
    results: dict[str, Any] = {"load_average_before": machine.loadavg(), "configs": []}
    for name in args.configs.split(","):
        starts = [start_once(CONFIGS[name]) for _ in range(args.starts)]
        results["configs"].append(summarize(name, starts))
    results["load_average_after"] = machine.loadavg()

    def cell(summary: dict[str, float], scale: float = 1.0) -> str:
        return f"{summary['p50'] * scale:.0f} / {summary['max'] * scale:.0f}"

    print_table(
        ["config", "to /healthz ms", "CPU until then ms", "models ready ms", "RSS MiB"],
        [
            [
                c["config"],
                cell(c["healthz_s"], 1000),
                cell(c["cpu_s"], 1000),
                cell(c["ready_s"], 1000),
                cell(c["rss_mib"]),
            ]
            for c in results["configs"]
        ],
        f"Start of `openrealtime serve`, p50 / max of {args.starts} starts "
        f"(load average {results['load_average_before'][0]:.1f} → "
        f"{results['load_average_after'][0]:.1f})",
    )
    print(f"wrote {write_json('startup.json', results)}")


if __name__ == "__main__":
    main()
