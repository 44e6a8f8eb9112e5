"""faster-whisper backend: configuration errors without any download, and the streaming wrapper
around a fake model injected at the model boundary."""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from speech_fixtures import speak

from openrealtime.backends.errors import BackendError, MissingDependencyError
from openrealtime.backends.stt import faster_whisper as faster_whisper_backend
from openrealtime.backends.stt.base import (
    Transcriber,
    TranscriptDelta,
    TranscriptDone,
    TranscriptEvent,
    TranscriptionOptions,
)
from openrealtime.backends.stt.faster_whisper import FasterWhisperTranscriber
from openrealtime.backends.stt.whisper_weights import locate_model
from openrealtime.backends.stt.whisper_window import Heard

# Loading needs the real package; the streaming wrapper is tested with a fake model either way.
needs_faster_whisper = pytest.mark.skipif(
    importlib.util.find_spec("faster_whisper") is None, reason="faster-whisper is not installed"
)
OPTIONS = TranscriptionOptions()


async def collect(t: Transcriber, pcm: bytes, options: TranscriptionOptions = OPTIONS) -> list:
    return [event async for event in t.transcribe(pcm, options)]


def assert_model_not_found(exc: BackendError, *names: str) -> None:
    assert exc.code == "model_not_found"
    assert exc.backend == "stt"
    for name in (*names, "--stt-model", "OPENREALTIME_STT_MODEL"):
        assert name in exc.message


# Loading errors -----------------------------------------------------------------------------


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No network and an empty model cache, so nothing can be found or fetched."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cache = tmp_path / "hf-cache"
    cache.mkdir()
    return cache


@needs_faster_whisper
def test_nonexistent_directory(tmp_path: Path, offline: Path) -> None:
    path = tmp_path / "no-such-model"
    with pytest.raises(BackendError) as info:
        FasterWhisperTranscriber(str(path)).load()
    assert_model_not_found(info.value, str(path), "does not exist")


@needs_faster_whisper
def test_directory_without_model_files(tmp_path: Path, offline: Path) -> None:
    (tmp_path / "README.md").write_text("not a model\n")
    with pytest.raises(BackendError) as info:
        FasterWhisperTranscriber(str(tmp_path)).load()
    assert_model_not_found(info.value, str(tmp_path), "model.bin", "config.json")


@needs_faster_whisper
def test_directory_with_junk_model_files(tmp_path: Path, offline: Path) -> None:
    (tmp_path / "model.bin").write_bytes(np.random.default_rng(0).bytes(4096))
    (tmp_path / "config.json").write_text('{"truncated": ')
    (tmp_path / "tokenizer.json").write_text("junk")
    with pytest.raises(BackendError) as info:
        FasterWhisperTranscriber(str(tmp_path)).load()
    assert_model_not_found(info.value, str(tmp_path), "could not load")


@needs_faster_whisper
# tiny.en is packaged (test_stt_whisper_weights.py): it never goes to the hub.
@pytest.mark.parametrize("name", ["base.en", "Systran/faster-whisper-small"])
def test_model_name_offline_and_not_cached(name: str, offline: Path) -> None:
    t = FasterWhisperTranscriber(name, download_root=str(offline))
    with pytest.raises(BackendError) as info:
        t.load()
    assert_model_not_found(info.value, f"'{name}'", str(offline), "HF_HUB_OFFLINE")
    assert not any(offline.rglob("model.bin"))


@needs_faster_whisper
def test_unknown_model_size(offline: Path) -> None:
    with pytest.raises(BackendError) as info:
        FasterWhisperTranscriber("gigantic", download_root=str(offline)).load()
    assert_model_not_found(info.value, "'gigantic'", "base.en")


@needs_faster_whisper
async def test_load_error_surfaces_from_transcribe(tmp_path: Path, offline: Path) -> None:
    t = FasterWhisperTranscriber(str(tmp_path / "missing"))
    with pytest.raises(BackendError) as info:
        await collect(t, b"\x00\x01" * 1600)
    assert_model_not_found(info.value, "missing")


