"""The servers a benchmark measures, each in a process of its own (`launch.py`), so the load
generator never shares a GIL with the server it measures; and what /proc and the openrealtime
process's side channel (`control.py`) say about them."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from . import machine
from .stats import RESULTS_DIR, ROOT, record_source


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """One `python -m benchmarks.lib.launch WHAT` process; its output goes to a log file next
    to the results."""

    def __init__(self, what: str, *args: str, ready_path: str) -> None:
        self.what = what
        self.port = free_port()
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        self.log_path = RESULTS_DIR / f"{what}.log"
        self._log = open(self.log_path, "a")  # noqa: SIM115 - closed in stop()
        self._log.write(f"\n===== {time.strftime('%H:%M:%S')} {what} {' '.join(args)}\n")
        self._log.flush()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.lib.launch", what, "--port", str(self.port), *args],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            preexec_fn=machine.child_setup,
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
                answer = httpx.get(self.url + path, timeout=1.0)
                # openrealtime loads its models after it listens: wait for them too.
                if answer.status_code < 500 and not _models_loading(answer):
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.what} did not start within {timeout:.0f} s; see {self.log_path}")

    def cpu_seconds(self) -> float:
        return machine.cpu_seconds(self.pid)

    def status(self) -> dict[str, int]:
        """VmRSS, VmHWM (peak RSS), VmData in KiB and Threads, from /proc/<pid>/status."""
        out = {}
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM", "VmData", "Threads"):
                out[key] = int(value.split()[0])
        return out

    def rss_kib(self) -> int:
        return self.status()["VmRSS"]

    def threads(self) -> int:
        return self.status()["Threads"]

    def sockets(self) -> dict[str, int]:
        """The process's file descriptors by kind (socket, pipe, anon_inode, file…)."""
        kinds: dict[str, int] = {}
        for target in _fd_targets(self.pid):
            kind = target.split(":", 1)[0] if ":" in target else "file"
            kinds[kind] = kinds.get(kind, 0) + 1
        return kinds

    def tcp_sockets(self) -> dict[str, int]:
        """Its TCP sockets: listening, accepted from clients (on its own port), and outgoing
        connections (to backends), by state."""
        table = _tcp_table(self.pid)
        out: dict[str, int] = {}
        for target in _fd_targets(self.pid):
            if not target.startswith("socket:["):
                continue
            entry = table.get(target[8:-1])
            if entry is None:
                kind = "other"  # Unix sockets, socketpairs
            elif entry[2] == "LISTEN":
                kind = "listening"
            else:
                kind = f"{'client' if entry[0] == self.port else 'backend'} {entry[2]}"
            out[kind] = out.get(kind, 0) + 1
        return out

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


def _fd_targets(pid: int) -> list[str]:
    fd_dir = f"/proc/{pid}/fd"
    targets = []
    for fd in os.listdir(fd_dir):
        with contextlib.suppress(OSError):  # closed meanwhile
            targets.append(os.readlink(f"{fd_dir}/{fd}"))
    return targets


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


# --- the fake LLM ------------------------------------------------------------------------------


class LlmProcess(ServerProcess):
    """The fake Chat Completions server (`fake_llm.py`) and its own request log."""

    def stats(self) -> dict[str, int]:
        return dict(httpx.get(self.url + "/bench/stats", timeout=10).json())

    def log(self) -> list[tuple[float, dict[str, Any]]]:
        """When each chat request's body had been read, with the body."""
        requests = httpx.get(self.url + "/bench/log", timeout=30).json()["requests"]
        return [(t, body) for t, body in requests]

    def reset_log(self) -> None:
        httpx.post(self.url + "/bench/reset", timeout=10)

    def arrivals(self) -> dict[str, dict[int, float]]:
        raw = httpx.get(self.url + "/bench/arrivals", timeout=30).json()
        return {kind: {int(n): t for n, t in times.items()} for kind, times in raw.items()}

    def streams(self) -> list[dict[str, Any]]:
        return list(httpx.get(self.url + "/bench/streams", timeout=30).json()["streams"])


def start_llm(delay: float = 0.0, chunks: int | None = None) -> LlmProcess:
    """Instant replies by default; `chunks` pieces `delay` s apart to answer like a model."""
    args = ["--delay", str(delay), *(["--chunks", str(chunks)] if chunks else [])]
    return LlmProcess("llm", *args, ready_path="/v1/models")


def _models_loading(answer: httpx.Response) -> bool:
    try:
        return bool(answer.json().get("models") == "loading")
    except ValueError:  # not JSON: not openrealtime's /healthz
        return False


# --- openrealtime --------------------------------------------------------------------------


