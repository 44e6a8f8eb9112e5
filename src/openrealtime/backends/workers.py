"""Model workers: a pool of processes, each holding one model, that run model calls off the
process serving sockets.

Why processes: a model binding that holds the GIL (pocketsphinx) or burns a core for most of a
second (Whisper) stalls every session when it runs in a thread of the server. A worker process
has its own GIL, and a worker that crashes (a segfault in a native model) takes only itself down.

The rules, all in this file:
- Each worker loads its model once, at start (`start()`, blocking, at server start-up), from a
  picklable `factory`; workers are started with `spawn`, never `fork`, because the server has an
  event loop and threads.
- A worker runs one job at a time, so the pool always knows which job each worker holds. A job
  goes to an idle worker; when none is idle it waits, first come first served, at most
  `max_wait_s` and behind at most `max_waiting` others. Past either bound it fails at once with
  `ModelOverloaded` (code `model_overloaded`), logged: a job is never dropped silently.
- A worker that dies (killed, segfault, out of memory) is seen through its process sentinel; the
  job it held fails with code `model_worker_failed`, and a new worker is started in its place.
  A job that runs longer than `job_timeout_s` has its worker killed, which is the same path.
- A job whose caller is cancelled keeps its worker until the model returns; the result is
  dropped.
- Jobs are `fn(model, *args)` with `fn` a module-level function: it, its arguments and its
  result cross the process boundary by pickle, so keep them small (audio as bytes).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any, Generic, TypeVar

from .errors import BackendError

log = logging.getLogger(__name__)

M = TypeVar("M")
R = TypeVar("R")

# Spawn: a fork of a process with an event loop and threads can inherit a held lock.
_CONTEXT = multiprocessing.get_context("spawn")
# A replacement that fails to load waits this long, doubling up to _RESTART_MAX_S, before the
# next try, so a model that cannot load does not spin a core.
_RESTART_S, _RESTART_MAX_S = 0.5, 30.0


class ModelOverloaded(BackendError):
    def __init__(self, backend: str, detail: str) -> None:
        super().__init__(
            backend,
            "the server's models are busy; try again shortly",
            code="model_overloaded",
            detail=detail,
        )


class NoWorkerFree(ModelOverloaded):
    """A job that was not to wait found every worker busy; not counted as an overload."""


class ModelWorkerFailed(BackendError):
    def __init__(self, backend: str, detail: str) -> None:
        super().__init__(
            backend,
            "the model worker serving this request failed; try again",
            code="model_worker_failed",
            detail=detail,
        )


@dataclass(slots=True)
class _Job:
    id: int
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    result: asyncio.Future[Any]


@dataclass(eq=False, slots=True)
class _Worker:
    process: BaseProcess
    conn: Connection
    ready: bool = False
    job: _Job | None = None
    job_deadline: asyncio.TimerHandle | None = None
    watched: bool = False


@dataclass(slots=True)
class PoolStats:
    """Counts since start, for tests, benchmarks and logs."""

    completed: int = 0
    failed: int = 0  # the model raised
    overloaded: int = 0
    worker_deaths: int = 0
    replaced: int = 0
    waiting: int = 0
    busy: int = 0
    wait_s: collections.deque[float] = field(default_factory=lambda: collections.deque(maxlen=512))


class WorkerPool(Generic[M]):
    """`workers` processes, each running `factory()` once, then jobs one at a time."""

    def __init__(
        self,
        backend: str,
        factory: Callable[[], M],
        workers: int,
        *,
        max_waiting: int = 64,
        max_wait_s: float = 5.0,
        job_timeout_s: float | None = 60.0,
        start_timeout_s: float = 120.0,
    ) -> None:
        if workers < 1:
            raise ValueError("a worker pool needs at least one worker")
        self.backend = backend
        self.size = workers
        self._factory = factory
        self._max_waiting = max_waiting
        self._max_wait_s = max_wait_s
        self._job_timeout_s = job_timeout_s
        self._start_timeout_s = start_timeout_s
        # The cores shared out between the workers: more math threads than that only contend.
        self._threads = max(1, (os.cpu_count() or 1) // workers)
        self._workers: list[_Worker] = []
        self._waiting: collections.deque[tuple[_Job, float]] = collections.deque()
        self._ids = itertools.count(1)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._started = self._closed = False
        self._start_lock = threading.Lock()
        self._restart_delay = _RESTART_S
        self._starting: set[asyncio.Future[None]] = set()
        self.stats = PoolStats()

    @property
    def pids(self) -> list[int]:
        """The live workers' process ids (tests kill them)."""
        return [w.process.pid for w in self._workers if w.process.pid is not None and w.ready]

    def busy_pids(self) -> list[int]:
        return [w.process.pid for w in self._workers if w.job is not None and w.process.pid]

    # Start and stop ---------------------------------------------------------------------------

    def start(self) -> None:
        """Start every worker and wait until each has loaded its model (blocking: at start-up,
        off the event loop). Raises BackendError if a model fails to load."""
        with self._start_lock:  # two first jobs may both find the pool unstarted
            if self._started:
                return
            started = time.perf_counter()
            workers = [self._spawn() for _ in range(self.size)]
            try:
                for worker in workers:
                    self._await_ready(worker)
            except BaseException:
                for worker in workers:
                    worker.process.kill()
                raise
            if self._closed:  # closed while they loaded (a start-up warm-up cut short)
                for worker in workers:
                    worker.process.kill()
                return
            self._workers, self._started = workers, True
        log.info(
            "%d %s model worker(s) ready",
            self.size,
            self.backend,
            extra={"pids": self.pids, "seconds": round(time.perf_counter() - started, 2)},
        )

    async def aclose(self) -> None:
        self._closed = True
        for job, _ in self._waiting:
            _fail(job, ModelWorkerFailed(self.backend, "the server is shutting down"))
        self._waiting.clear()
        workers, self._workers = self._workers, []
        for worker in workers:
            self._unwatch(worker)
            if worker.job is not None:
                _fail(worker.job, ModelWorkerFailed(self.backend, "the server is shutting down"))
            with contextlib.suppress(OSError):  # a dead worker needs no asking
                worker.conn.send(None)  # asks the worker to exit
        await asyncio.to_thread(_join_all, workers)

    def _spawn(self) -> _Worker:
        ours, theirs = _CONTEXT.Pipe()
        process = _CONTEXT.Process(
            target=_serve,
            args=(theirs, self._factory, self._threads),
            name=f"{self.backend}-model",
            daemon=True,
        )
        process.start()
        theirs.close()  # so the worker's death reads as EOF here
        return _Worker(process, ours)

    def _await_ready(self, worker: _Worker) -> None:
        if not worker.conn.poll(self._start_timeout_s):
            worker.process.kill()
            raise BackendError(self.backend, "a model worker did not start in time")
        try:
            message = worker.conn.recv()
        except EOFError:
            worker.process.join(1.0)  # for its exit code: a negative one names the signal
            raise BackendError(
                self.backend,
                f"a model worker exited while loading (code {worker.process.exitcode})",
            ) from None
        self._on_ready(worker, message)

    def _on_ready(self, worker: _Worker, message: Any) -> None:
        kind, *rest = message
        if kind == "failed":
            raise _rebuild(self.backend, rest[0])
        worker.ready = True

    # Jobs ------------------------------------------------------------------------------------

    async def run(self, fn: Callable[..., R], *args: Any, wait: bool = True) -> R:
        """`fn(model, *args)` in a worker. Raises ModelOverloaded, ModelWorkerFailed, or the
        BackendError the model raised. With `wait=False`, a job that would wait raises
        `NoWorkerFree` at once instead (work worth doing only if a worker is idle)."""
        if self._closed:
            raise ModelWorkerFailed(self.backend, "the pool is closed")
        if not self._started:  # never started (an embedder skipped `load`): start now
            await asyncio.to_thread(self.start)
        self._attach()
        loop = asyncio.get_running_loop()
        job = _Job(next(self._ids), fn, args, loop.create_future())
        worker = self._idle()
        if worker is not None:
            self._send(worker, job)
        elif not wait:
            raise NoWorkerFree(self.backend, "every worker is busy")
        elif len(self._waiting) >= self._max_waiting:
            self._overloaded(job, f"{len(self._waiting)} jobs already waiting")
        else:
            self._waiting.append((job, loop.time()))
            self.stats.waiting = len(self._waiting)
            loop.call_later(self._max_wait_s, self._expire, job)
        try:
            return await asyncio.shield(job.result)
        except asyncio.CancelledError:
            self._withdraw(job)  # a job nobody awaits any more takes no worker
            job.result.add_done_callback(_retrieved)  # nor logs its late failure
            raise

    def _idle(self) -> _Worker | None:
        for worker in self._workers:
            if worker.ready and worker.job is None:
                return worker
        return None

    def _send(self, worker: _Worker, job: _Job) -> None:
        worker.job = job
        self.stats.busy += 1
        try:
            worker.conn.send((job.id, job.fn, job.args))
        except OSError:
            return  # the worker is dead; its sentinel reports it and fails the job
        if self._job_timeout_s is not None and self._loop is not None:
            worker.job_deadline = self._loop.call_later(
                self._job_timeout_s, self._overran, worker, job
            )

    def _expire(self, job: _Job) -> None:
        if self._withdraw(job):
            self._overloaded(job, f"no worker free within {self._max_wait_s:g} s")

    def _withdraw(self, job: _Job) -> bool:
        for i, (waiting, _) in enumerate(self._waiting):
            if waiting is job:
                del self._waiting[i]
                self.stats.waiting = len(self._waiting)
                return True
        return False

    def _overloaded(self, job: _Job, why: str) -> None:
        self.stats.overloaded += 1
        log.warning("%s models overloaded: %s", self.backend, why, extra={"workers": self.size})
        _fail(job, ModelOverloaded(self.backend, why))

    def _overran(self, worker: _Worker, job: _Job) -> None:
        if worker.job is job:
            log.error(
                "%s model job ran over %g s; killing its worker",
                self.backend,
                self._job_timeout_s,
                extra={"pid": worker.process.pid},
            )
            worker.process.kill()  # the sentinel then fails the job and replaces the worker

    def _next(self, worker: _Worker) -> None:
        """`worker` is free: hand it the longest-waiting job."""
        if self._waiting and not self._closed:
            job, queued_at = self._waiting.popleft()
            self.stats.waiting = len(self._waiting)
            assert self._loop is not None
            self.stats.wait_s.append(self._loop.time() - queued_at)
            self._send(worker, job)

    # Events from the workers, on the event loop -------------------------------------------------

    def _attach(self) -> None:
        """Watch every worker's pipe and sentinel on the running loop (once)."""
        loop = asyncio.get_running_loop()
        if self._loop is loop:
            return
        self._loop = loop
        for worker in list(self._workers):
            self._watch(worker)

    def _watch(self, worker: _Worker) -> None:
        assert self._loop is not None
        self._loop.add_reader(worker.conn.fileno(), self._on_message, worker)
        # uvloop (libuv) makes a watched descriptor non-blocking, and a `Connection` needs
        # blocking I/O: a job over the socket's buffer (~200 KB: 6 s of 16 kHz audio) failed
        # part-way with BlockingIOError, was taken for a dead worker's, and its worker waited
        # for the rest of the message until the job timed out.
        os.set_blocking(worker.conn.fileno(), True)
        self._loop.add_reader(worker.process.sentinel, self._on_exit, worker)
        worker.watched = True

    def _unwatch(self, worker: _Worker) -> None:
        if self._loop is not None and worker.watched and not self._loop.is_closed():
            self._loop.remove_reader(worker.conn.fileno())
            self._loop.remove_reader(worker.process.sentinel)
            worker.watched = False
        if worker.job_deadline is not None:
            worker.job_deadline.cancel()

    def _on_message(self, worker: _Worker) -> None:
        try:
            message = worker.conn.recv()
        except (EOFError, OSError):
            self._on_exit(worker)
            return
        if not worker.ready:
            try:
                self._on_ready(worker, message)
            except BackendError as exc:
                log.error("a replacement %s model worker failed to load: %s", self.backend, exc)
                self._on_exit(worker)
                return
            self._restart_delay = _RESTART_S
            log.info("%s model worker replaced", self.backend, extra={"pid": worker.process.pid})
            self.stats.replaced += 1
            self._next(worker)
            return
        job, worker.job = worker.job, None
        self.stats.busy -= 1
        if worker.job_deadline is not None:
            worker.job_deadline.cancel()
            worker.job_deadline = None
        job_id, ok, value = message
        if job is not None and job.id == job_id and not job.result.done():
            if ok:
                self.stats.completed += 1
                job.result.set_result(value)
            else:
                self.stats.failed += 1
                job.result.set_exception(_rebuild(self.backend, value))
        self._next(worker)

    def _on_exit(self, worker: _Worker) -> None:
        if worker not in self._workers:
            return
        self._unwatch(worker)
        self._workers.remove(worker)
        worker.process.join(0.05)  # dead or about to be: its pipe closed first
        code = worker.process.exitcode
        worker.conn.close()
        if worker.job is not None:
            self.stats.busy -= 1
            self.stats.worker_deaths += 1
            log.error(
                "a %s model worker died mid-job (exit code %s); replacing it",
                self.backend,
                code,
                extra={"pid": worker.process.pid},
            )
            _fail(worker.job, ModelWorkerFailed(self.backend, f"worker exit code {code}"))
        elif worker.ready:
            self.stats.worker_deaths += 1
            log.error("an idle %s model worker died (exit code %s)", self.backend, code)
        if not self._closed:
            self._replace(delay=0.0 if worker.ready else self._restart_delay)

    def _replace(self, delay: float) -> None:
        assert self._loop is not None
        self._restart_delay = min(self._restart_delay * 2, _RESTART_MAX_S)
        self._loop.call_later(delay, self._start_later)

    def _start_later(self) -> None:
        task = asyncio.ensure_future(self._start_one())
        self._starting.add(task)  # the loop keeps only a weak reference to a task
        task.add_done_callback(self._starting.discard)

    async def _start_one(self) -> None:
        if self._closed:
            return
        # Starting a process costs a fork-exec: keep it off the loop.
        worker = await asyncio.to_thread(self._spawn)
        if self._closed:
            worker.process.kill()
            return
        self._workers.append(worker)
        self._watch(worker)