@needs_faster_whisper
def test_download_keeps_progress_bars_and_says_where(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A name not in the cache is fetched with huggingface_hub's own (visible) tqdm bars, not
    faster-whisper's disabled ones, after one log line. The hub is faked: nothing is fetched."""
    import huggingface_hub
    from huggingface_hub.errors import LocalEntryNotFoundError

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    calls: list[dict[str, Any]] = []

    def fake_snapshot_download(repo_id: str, **kwargs: Any) -> str:
        calls.append({"repo_id": repo_id, **kwargs})
        if kwargs.get("local_files_only"):
            raise LocalEntryNotFoundError("not cached")
        return str(tmp_path / "snapshot")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    with caplog.at_level(logging.INFO, logger="openrealtime.backends.stt.whisper_weights"):
        assert locate_model("base.en", str(tmp_path)) == str(tmp_path / "snapshot")

    assert [c["local_files_only"] for c in calls] == [True, False]
    download = calls[1]
    assert download["repo_id"] == "Systran/faster-whisper-base.en"
    assert download["cache_dir"] == str(tmp_path)
    assert "tqdm_class" not in download
    downloading = [r.getMessage() for r in caplog.records if "downloading" in r.getMessage()]
    assert len(downloading) == 1
    assert "Systran/faster-whisper-base.en" in downloading[0]
    assert str(tmp_path) in downloading[0]


def test_missing_package_gives_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "faster_whisper", None)  # makes `import` raise
    with pytest.raises(MissingDependencyError) as info:
        FasterWhisperTranscriber("tiny.en").load()
    assert info.value.code == "missing_dependency"
    assert "faster-whisper" in info.value.message
    assert "pip install faster-whisper" in info.value.message


def test_loads_the_located_model_with_one_thread_per_decode_and_warms_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`load` hands WhisperModel the directory locate_model found, and decodes once before
    any session does, so the first turn does not pay for CTranslate2's allocations."""
    created: list[tuple[str, dict[str, Any]]] = []
    fake = FakeWhisper([])

    class FakeModule:
        @staticmethod
        def WhisperModel(path: str, **kwargs: Any) -> FakeWhisper:
            created.append((path, kwargs))
            return fake

    located: list[tuple[str, str | None]] = []

    def fake_locate(spec: str, root: str | None = None) -> str:
        located.append((spec, root))
        return str(tmp_path)

    monkeypatch.setitem(sys.modules, "faster_whisper", FakeModule)
    monkeypatch.setattr(faster_whisper_backend, "locate_model", fake_locate)
    t = FasterWhisperTranscriber("tiny.en", workers=2)
    t.load()
    assert located == [("tiny.en", None)]
    assert created == [
        (
            str(tmp_path),
            {"device": "cpu", "compute_type": "int8", "cpu_threads": 1, "num_workers": 2},
        )
    ]
    assert len(fake.calls) == 1, "not warmed at load"
    assert t.capabilities.languages == frozenset({"en"})
    assert FasterWhisperTranscriber("base").capabilities.languages is None


# The streaming wrapper, with a fake model ----------------------------------------------------


@dataclass
class Segment:
    text: str


@dataclass
class Info:
    language: str = "en"


class FakeWhisper:
    """Stands in for WhisperModel: records calls and yields segments lazily, like the real one.

    With `gate`, it waits after the first segment until the test has seen that segment's delta:
    a wrapper that collected all segments before yielding would never open the gate.
    """

    def __init__(self, texts: list[str], *, gate: threading.Event | None = None) -> None:
        self.texts = texts
        self.gate = gate
        self.calls: list[dict[str, Any]] = []
        self.threads: list[int] = []
        self.pulled = 0
        self.gate_opened: bool | None = None
        self.fail_after: int | None = None

    def transcribe(self, audio: np.ndarray, **kwargs: Any) -> tuple[Iterator[Segment], Info]:
        self.calls.append({"audio": audio, **kwargs})
        self.threads.append(threading.get_ident())
        return self._segments(), Info()

    def _segments(self) -> Iterator[Segment]:
        for i, text in enumerate(self.texts):
            if i == 1 and self.gate is not None:
                self.gate_opened = self.gate.wait(timeout=5)
            if self.fail_after is not None and i == self.fail_after:
                raise RuntimeError("decoder exploded")
            self.pulled += 1
            yield Segment(text)


