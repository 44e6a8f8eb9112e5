"""`openrealtime serve --workers N`: N server processes behind one port.

- The supervisor binds one listening socket per worker, all on the same port with
  SO_REUSEPORT: the kernel spreads new connections evenly over them by address hash. (One
  socket shared by all would go to whichever worker wakes first and accepts a whole burst;
  sessions are long, so an uneven start stays uneven.) The supervisor keeps its copies open:
  connections that arrive for a worker that died wait in its socket's queue for the
  replacement instead of being refused.
- Each worker is a fresh interpreter (multiprocessing's spawn) that serves as the single
  process does (server/run.py `serve`, with its graceful drain), loads its own models, and
  tags its log lines and HTTP answers with its number (`worker=2`, header
  `openrealtime-worker: 2`).
- State the workers must share (client secrets, where each WebRTC call lives, per-key
  session counts) goes through Redis: `--redis-url`, or else a private redis-server on a Unix
  socket (server/private_redis.py), started first and stopped last.
- A worker that dies is replaced (and logged). If the first workers die before any has
  served, the configuration cannot start: everything stops, exit status 1.
- SIGTERM or Ctrl-C: every worker drains as the single process does, then the supervisor
  exits; a second Ctrl-C tells the workers to stop waiting for active responses. Workers
  are in their own process group (a terminal's Ctrl-C reaches the supervisor only, which
  passes it on once) and die with the supervisor, however it dies.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
import time
from collections.abc import Awaitable, Callable, MutableMapping
from contextlib import ExitStack, suppress
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from multiprocessing.context import SpawnProcess
from typing import Any

from ..config import Settings
from ..logs import configure_logging, secrets_of
from .private_redis import PrivateRedis, die_with_parent, redis_server_binary

log = logging.getLogger(__name__)

WORKER_HEADER = b"openrealtime-worker"
BACKLOG = 2048  # uvicorn's default
RESTART_INTERVAL_S = 1.0  # a worker slot is restarted at most this often
MAX_RESTART_DELAY_S = 30.0
POLL_S = 0.2
SERVING = b"serving"

_spawn = multiprocessing.get_context("spawn")


def check_supervisor(settings: Settings) -> None:
    """Before anything starts; raises ValueError with what to change."""
    if not hasattr(socket, "SO_REUSEPORT"):
        raise ValueError("--workers needs SO_REUSEPORT, which this system lacks; use --workers 1")
    if settings.sip_port is not None:
        # A ringing call lives in the process that took its INVITE, and the kernel would spread
        # one call's SIP packets over the workers; SIP stays a single-process feature for now.
        raise ValueError("--sip-port needs --workers 1: SIP calls are taken by one process")
    if settings.redis_url is None:
        redis_server_binary()


def supervise(settings: Settings) -> int:
    """Run until SIGTERM or Ctrl-C; the exit status."""
    configure_logging(settings.log_level, settings.log_format, secrets=secrets_of(settings))
    signals: list[int] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, frame: signals.append(signum))
    with ExitStack() as stack:
        try:
            sockets = listen(settings.host, settings.port, settings.workers)
        except OSError as exc:
            log.error("cannot listen on %s:%d: %s", settings.host, settings.port, exc)
            return 1
        for sock in sockets:
            stack.callback(sock.close)
        redis_url = settings.redis_url
        if redis_url is None:
            try:
                redis_url = stack.enter_context(PrivateRedis()).url
            except (OSError, RuntimeError) as exc:
                log.error("%s", exc)
                return 1
        port = sockets[0].getsockname()[1]
        shared = settings.model_copy(update={"redis_url": redis_url, "port": port})
        return Supervisor(shared, sockets, signals).run()


def listen(host: str, port: int, count: int) -> list[socket.socket]:
    """`count` listening sockets on one port (port 0: the first one's)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.create_server(
                (host, port), family=family, backlog=BACKLOG, reuse_port=True
            )
            sockets.append(sock)
            port = sock.getsockname()[1]
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


@dataclass
class Worker:
    index: int  # 1..N, kept by its replacements
    process: SpawnProcess
    # The worker says "serving" here once it does. A pipe, not a multiprocessing Event: no
    # semaphore for the resource tracker to find leaked at exit.
    started: Connection
    failures: int = 0  # its slot's workers in a row that died before they served
    born: float = field(default_factory=time.monotonic)
    restart_at: float | None = None  # once dead: when its replacement starts
    _serving: bool = False

    def serving(self) -> bool:
        if not self._serving and self.started.poll():
            with suppress(EOFError):  # it died first
                self._serving = self.started.recv_bytes() == SERVING
        return self._serving


