"""Model workers (`backends/workers.py`): a recognizer running in worker processes, driven
through the real server by the official SDK over real sockets.

A worker killed mid-job fails the transcription it held, and only that one, with a code; the
pool replaces the worker and later turns transcribe. An overloaded pool fails a turn after a
bounded wait instead of hanging it. The fake model (`pool_models.CountingTranscriber`) runs in
the spawned worker processes at the model boundary; one test runs the real pocketsphinx.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import functools
import os
import re
import signal
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import openai
import pytest
from conftest import API_KEY, recv, recv_until
from pool_models import CountingTranscriber, PickyTranscriber
from pydantic import ValidationError
from servers import ServerThread
from speech_fixtures import speak, with_silence

from openrealtime.backends.registry import Backends, create_backends
from openrealtime.backends.stt.pooled import PooledTranscriber
from openrealtime.cli import parse_settings
from openrealtime.config import Settings
from openrealtime.server.app import create_app

RATE = 24000
CHUNK = RATE * 20 // 1000 * 2
COMPLETED = "conversation.item.input_audio_transcription.completed"
FAILED = "conversation.item.input_audio_transcription.failed"


@dataclasses.dataclass
class Served:
    url: str

    def __call__(self) -> Any:
        """A new SDK realtime connection."""
        client = openai.OpenAI(base_url=self.url + "/v1", api_key=API_KEY)
        return client.realtime.connect(model="gpt-realtime")


@contextlib.contextmanager
def serving(settings: Settings, backends: Backends, stt: PooledTranscriber) -> Iterator[Served]:
    """A server whose recognizer is `stt`; yields what opens connections to it."""
    app = create_app(settings, dataclasses.replace(backends, stt=stt))
    try:
        with ServerThread(app) as server:
            yield Served(server.url)
    finally:
        asyncio.run(stt.aclose())  # given backends are the caller's to close


def counting(workers: int, hold_until: Path | None = None, **pool: Any) -> PooledTranscriber:
    hold = str(hold_until) if hold_until else None
    return PooledTranscriber(functools.partial(CountingTranscriber, hold), workers, **pool)


def open_session(conn: Any) -> None:
    """Manual commits, every turn transcribed."""
    assert recv(conn).type == "session.created"
    audio_input = {"turn_detection": None, "transcription": {"model": "whisper-1"}}
    conn.session.update(
        session={"type": "realtime", "output_modalities": ["text"], "audio": {"input": audio_input}}
    )
    assert recv(conn).type == "session.updated"


def commit(conn: Any, ms: int) -> str:
    """`ms` of (silent) audio as one turn; returns its item id."""
    raw = bytes(RATE * ms // 1000 * 2)
    for start in range(0, len(raw), CHUNK):
        conn.input_audio_buffer.append(audio=base64.b64encode(raw[start : start + CHUNK]).decode())
    conn.input_audio_buffer.commit()
    committed = recv_until(conn, "input_audio_buffer.committed")[-1]
    return str(committed.item_id)


def outcome(conn: Any, item_id: str, timeout: float = 60.0) -> Any:
    """The transcription's end for `item_id`: its `completed` or its `failed` event. A
    watchdog closes the socket after `timeout`, so a turn that hangs fails the test."""
    watchdog = threading.Timer(timeout, conn.close)
    watchdog.start()
    try:
        while True:
            event = recv(conn)
            if event.type in (COMPLETED, FAILED) and event.item_id == item_id:
                return event
    finally:
        watchdog.cancel()


def heard_ms(event: Any) -> int:
    assert event.type == COMPLETED, event
    match = re.fullmatch(r"heard (\d+) ms", event.transcript)
    assert match, event.transcript
    return int(match.group(1))


def wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_a_session_transcribes_through_the_pool(settings: Settings, backends: Backends) -> None:
    stt = counting(workers=2)
    with serving(settings, backends, stt) as connect, connect() as conn:
        assert len(stt.pool.pids) == 2  # warm: loaded before the server took connections
        assert os.getpid() not in stt.pool.pids
        open_session(conn)
        for ms in (600, 1200):
            # The worker saw this turn's audio, resampled to 16 kHz: within a sample of it.
            assert heard_ms(outcome(conn, commit(conn, ms))) == pytest.approx(ms, abs=1)
    assert stt.pool.stats.completed == 2


def test_a_transcription_session_streams_through_the_pool(
    settings: Settings, backends: Backends
) -> None:
    """Partial transcripts are re-decodes, each a job taken only when a worker is idle."""
    stt = counting(workers=1)
    sentence = "the quick brown fox jumps over the lazy dog and runs into the green forest"
    raw = with_silence(speak(sentence, RATE), 300, 1200, RATE).astype(np.int16).tobytes()
    with serving(settings, backends, stt) as connect:
        client = openai.OpenAI(base_url=connect.url + "/v1", api_key=API_KEY)
        with client.realtime.connect(
            model="gpt-realtime", extra_query={"intent": "transcription"}
        ) as conn:
            assert recv(conn).session.type == "transcription"
            for start in range(0, len(raw), CHUNK):
                chunk = raw[start : start + CHUNK]
                conn.input_audio_buffer.append(audio=base64.b64encode(chunk).decode())
            item_id = recv_until(conn, "input_audio_buffer.committed")[-1].item_id
            done = outcome(conn, item_id)
    # The whole turn (speech, padding, the silence that ended it) was decoded at the end.
    assert heard_ms(done) > 2000
    assert stt.pool.stats.completed >= 2  # partial passes ran too
    assert stt.pool.stats.overloaded == 0


def test_a_killed_worker_fails_only_its_turn_and_is_replaced(
    settings: Settings, backends: Backends, tmp_path: Path
) -> None:
    release = tmp_path / "release"
    stt = counting(workers=2, hold_until=release)
    with serving(settings, backends, stt) as connect, connect() as a, connect() as b:
        open_session(a)
        open_session(b)
        doomed = commit(a, 800)
        wait_for(lambda: len(stt.pool.busy_pids()) == 1)
        [victim] = stt.pool.busy_pids()
        other = commit(b, 400)  # goes to the other worker, and lives
        wait_for(lambda: len(stt.pool.busy_pids()) == 2)
        os.kill(victim, signal.SIGKILL)

        failed = outcome(a, doomed)
        assert failed.type == FAILED
        assert failed.error.code == "model_worker_failed"
        release.touch()  # b's job, still held by the other worker, may end now
        assert heard_ms(outcome(b, other)) == pytest.approx(400, abs=1)

        wait_for(lambda: len(stt.pool.pids) == 2)  # replaced, and loaded
        assert victim not in stt.pool.pids
        # Both sessions go on: a later turn of each, at once, on both workers.
        later_a, later_b = commit(a, 300), commit(b, 500)
        assert heard_ms(outcome(a, later_a)) == pytest.approx(300, abs=1)
        assert heard_ms(outcome(b, later_b)) == pytest.approx(500, abs=1)
    assert (stt.pool.stats.worker_deaths, stt.pool.stats.replaced) == (1, 1)


def test_a_model_error_reaches_the_session_with_its_code_and_the_worker_lives_on(
    settings: Settings, backends: Backends
) -> None:
    stt = PooledTranscriber(PickyTranscriber, 1)
    with serving(settings, backends, stt) as connect, connect() as conn:
        [pid] = stt.pool.pids
        open_session(conn)
        failed = outcome(conn, commit(conn, 300))
        assert failed.type == FAILED
        assert (failed.error.code, failed.error.message) == ("audio_too_short", "too short to hear")
        assert heard_ms(outcome(conn, commit(conn, 900))) == pytest.approx(900, abs=1)
        assert stt.pool.pids == [pid]  # a model's error is not a worker's death
    assert (stt.pool.stats.failed, stt.pool.stats.worker_deaths) == (1, 0)


def test_an_overloaded_pool_fails_a_turn_after_a_bounded_wait(
    settings: Settings, backends: Backends, tmp_path: Path
) -> None:
    release = tmp_path / "release"
    stt = counting(workers=1, hold_until=release, max_wait_s=0.3)
    with serving(settings, backends, stt) as connect, connect() as a, connect() as b:
        open_session(a)
        open_session(b)
        first = commit(a, 700)
        wait_for(lambda: len(stt.pool.busy_pids()) == 1)
        started = time.monotonic()
        waiting = commit(b, 400)
        failed = outcome(b, waiting)
        waited = time.monotonic() - started
        assert failed.type == FAILED
        assert failed.error.code == "model_overloaded"
        # It failed on its own bound, while the worker was still busy.
        assert 0.3 <= waited < 30
        assert stt.pool.busy_pids()
        release.touch()
        # The turn the worker held is not affected.
        assert heard_ms(outcome(a, first)) == pytest.approx(700, abs=1)
        # The overload is counted where operators look.
        metrics = urllib.request.urlopen(f"{connect.url}/metrics").read().decode()
        failures = [
            line
            for line in metrics.splitlines()
            if line.startswith("openrealtime_backend_failures_total{")
            and 'code="model_overloaded"' in line
        ]
        assert [float(line.rsplit(" ", 1)[1]) for line in failures] == [1.0]
    assert stt.pool.stats.overloaded == 1


def test_pocketsphinx_transcribes_in_a_worker(settings: Settings) -> None:
    real = create_backends(settings.model_copy(update={"stt_workers": 1}))
    assert isinstance(real.stt, PooledTranscriber)
    said = with_silence(speak("turn on the lights in the kitchen please", RATE), 200, 200, RATE)
    raw = said.astype(np.int16).tobytes()
    with serving(settings, real, real.stt) as connect, connect() as conn:
        open_session(conn)
        for start in range(0, len(raw), CHUNK):
            conn.input_audio_buffer.append(
                audio=base64.b64encode(raw[start : start + CHUNK]).decode()
            )
        conn.input_audio_buffer.commit()
        item_id = recv_until(conn, "input_audio_buffer.committed")[-1].item_id
        done = outcome(conn, item_id)
        assert done.type == COMPLETED, done
        assert done.transcript.strip()  # pocketsphinx is far from exact: words, not which
    assert real.stt.pool.stats.completed == 1


def test_stt_workers_is_a_flag_and_an_environment_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert parse_settings(["serve", "--stt-workers", "2"]).stt_workers == 2
    monkeypatch.setenv("OPENREALTIME_STT_WORKERS", "1")
    assert parse_settings(["serve"]).stt_workers == 1
    with pytest.raises(ValidationError):
        parse_settings(["serve", "--stt-workers", "-1"])
    # Off: the recognizer stays in the server process.
    monkeypatch.delenv("OPENREALTIME_STT_WORKERS")
    assert not isinstance(create_backends(parse_settings(["serve"])).stt, PooledTranscriber)


def test_a_long_turn_crosses_to_a_worker_under_uvloop() -> None:
    """The server's loop is uvloop, which makes the worker's pipe non-blocking: a job bigger
    than the pipe's buffer (12 s of 16 kHz audio, 384 KB) must still reach its worker whole."""
    import uvloop

    from openrealtime.backends.stt.base import TranscriptionOptions

    stt = counting(workers=1)
    pcm16k = bytes(12 * 32000)

    async def transcribe() -> str:
        try:
            events = [e async for e in stt.transcribe(pcm16k, TranscriptionOptions())]
            return events[-1].text
        finally:
            await stt.aclose()

    assert uvloop.run(asyncio.wait_for(transcribe(), 20)) == "heard 12000 ms"