async def test_streams_one_delta_per_segment_as_decoded() -> None:
    gate = threading.Event()
    fake = FakeWhisper([" Hello world.", " What is the weather", " today?"], gate=gate)
    t = FasterWhisperTranscriber("unused", _model=fake)
    pcm = (np.linspace(-1, 1, 16000) * 32767).astype("<i2").tobytes()
    options = TranscriptionOptions(model="whisper-1", language="en", prompt="Weather talk.")

    events: list[TranscriptEvent] = []
    async for event in t.transcribe(pcm, options):
        events.append(event)
        gate.set()  # lets the fake decode past its first segment

    assert fake.gate_opened is True, "the first delta was not yielded before decoding went on"
    assert events == [
        TranscriptDelta("Hello world."),
        TranscriptDelta(" What is the weather"),
        TranscriptDelta(" today?"),
        TranscriptDone("Hello world. What is the weather today?", 1.0, {"language": "en"}),
    ]
    # Deltas concatenate to the final transcript.
    assert "".join(e.text for e in events[:-1]) == events[-1].text

    (call,) = fake.calls
    assert call["language"] == "en"
    assert call["initial_prompt"] == "Weather talk."
    assert call["beam_size"] == 5  # the server's default (docs/models.md)
    assert call["vad_filter"] is False
    audio = call["audio"]
    assert audio.dtype == np.float32 and audio.shape == (16000,)
    assert audio.min() == pytest.approx(-1.0, abs=1e-4)
    assert audio.max() == pytest.approx(1.0, abs=1e-4)
    assert fake.threads[0] != threading.get_ident(), "decoded on the event loop thread"


async def test_the_beam_size_reaches_the_decoder() -> None:
    fake = FakeWhisper([" Hello."])
    t = FasterWhisperTranscriber("unused", beam_size=2, _model=fake)
    await collect(t, b"\x00\x01" * 1600)
    assert [call["beam_size"] for call in fake.calls] == [2]
    with pytest.raises(ValueError, match="beam_size"):
        FasterWhisperTranscriber("unused", beam_size=0)