class OpenRealtimeProcess(ServerProcess):
    """openrealtime as `openrealtime serve` runs it; with `control`, the benchmark's side
    channel (`control.py`) tells what happens inside."""

    def __init__(
        self,
        llm: ServerProcess,
        log_level: str = "info",
        stt: str = "pocketsphinx",
        *,
        tts: str = "espeak",
        control: bool = False,
        collect_every: float | None = None,
        mcp_allow_hosts: str | None = None,
        workers: int = 1,
        settings: dict[str, str] | None = None,
    ) -> None:
        record_source()
        self.control_path: str | None = None
        self.workers = workers  # before the start: `_wait_ready` reads it
        args = ["--llm-url", llm.url + "/v1", "--log-level", log_level, "--stt", stt, "--tts", tts]
        args += ["--workers", str(workers)]
        if control:
            self.control_path = os.path.join(
                tempfile.gettempdir(),
                f"openrealtime-bench-{os.getpid()}-{time.monotonic_ns()}.sock",
            )
            args += ["--control", self.control_path]
        if collect_every:
            args += ["--collect-every", str(collect_every)]
        if mcp_allow_hosts:
            args += ["--mcp-allow-hosts", mcp_allow_hosts]
        for field, value in (settings or {}).items():  # any other Settings field
            args += ["--setting", f"{field}={value}"]
        super().__init__("openrealtime", *args, ready_path="/healthz")

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/realtime?model=gpt-realtime"

    def _wait_ready(self, path: str, timeout: float = 60.0) -> None:
        """With --workers, until every worker has answered (`openrealtime-worker` header);
        each loads its own models, so they get the time one process gets, each."""
        super()._wait_ready(path, timeout * self.workers)
        deadline = time.monotonic() + timeout * self.workers
        seen: set[str] = set()
        while self.workers > 1 and len(seen) < self.workers:
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"workers {sorted(seen)} answered; see {self.log_path}")
            with contextlib.suppress(httpx.HTTPError):
                # A new connection each time: the kernel picks the worker by its address.
                answer = httpx.get(self.url + path, timeout=1.0)
                if answer.status_code == 200:
                    seen.add(answer.headers["openrealtime-worker"])
            time.sleep(0.02)

    def cpu_seconds(self) -> float:
        """With --workers: the supervisor's, its workers' and its redis-server's together."""
        total = 0.0
        for pid in self.tree():
            with contextlib.suppress(OSError):  # gone meanwhile
                total += machine.cpu_seconds(pid)
        return total

    def status(self) -> dict[str, int]:
        """With --workers, summed over the processes (VmHWM: the sum of their peaks)."""
        out: dict[str, int] = {}
        for pid in self.tree():
            with contextlib.suppress(OSError):  # gone meanwhile
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    key, _, value = line.partition(":")
                    if key in ("VmRSS", "VmHWM", "VmData", "Threads"):
                        out[key] = out.get(key, 0) + int(value.split()[0])
        return out

    def tree(self) -> list[int]:
        """This process and (with --workers) all its descendants."""
        pids, i = [self.pid], 0
        while i < len(pids) and self.workers > 1:
            with contextlib.suppress(OSError):
                children = Path(f"/proc/{pids[i]}/task/{pids[i]}/children").read_text().split()
                pids += [int(c) for c in children]
            i += 1
        return pids

    def inside(self, collect: bool = False, timeout: float = 30.0) -> dict[str, Any]:
        """Tasks, threads, allocated blocks and live per-session objects, from inside."""
        return self._ask(b"gc\n" if collect else b"stats\n", timeout)

    def loop_lag(self) -> float | None:
        """Seconds a callback waited for the server's event loop (blocking: use a thread)."""
        lag = self._ask(b"lag\n", 90.0).get("lag_s")
        return None if lag is None else float(lag)

    def tracemalloc_snapshot(self, path: str) -> dict[str, Any]:
        """Dump a tracemalloc snapshot to `path` (the server must run with PYTHONTRACEMALLOC)."""
        return self._ask(f"tracemalloc {path}\n".encode(), 300.0)

    def _ask(self, command: bytes, timeout: float) -> dict[str, Any]:
        if self.control_path is None:
            raise RuntimeError("started without the side channel: pass control=True")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(self.control_path)
            sock.sendall(command)
            data = b""
            # Until EOF: the server has then closed its end, so the query's own socket is
            # gone before anyone counts the process's descriptors.
            while part := sock.recv(65536):
                data += part
        return dict(json.loads(data))

    def stop(self) -> None:
        super().stop()
        if self.control_path and os.path.exists(self.control_path):
            os.unlink(self.control_path)


async def sample_rss(server: ServerProcess, samples: list[int], stop: asyncio.Event) -> None:
    """The server's VmRSS every 500 ms, until `stop`."""
    while not stop.is_set():
        with contextlib.suppress(OSError):
            samples.append(server.rss_kib())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.5)


async def sample_server_lag(
    server: OpenRealtimeProcess, samples: list[float], stop: asyncio.Event
) -> None:
    """The server's event-loop lag (see `control.py`), every 250 ms, until `stop`."""
    while not stop.is_set():
        with contextlib.suppress(Exception):
            lag = await asyncio.to_thread(server.loop_lag)
            if lag is not None:
                samples.append(lag)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.25)


def new_log_lines(path: Path, offset: int) -> list[str]:
    """The lines a server logged after `offset` bytes of its log file."""
    with open(path, errors="replace") as f:
        f.seek(offset)
        return f.read().splitlines()
