"""The machine the benchmarks share with others: CPU meters, its load, niceness, profiling.

All times are `time.monotonic()`: CLOCK_MONOTONIC is one clock for every process of the
machine, so a server's own log can be compared with the client's timestamps.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Protocol

CLK_TCK = os.sysconf("SC_CLK_TCK")
_nice = 0  # set by apply_common_arguments(); the server processes inherit it


class Measured(Protocol):
    def cpu_seconds(self) -> float: ...


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def thread_cpu_seconds(pid: int) -> dict[str, float]:
    """CPU time so far of each live thread of a process, summed by role: "loop" (the main
    thread, where uvicorn's event loop runs), the threads named by the server (e.g. "vad"),
    and "other" (unnamed workers: executors, model threads)."""
    by_role: dict[str, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except OSError:  # the thread ended since the listing
            continue
        head, tail = stat.rsplit(")", 1)
        name = head.split("(", 1)[1]
        fields = tail.split()
        role = "loop" if task.name == str(pid) else name if name in THREAD_ROLES else "other"
        by_role[role] = by_role.get(role, 0.0) + (int(fields[11]) + int(fields[12])) / CLK_TCK
    return by_role


# Thread names (/proc/<pid>/task/<tid>/comm) the server gives its own worker threads.
THREAD_ROLES = ("vad",)


def child_setup() -> None:
    """In each server process before exec: die with the benchmark, run at its niceness."""
    try:
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if _nice:
        os.setpriority(os.PRIO_PROCESS, 0, _nice)


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
    global _nice
    _nice = args.nice
    if _nice:
        os.setpriority(os.PRIO_PROCESS, 0, _nice)
        # With sched_autogroup (the default on desktop-style kernels), niceness only ranks
        # processes within their session's group; the group's own nice ranks it among others.
        autogroup = Path("/proc/self/autogroup")
        with contextlib.suppress(OSError, ValueError, IndexError):
            before = int(autogroup.read_text().split("nice")[1])
            autogroup.write_text(str(_nice))
            # The group outlives this process (it is the shell session's): put it back.
            atexit.register(lambda: autogroup.write_text(str(before)))
    # A plain `kill` should still stop the servers: SIGTERM unwinds like Ctrl-C.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))


def _machine_busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy (all cores), from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / CLK_TCK


class CpuMeter:
    """CPU used by each process, by this client, and by
    everything else on the machine (other users' work competes for the same cores), between
    start() and stop(), in cores. With `threads_of`, that process's CPU is also split by
    thread role (`thread_cpu_seconds`), as "<name>.<role>", summed over the pids given (a
    server's workers); a thread that ended in between is counted in the total only."""

    def __init__(
        self,
        processes: dict[str, Measured],
        threads_of: dict[str, list[int]] | None = None,
    ) -> None:
        self.processes = processes
        self.threads_of = threads_of or {}

    def start(self) -> None:
        self._t = time.monotonic()
        self._cpu = {name: p.cpu_seconds() for name, p in self.processes.items()}
        self._threads = {name: _roles(pids) for name, pids in self.threads_of.items()}
        self._self = time.process_time()
        self._machine = _machine_busy_seconds()

    def stop(self) -> dict[str, float]:
        wall = time.monotonic() - self._t
        used = {
            name: (p.cpu_seconds() - self._cpu[name]) / wall for name, p in self.processes.items()
        }
        for name, pids in self.threads_of.items():
            before = self._threads[name]
            for role, seconds in _roles(pids).items():
                used[f"{name}.{role}"] = (seconds - before.get(role, 0.0)) / wall
        used["client"] = (time.process_time() - self._self) / wall
        machine = (_machine_busy_seconds() - self._machine) / wall
        own = sum(v for name, v in used.items() if "." not in name)
        used["other_processes"] = max(0.0, machine - own)
        return {name: round(v, 3) for name, v in used.items()}


def _roles(pids: list[int]) -> dict[str, float]:
    """`thread_cpu_seconds` summed by role over processes (one gone meanwhile adds nothing)."""
    total: dict[str, float] = {}
    for pid in pids:
        with contextlib.suppress(OSError):
            for role, seconds in thread_cpu_seconds(pid).items():
                total[role] = total.get(role, 0.0) + seconds
    return total


def background_load(seconds: float = 1.0) -> float:
    """Cores busy on this machine right now, with none of the benchmark's processes running."""
    before = _machine_busy_seconds()
    time.sleep(seconds)
    return round((_machine_busy_seconds() - before) / seconds, 3)


def wait_for_quiet(max_wait: float, threshold: float = 0.3) -> float:
    """Wait (up to `max_wait` s) until the machine is nearly idle; returns the last load seen."""
    deadline = time.monotonic() + max_wait
    load = background_load(1.0)
    while load > threshold and time.monotonic() < deadline:
        print(f"  machine busy ({load:.2f} cores used by other processes); waiting…", flush=True)
        load = background_load(2.0)
    return load


def loadavg() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


class PySpy:
    """`py-spy record` of a server process over a window (a profiling aid: --py-spy FILE)."""

    def __init__(self, pid: int, out: str | None, seconds: float) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        if out:
            formats = {".json": "speedscope", ".txt": "raw"}
            fmt = formats.get(Path(out).suffix, "flamegraph")
            duration = str(max(1, int(seconds)))
            # The one installed next to this interpreter (the venv's), if PATH has none.
            spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
            command = [spy, "record", "-p", str(pid), "-o", out, "-d", duration]
            self.proc = subprocess.Popen(
                [*command, "-r", "200", "-f", fmt, "--nonblocking"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )

    def wait(self) -> None:
        if self.proc is not None:
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