def _retrieved(result: asyncio.Future[Any]) -> None:
    if not result.cancelled():
        result.exception()


def _fail(job: _Job, error: BackendError) -> None:
    if not job.result.done():
        job.result.set_exception(error)


def _join_all(workers: list[_Worker]) -> None:
    deadline = time.monotonic() + 5.0
    for worker in workers:
        worker.process.join(max(0.0, deadline - time.monotonic()))
        if worker.process.is_alive():
            worker.process.kill()
            worker.process.join(1.0)
        worker.conn.close()


# Errors cross the process boundary as plain tuples: BackendError's keyword-only arguments do
# not survive pickle, and an arbitrary exception may not unpickle in the server.
_Error = tuple[str, str, str, str]


def _describe(exc: BaseException) -> _Error:
    if isinstance(exc, BackendError):
        return (exc.backend, exc.code, exc.message, exc.detail)
    return ("", "backend_error", "", f"{type(exc).__name__}: {exc}")


def _rebuild(backend: str, error: _Error) -> BackendError:
    name, code, message, detail = error
    return BackendError(
        name or backend, message or "the model failed on this request", code=code, detail=detail
    )


# The worker process ------------------------------------------------------------------------------


def _serve(conn: Connection, factory: Callable[[], Any], threads: int) -> None:
    """A worker's whole life: load the model, then run jobs until asked to stop or orphaned."""
    # Ctrl-C goes to the whole process group; the server decides when its workers stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Read by OpenMP runtimes (CTranslate2's default thread count) when the model loads; an
    # operator's own setting wins.
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    try:
        model = factory()
    except BaseException as exc:
        conn.send(("failed", _describe(exc)))
        return
    conn.send(("ready", os.getpid()))
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):  # the server is gone
            return
        if message is None:
            return
        job_id, fn, args = message
        try:
            reply = (job_id, True, fn(model, *args))
        except BaseException as exc:
            reply = (job_id, False, _describe(exc))
        conn.send(reply)
