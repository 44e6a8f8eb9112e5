"""What `load.py` and `soak_disconnect.py` share: their servers (`_launch_load.py`), the
server's side channel, and what /proc says about a process."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from _harness import (
    BENCH_DIR,
    RESULTS_DIR,
    ROOT,
    SOURCES_MEASURED,
    ServerProcess,
    _child_setup,
    free_port,
    source,
)


class LoadServerProcess(ServerProcess):
    """A `_launch_load.py` subprocess; everything else as `_harness.ServerProcess`."""

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
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [src, env.get("PYTHONPATH")]))
        self.proc = subprocess.Popen(
            [
                sys.executable,
                str(BENCH_DIR / "_launch_load.py"),
                what,
                "--port",
                str(self.port),
                *args,
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env=env,
            preexec_fn=_child_setup,
        )
        self.pid = self.proc.pid
        self._wait_ready(ready_path)

    def fds(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def status(self) -> dict[str, int]:
        """VmRSS, VmHWM (peak RSS), VmData in KiB and Threads, from /proc/<pid>/status."""
        out = {}
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM", "VmData", "Threads"):
                out[key] = int(value.split()[0])
        return out

    def sockets(self) -> dict[str, int]:
        """The process's file descriptors by kind (socket, pipe, anon_inode, file…)."""
        kinds: dict[str, int] = {}
        fd_dir = f"/proc/{self.pid}/fd"
        for fd in os.listdir(fd_dir):
            try:
                target = os.readlink(f"{fd_dir}/{fd}")
            except OSError:
                continue
            kind = target.split(":", 1)[0] if ":" in target else "file"
            kinds[kind] = kinds.get(kind, 0) + 1
        return kinds


def _tcp_table(pid: int) -> dict[str, tuple[int, int, str]]:
    """socket inode -> (local port, remote port, TCP state) for the process's network namespace."""
    states = {"01": "ESTABLISHED", "06": "TIME_WAIT", "08": "CLOSE_WAIT", "0A": "LISTEN"}
    table = {}
    for name in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/{pid}/net/{name}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            local, remote, state, inode = f[1], f[2], f[3], f[9]
            table[inode] = (
                int(local.rsplit(":", 1)[1], 16),
                int(remote.rsplit(":", 1)[1], 16),
                states.get(state, state),
            )
    return table


def tcp_sockets(pid: int, own_port: int) -> dict[str, int]:
    """The process's TCP sockets: listening, accepted from clients (on `own_port`), and
    outgoing connections (to backends), by state."""
    table = _tcp_table(pid)
    out: dict[str, int] = {}
    fd_dir = f"/proc/{pid}/fd"
    for fd in os.listdir(fd_dir):
        try:
            target = os.readlink(f"{fd_dir}/{fd}")
        except OSError:
            continue
        if not target.startswith("socket:["):
            continue
        entry = table.get(target[8:-1])
        if entry is None:
            out["other"] = out.get("other", 0) + 1  # Unix sockets, socketpairs
            continue
        local, _, state = entry
        kind = (
            "listening"
            if state == "LISTEN"
            else f"client {state}"
            if local == own_port
            else f"backend {state}"
        )
        out[kind] = out.get(kind, 0) + 1
    return out


def start_load_llm(delay: float, chunks: int) -> LoadServerProcess:
    return LoadServerProcess(
        "llm", "--delay", str(delay), "--chunks", str(chunks), ready_path="/v1/models"
    )


class ControlledServer(LoadServerProcess):
    """openrealtime with the benchmark's side channel (`_launch_load.py --control`)."""

    def __init__(
        self,
        llm: ServerProcess,
        stt: str,
        log_level: str = "info",
        collect_every: float | None = None,
    ) -> None:
        src = source()
        if src not in SOURCES_MEASURED:
            SOURCES_MEASURED.append(src)
        self.control_path = os.path.join(
            tempfile.gettempdir(), f"openrealtime-bench-{os.getpid()}-{time.monotonic_ns()}.sock"
        )
        super().__init__(
            "openrealtime",
            "--llm-url",
            llm.url + "/v1",
            "--log-level",
            log_level,
            "--stt",
            stt,
            "--control",
            self.control_path,
            *(["--collect-every", str(collect_every)] if collect_every else []),
            ready_path="/healthz",
        )

    def inside(self, collect: bool = False, timeout: float = 30.0) -> dict[str, Any]:
        """Tasks, threads, allocated blocks and live per-session objects, from inside."""
        return self._ask(b"gc\n" if collect else b"stats\n", timeout)

    def loop_lag(self) -> float | None:
        """Seconds a callback waited for the server's event loop (blocking: use a thread)."""
        return self._ask(b"lag\n", 90.0).get("lag_s")

    def tracemalloc_snapshot(self, path: str) -> dict[str, Any]:
        """Dump a tracemalloc snapshot to `path` (the server must run with PYTHONTRACEMALLOC)."""
        return self._ask(f"tracemalloc {path}\n".encode(), 300.0)

    def _ask(self, command: bytes, timeout: float) -> dict[str, Any]:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(self.control_path)
            sock.sendall(command)
            data = b""
            # Until EOF: the server has then closed its end, so the query's own socket is
            # gone before anyone counts the process's descriptors.
            while part := sock.recv(65536):
                data += part
        return json.loads(data)

    def stop(self) -> None:
        super().stop()
        if os.path.exists(self.control_path):
            os.unlink(self.control_path)


def llm_stats(llm: ServerProcess) -> dict[str, int]:
    return dict(httpx.get(llm.url + "/bench/stats", timeout=10).json())


def llm_arrivals(llm: ServerProcess) -> dict[str, dict[int, float]]:
    raw = httpx.get(llm.url + "/bench/arrivals", timeout=30).json()
    return {kind: {int(n): t for n, t in times.items()} for kind, times in raw.items()}


def llm_streams(llm: ServerProcess) -> list[dict[str, Any]]:
    return list(httpx.get(llm.url + "/bench/streams", timeout=30).json()["streams"])


def loadavg() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


async def sample_server_lag(
    server: ControlledServer, samples: list[float], stop: asyncio.Event
) -> None:
    """The server's event-loop lag (see `_launch_load.py`), every 250 ms."""
    while not stop.is_set():
        with contextlib.suppress(Exception):
            lag = await asyncio.to_thread(server.loop_lag)
            if lag is not None:
                samples.append(lag)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.25)
