"""Shared pieces of the end-to-end benchmarks: the server processes, clocks, statistics, output.

Every server runs in a process of its own (see `_launch.py`), so the load generator never
shares a GIL with the server it measures. All times are `time.monotonic()` (CLOCK_MONOTONIC:
one clock for every process of the machine, so the scripted LLM's request log can be compared
with the client's timestamps).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import hashlib
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
sys.path.insert(0, str(ROOT / "tests"))  # tests/speech_fixtures.py and friends
if os.environ.get("BENCH_SRC"):
    sys.path.insert(0, os.environ["BENCH_SRC"])  # the client's imports come from it too
sys.path.insert(0, str(BENCH_DIR))

from _launch import BENCH_API_KEY  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
NICE = 0  # set by apply_common_arguments(); inherited by the server processes


def _child_setup() -> None:
    """In each server process before exec: die with the benchmark, run at its niceness."""
    try:
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if NICE:
        os.setpriority(os.PRIO_PROCESS, 0, NICE)


def add_common_arguments(parser: Any) -> None:
    parser.add_argument(
        "--server-log-level",
        default="info",
        help="openrealtime --log-level (default info, as shipped)",
    )
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="first wait up to this long for other processes to leave the CPUs idle",
    )
    parser.add_argument(
        "--nice",
        type=int,
        default=0,
        help="niceness of the servers and this client, and of their scheduler autogroup "
        "(negative needs root): on a shared machine, -10 keeps other users' processes from "
        "distorting the figures",
    )


def apply_common_arguments(args: Any) -> None:
    global NICE
    NICE = args.nice
    if NICE:
        os.setpriority(os.PRIO_PROCESS, 0, NICE)
        # With sched_autogroup (the default on desktop-style kernels), niceness only ranks
        # processes within their session's group; the group's own nice ranks it among others.
        autogroup = Path("/proc/self/autogroup")
        with contextlib.suppress(OSError, ValueError, IndexError):
            before = int(autogroup.read_text().split("nice")[1])
            autogroup.write_text(str(NICE))
            # The group outlives this process (it is the shell session's): put it back.
            atexit.register(lambda: autogroup.write_text(str(before)))
    # A plain `kill` should still stop the servers: SIGTERM unwinds like Ctrl-C.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """One `_launch.py` subprocess; its stderr goes to a log file next to the results."""

    def __init__(self, what: str, *args: str, ready_path: str) -> None:
        self.what = what
        self.port = free_port()
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        self.log_path = RESULTS_DIR / f"{what}.log"
        self._log = open(self.log_path, "a")  # noqa: SIM115 - closed in stop()
        self._log.write(f"\n===== {time.strftime('%H:%M:%S')} {what} {' '.join(args)}\n")
        self._log.flush()
        env = dict(os.environ)
        if src := os.environ.get("BENCH_SRC"):
            # A frozen copy of src/ to measure while the working tree is being edited.
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [src, env.get("PYTHONPATH")]))
        self.proc = subprocess.Popen(
            [sys.executable, str(BENCH_DIR / "_launch.py"), what, "--port", str(self.port), *args],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env=env,
            preexec_fn=_child_setup,
        )
        self.pid = self.proc.pid
        self._wait_ready(ready_path)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _wait_ready(self, path: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.what} exited at start-up; see {self.log_path}")
            try:
                if httpx.get(self.url + path, timeout=1.0).status_code < 500:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.what} did not start within {timeout:.0f} s; see {self.log_path}")

    def cpu_seconds(self) -> float:
        """User + system CPU time of the process (all its threads) so far."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError("no VmRSS")

    def threads(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("Threads:"):
                return int(line.split()[1])
        return 0

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # uvicorn's graceful shutdown
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def start_llm() -> ServerProcess:
    return ServerProcess("llm", ready_path="/v1/models")


SOURCES_MEASURED: list[dict[str, Any]] = []  # the code each openrealtime process started with


def start_openrealtime(
    llm: ServerProcess, log_level: str = "info", stt: str = "pocketsphinx"
) -> ServerProcess:
    src = source()
    if src not in SOURCES_MEASURED:
        SOURCES_MEASURED.append(src)
    return ServerProcess(
        "openrealtime",
        "--llm-url",
        llm.url + "/v1",
        "--log-level",
        log_level,
        "--stt",
        stt,
        ready_path="/healthz",
    )


def ws_url(server: ServerProcess) -> str:
    return f"ws://127.0.0.1:{server.port}/v1/realtime?model=gpt-realtime"


AUTH_HEADERS = {"Authorization": f"Bearer {BENCH_API_KEY}"}


def _machine_busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy (all cores), from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / CLK_TCK


class CpuMeter:
    """CPU used by each process, by this client, and by everything else on the machine
    (other users' work competes for the same cores), between start() and stop(), in cores."""

    def __init__(self, processes: dict[str, ServerProcess]) -> None:
        self.processes = processes

    def start(self) -> None:
        self._t = time.monotonic()
        self._cpu = {name: p.cpu_seconds() for name, p in self.processes.items()}
        self._self = time.process_time()
        self._machine = _machine_busy_seconds()

    def stop(self) -> dict[str, float]:
        wall = time.monotonic() - self._t
        used = {
            name: (p.cpu_seconds() - self._cpu[name]) / wall for name, p in self.processes.items()
        }
        used["client"] = (time.process_time() - self._self) / wall
        machine = (_machine_busy_seconds() - self._machine) / wall
        used["other_processes"] = max(0.0, machine - sum(used.values()))
        return {name: round(v, 3) for name, v in used.items()}


def background_load(seconds: float = 1.0) -> float:
    """Cores busy on this machine right now, with none of the benchmark's processes running."""
    before = _machine_busy_seconds()
    time.sleep(seconds)
    return round((_machine_busy_seconds() - before) / seconds, 3)


class LoopLag:
    """How late this process's own event loop wakes up: the load generator's health."""

    def __init__(self, interval: float = 0.005) -> None:
        self.interval = interval
        self.samples: list[float] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            before = time.monotonic()
            await asyncio.sleep(self.interval)
            self.samples.append(time.monotonic() - before - self.interval)

    async def stop(self) -> list[float]:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        return self.samples


class PySpy:
    """`py-spy record` of a server process over a window (a profiling aid: --py-spy FILE)."""

    def __init__(self, pid: int, out: str | None, seconds: float) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        if out:
            fmt = (
                "speedscope"
                if out.endswith(".json")
                else "raw"
                if out.endswith(".txt")
                else "flamegraph"
            )
            self.proc = subprocess.Popen(
                [
                    "py-spy",
                    "record",
                    "-p",
                    str(pid),
                    "-o",
                    out,
                    "-d",
                    str(max(1, int(seconds))),
                    "-r",
                    "200",
                    "-f",
                    fmt,
                    "--nonblocking",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )

    def wait(self) -> None:
        if self.proc is not None:
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def wait_for_quiet(max_wait: float, threshold: float = 0.3) -> float:
    """Wait (up to `max_wait` s) until the machine is nearly idle; returns the last load seen."""
    deadline = time.monotonic() + max_wait
    load = background_load(1.0)
    while load > threshold and time.monotonic() < deadline:
        print(f"  machine busy ({load:.2f} cores used by other processes); waiting…", flush=True)
        load = background_load(2.0)
    return load


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100) of `values`; nan if empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def summary_ms(values_s: list[float], qs: tuple[float, ...] = (50, 95, 99)) -> dict[str, Any]:
    """Percentiles, mean, min and max of durations given in seconds, reported in ms."""
    ms = [v * 1000 for v in values_s]
    out: dict[str, Any] = {"n": len(ms)}
    for q in qs:
        out[f"p{q:g}"] = round(percentile(ms, q), 3)
    if ms:
        out["mean"] = round(sum(ms) / len(ms), 3)
        out["min"] = round(min(ms), 3)
        out["max"] = round(max(ms), 3)
    return out


def print_table(headers: list[str], rows: list[list[Any]], title: str | None = None) -> None:
    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.2f}" if abs(value) < 1000 else f"{value:.0f}"
        return str(value)

    cells = [[cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    if title:
        print(f"\n{title}")
    print(
        "  ".join(
            h.ljust(w) if i == 0 else h.rjust(w)
            for i, (h, w) in enumerate(zip(headers, widths, strict=True))
        )
    )
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print(
            "  ".join(
                v.ljust(w) if i == 0 else v.rjust(w)
                for i, (v, w) in enumerate(zip(row, widths, strict=True))
            )
        )


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu_model": model,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def source() -> dict[str, Any]:
    """Which code was measured: the commit, and a hash of the src/ tree actually imported."""
    src = Path(os.environ.get("BENCH_SRC") or ROOT / "src")
    digest = hashlib.sha256()
    for path in sorted(src.rglob("*.py")):
        digest.update(str(path.relative_to(src)).encode() + b"\0" + path.read_bytes())
    try:
        head = (ROOT / ".git" / "HEAD").read_text().strip()
        if head.startswith("ref: "):
            ref = head[5:]
            loose = ROOT / ".git" / ref
            if loose.exists():
                head = loose.read_text().strip()
            else:
                packed = (ROOT / ".git" / "packed-refs").read_text().splitlines()
                head = next((ln.split()[0] for ln in packed if ln.endswith(" " + ref)), ref)
    except OSError:
        head = "unknown"
    return {"commit": head, "src": str(src), "src_tree_sha256": digest.hexdigest()[:16]}


def write_json(name: str, data: dict[str, Any]) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / name
    sources = SOURCES_MEASURED or [source()]  # no server started: the code this client ran
    payload = {"machine": machine(), "sources_measured": sources, **data}
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path


def run(coro: Any) -> Any:
    """Run the client on uvloop too, so its own overhead stays small."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)