class Supervisor:
    def __init__(self, settings: Settings, sockets: list[socket.socket], signals: list[int]):
        self.settings = settings
        self.sockets = sockets
        self.signals = signals  # appended to by the signal handlers
        self.workers: list[Worker] = []
        self.up = False  # a worker has served: a later failure to start is not the config's

    def run(self) -> int:
        log.info(
            "supervisor (pid %d): %d workers on %s:%d",
            os.getpid(),
            len(self.sockets),
            self.settings.host,
            self.settings.port,
        )
        self.workers = [self._start(index) for index in range(1, len(self.sockets) + 1)]
        status = 0
        while not self.signals and status == 0:
            wait([w.process.sentinel for w in self._alive()], timeout=POLL_S)
            self.up = self.up or any(w.serving() for w in self.workers)
            for slot, worker in enumerate(self.workers):
                if worker.process.exitcode is None:
                    continue
                if worker.restart_at is None:
                    if not worker.serving() and not self.up:
                        log.error(
                            "worker %d (pid %s) exited before it could serve (exit code %s); "
                            "stopping: see its lines above",
                            worker.index,
                            worker.process.pid,
                            worker.process.exitcode,
                        )
                        status = 1
                        break
                    worker.restart_at = self._restart_time(worker)
                elif time.monotonic() >= worker.restart_at:
                    failures = 0 if worker.serving() else worker.failures + 1
                    worker.started.close()
                    self.workers[slot] = self._start(worker.index, failures)
        self._stop()
        return status

    def _restart_time(self, dead: Worker) -> float:
        """A slot restarts at most once a second; one whose workers keep dying before they
        serve (out of memory at load?) waits longer each time, up to 30 s."""
        now = time.monotonic()
        if dead.serving():
            delay = max(0.0, dead.born + RESTART_INTERVAL_S - now)
        else:
            delay = min(MAX_RESTART_DELAY_S, RESTART_INTERVAL_S * 2**dead.failures)
        log.warning(
            "worker %d (pid %s) died (exit code %s)%s; starting a new one in %.0f s",
            dead.index,
            dead.process.pid,
            dead.process.exitcode,
            "" if dead.serving() else " before it served",
            delay,
        )
        return now + delay

    def _start(self, index: int, failures: int = 0) -> Worker:
        started, tell = _spawn.Pipe(duplex=False)
        process = _spawn.Process(
            target=worker_main,
            args=(self.settings, index, self.sockets[index - 1], tell),
            name=f"openrealtime-worker-{index}",
        )
        process.start()
        tell.close()  # the worker's end
        log.info("worker %d started (pid %s)", index, process.pid)
        return Worker(index, process, started, failures)

    def _stop(self) -> None:
        """Every worker drains (SIGTERM); a later signal makes them stop waiting (SIGINT:
        uvicorn's second Ctrl-C); past the longest drain there is, SIGKILL."""
        # Imported here, not at the top: the supervisor never loads the app (~50 MB less).
        from .lifecycle import CLOSE_WAIT_S
        from .run import UVICORN_SHUTDOWN_TIMEOUT_S

        # The workers hold their own copies while they drain (and answer 503); once they close
        # theirs, the port is closed and new clients are refused rather than left waiting.
        for sock in self.sockets:
            sock.close()
        seen = len(self.signals)
        self._send(signal.SIGTERM)
        longest = self.settings.shutdown_grace_seconds + CLOSE_WAIT_S + UVICORN_SHUTDOWN_TIMEOUT_S
        deadline = time.monotonic() + longest + 5
        while self._alive() and time.monotonic() < deadline:
            wait([w.process.sentinel for w in self._alive()], timeout=POLL_S)
            if len(self.signals) > seen:
                seen = len(self.signals)
                log.info("told again: workers stop waiting for active responses")
                self._send(signal.SIGINT)
        for worker in self._alive():
            log.error(
                "worker %d (pid %s) did not stop; killing it", worker.index, worker.process.pid
            )
            worker.process.kill()
        for worker in self.workers:
            worker.process.join()
        log.info("all workers stopped")

    def _alive(self) -> list[Worker]:
        return [w for w in self.workers if w.process.exitcode is None]

    def _send(self, sig: int) -> None:
        for worker in self._alive():
            if worker.process.pid is not None:
                with suppress(ProcessLookupError):
                    os.kill(worker.process.pid, sig)


# --- in a worker process ---------------------------------------------------------------------


def worker_main(settings: Settings, index: int, sock: socket.socket, started: Connection) -> None:
    os.setpgid(0, 0)  # a terminal's Ctrl-C goes to the supervisor only
    die_with_parent()
    supervisor = multiprocessing.parent_process()
    if supervisor is None or os.getppid() != supervisor.pid:  # it died before the line above
        return
    from .run import serve

    handler = configure_logging(
        settings.log_level, settings.log_format, secrets=secrets_of(settings)
    )
    handler.addFilter(WorkerTag(index))
    # uvicorn re-raises the signals it caught once it has stopped: a second Ctrl-C (SIGINT)
    # would end in KeyboardInterrupt. Its handler is replaced while it runs.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    serve(
        settings,
        sockets=[sock],
        wrap=lambda app: WorkerHeader(app, index),
        on_started=lambda: started.send_bytes(SERVING),
    )


class WorkerTag(logging.Filter):
    """Adds `worker=N` to every line of a worker."""

    def __init__(self, index: int) -> None:
        super().__init__()
        self.index = index

    def filter(self, record: logging.LogRecord) -> bool:
        record.worker = self.index
        return True


Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_ANSWERS = frozenset({"http.response.start", "websocket.accept", "websocket.http.response.start"})


class WorkerHeader:
    """Tells a client which worker answered (`openrealtime-worker: N`), on every HTTP
    response and WebSocket handshake: each worker has its own /metrics and log lines."""

    def __init__(self, app: Any, index: int) -> None:
        self.app = app
        self._header = (WORKER_HEADER, str(index).encode())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, send)
            return

        async def tagged(message: Message) -> None:
            if message["type"] in _ANSWERS:
                message = {**message, "headers": [*message.get("headers", ()), self._header]}
            await send(message)

        await self.app(scope, receive, tagged)