@needs_faster_whisper
async def test_the_beam_size_reaches_ctranslate2_in_both_windows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The real tiny.en: the short window's decode and the 30 s one it falls back to both
    search with the configured beam (seen at CTranslate2's `generate`)."""
    t = FasterWhisperTranscriber("tiny.en", short_window=True, beam_size=4)
    await asyncio.to_thread(t.load)
    model: Any = t._model
    inner = model.model  # the CTranslate2 Whisper model
    beams: list[int] = []

    class Spy:
        def __getattr__(self, name: str) -> Any:
            return getattr(inner, name)

        def generate(self, *args: Any, **kwargs: Any) -> Any:
            beams.append(kwargs.get("beam_size", 1))
            return inner.generate(*args, **kwargs)

    monkeypatch.setattr(model, "model", Spy())
    pcm = (speak("Turn on the lights in the kitchen.", 16000)).astype("<i2").tobytes()
    short = (await collect(t, pcm))[-1]
    assert beams == [4]
    assert t._window is not None
    monkeypatch.setattr(t._window, "decode", lambda *args: None)  # the window declines
    full = (await collect(t, pcm))[-1]
    assert beams[1:] and set(beams[1:]) == {4}  # temperature 0 searches with the beam
    assert isinstance(short, TranscriptDone) and isinstance(full, TranscriptDone)
    assert "kitchen" in short.text.lower() and "kitchen" in full.text.lower()


@needs_faster_whisper
async def test_a_beam_the_short_window_refuses_is_retried_greedy_there_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """When the short window refuses the beam's decode (e.g. the utterance said twice), greedy
    is tried in the short window before the 30 s window; the 30 s one runs only if both refuse."""
    t = FasterWhisperTranscriber("tiny.en", short_window=True, beam_size=3)
    await asyncio.to_thread(t.load)
    window, model = t._window, t._model
    assert window is not None and model is not None
    hear, transcribe = window.hear, model.transcribe
    tried: list[int] = []
    full: list[int] = []

    def refusing_beams(audio: Any, language: Any, prompt: Any, beam_size: int = 1) -> Any:
        tried.append(beam_size)
        return Heard(None, language) if beam_size > 1 else hear(audio, language, prompt, beam_size)

    def counted(audio: Any, **kwargs: Any) -> Any:
        full.append(kwargs["beam_size"])
        return transcribe(audio, **kwargs)

    monkeypatch.setattr(window, "hear", refusing_beams)
    monkeypatch.setattr(model, "transcribe", counted)
    pcm = (speak("Turn on the lights in the kitchen.", 16000)).astype("<i2").tobytes()
    done = (await collect(t, pcm))[-1]
    assert isinstance(done, TranscriptDone) and "kitchen" in done.text.lower()
    assert (tried, full) == ([3, 1], [])
    monkeypatch.setattr(window, "hear", lambda *args: Heard(None, "en"))  # both refuse
    done = (await collect(t, pcm))[-1]
    assert isinstance(done, TranscriptDone) and "kitchen" in done.text.lower()
    assert full == [3]


async def test_blank_segments_and_no_speech() -> None:
    t = FasterWhisperTranscriber("unused", _model=FakeWhisper([" ", ""]))
    assert await collect(t, b"\x00\x00" * 8000) == [TranscriptDone("", 0.5, {"language": "en"})]


async def test_empty_audio_does_not_call_the_model() -> None:
    fake = FakeWhisper(["never"])
    t = FasterWhisperTranscriber("unused", _model=fake)
    assert await collect(t, b"") == [TranscriptDone("", 0.0)]
    assert await collect(t, b"\x01") == [TranscriptDone("", 0.0)]
    assert fake.calls == []


async def test_failure_mid_stream_is_a_backend_error() -> None:
    fake = FakeWhisper(["one", "two", "three"])
    fake.fail_after = 1
    t = FasterWhisperTranscriber("unused", _model=fake)
    events: list[TranscriptEvent] = []
    with pytest.raises(BackendError) as info:
        async for event in t.transcribe(b"\x00\x00" * 1600, OPTIONS):
            events.append(event)
    assert events == [TranscriptDelta("one")]
    assert "decoder exploded" in info.value.message


async def test_closing_early_stops_the_worker() -> None:
    gate = threading.Event()
    fake = FakeWhisper([f"s{i}" for i in range(50)], gate=gate)
    t = FasterWhisperTranscriber("unused", _model=fake)
    stream = t.transcribe(b"\x00\x00" * 1600, OPTIONS)
    assert await anext(stream) == TranscriptDelta("s0")
    await stream.aclose()  # type: ignore[attr-defined]
    gate.set()
    await asyncio.sleep(0.2)
    # The worker may pull the segment it was already waiting for, then it stops.
    assert fake.pulled <= 2


async def test_loads_once_under_concurrency(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeWhisper(["hi"])
    loads: list[int] = []

    def fake_load(self: FasterWhisperTranscriber) -> FakeWhisper:
        loads.append(threading.get_ident())
        return fake

    monkeypatch.setattr(FasterWhisperTranscriber, "_load", fake_load)
    t = FasterWhisperTranscriber("tiny.en")
    results = await asyncio.gather(*(collect(t, b"\x00\x00" * 160) for _ in range(5)))
    assert len(loads) == 1
    assert loads[0] != threading.get_ident(), "loaded on the event loop thread"
    assert all(r[-1] == TranscriptDone("hi", 0.01, {"language": "en"}) for r in results)
    t.load()  # already loaded: a no-op
    assert len(loads) == 1
