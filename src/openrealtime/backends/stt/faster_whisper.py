"""Speech-to-text with faster-whisper (Whisper on CTranslate2), the default recognizer.

`model` is what `whisper_weights.locate_model` accepts: a packaged model (`tiny.en`, the default,
SHA-256 checked), a local CTranslate2 directory, or a Hugging Face Hub name downloaded once.
The model loads once per process through `load()` (warmed with one decode) and is shared by
every session. Decodes run on worker threads, never on the event loop: CTranslate2 releases the
GIL, and `workers` decodes run in parallel, one thread each.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from ..base import Capabilities
from ..errors import BackendError, MissingDependencyError
from .base import (
    SAMPLE_RATE,
    TranscriptDelta,
    TranscriptDone,
    TranscriptEvent,
    TranscriptionOptions,
)
from .streaming import BatchTranscriber
from .whisper_weights import FIX, locate_model, one_line

if TYPE_CHECKING:  # numpy loads with the model, on the warm-up's thread, not before listening
    import numpy as np

    from .whisper_window import ShortWindow

log = logging.getLogger(__name__)


class WhisperLike(Protocol):
    """The part of `faster_whisper.WhisperModel` used here; the seam for tests."""

    def transcribe(self, audio: np.ndarray, **kwargs: Any) -> tuple[Iterable[Any], Any]: ...


@dataclass(frozen=True, slots=True)
class _Segment:
    text: str


@dataclass(frozen=True, slots=True)
class _Finished:
    language: str | None


@dataclass(frozen=True, slots=True)
class _Failed:
    error: BaseException


class FasterWhisperTranscriber(BatchTranscriber):
    """A `Transcriber`; share one instance across sessions."""

    name = "faster-whisper"

    def __init__(
        self,
        model: str,
        device: str = "cpu",
        compute_type: str = "int8",
        download_root: str | None = None,
        cpu_threads: int = 1,
        workers: int = min(2, os.cpu_count() or 1),
        *,
        short_window: bool = False,
        beam_size: int = 5,
        _model: WhisperLike | None = None,
    ) -> None:
        """`short_window`: decode turns up to 8 s in a 10 s encoder window (whisper_window.py):
        ~3x faster, but it changed the words of 7 of 72 test clips, some for the worse, so it
        is off by default. `beam_size`: the decoder's beam, in both windows (1: greedy)."""
        if beam_size < 1:
            raise ValueError(f"beam_size must be at least 1, not {beam_size}")
        self.model = model
        self.device = device
        self.compute_type = compute_type
        self.download_root = download_root
        self.cpu_threads = cpu_threads
        self.workers = workers
        # Whisper's ".en" models know English only; the others detect the language.
        english_only = model.endswith(".en")
        self.capabilities = Capabilities(
            languages=frozenset({"en"}) if english_only else None, local_model=True
        )
        self._model = _model
        self.short_window = short_window
        self.beam_size = beam_size
        # The fast decode of short utterances; only with a real faster-whisper model.
        self._window: ShortWindow | None = None
        self._load_lock = threading.Lock()

    def load(self) -> None:
        """Load the model (blocking; downloads it first if needed). Safe to call repeatedly."""
        with self._load_lock:
            if self._model is None:
                import numpy as np

                from .whisper_window import ShortWindow

                model = self._load()
                self._window = ShortWindow.of(model) if self.short_window else None
                if self._window is not None:
                    silence = np.zeros(SAMPLE_RATE // 2, np.float32)
                    self._window.decode(silence, "en", None, self.beam_size)
                self._model = model  # the short window warmed too: both run in a turn's life

    async def aclose(self) -> None:
        """Wait for a load under way (a lazy one, e.g. the first translation session's): the
        process must not exit while a thread is inside the model's native code."""

        def wait() -> None:
            with self._load_lock:
                pass

        await asyncio.to_thread(wait)

    async def transcribe(
        self, pcm16k: bytes, options: TranscriptionOptions
    ) -> AsyncIterator[TranscriptEvent]:
        import numpy as np

        samples = np.frombuffer(pcm16k[: len(pcm16k) // 2 * 2], dtype="<i2")
        audio_seconds = len(samples) / SAMPLE_RATE
        if len(samples) == 0:
            yield TranscriptDone("", 0.0)
            return
        if self._model is None:
            await asyncio.to_thread(self.load)
        model, window = self._model, self._window
        assert model is not None
        # What faster-whisper reports: a ".en" model transcribes English whatever it is told.
        language = options.language if self.capabilities.languages is None else "en"
        audio = samples.astype(np.float32) / 32768.0

        # Segments are decoded lazily as the generator is consumed, so iterate it in a worker
        # thread and hand each one over as it comes.
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[_Segment | _Finished | _Failed] = asyncio.Queue()
        stop = threading.Event()

        def put(item: _Segment | _Finished | _Failed) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the loop closed under us; nobody is listening
                stop.set()

        def work() -> None:
            try:
                heard = None
                if window is not None:
                    heard = window.hear(audio, options.language, options.prompt, self.beam_size)
                    if heard is not None and heard.text is None and self.beam_size > 1:
                        # A beam in the short window sometimes says the utterance twice where
                        # greedy does not (docs/benchmarks.md, "Decoding settings"): greedy
                        # there costs a third of the 30 s decode.
                        heard = window.hear(audio, heard.language, options.prompt, 1)
                if heard is not None and heard.text is not None:
                    if heard.text:
                        put(_Segment(heard.text))
                    put(_Finished(heard.language if language is None else language))
                    return
                # The language the short window detected is not detected again (~1.7 s for
                # base). A multilingual model's retries at higher temperatures re-decode the
                # whole window up to 5 times, seconds each, for a phrase it mostly still mishears
                # (espeak's Spanish): a translation must keep up, so it decodes once.
                detected = heard.language if heard is not None else options.language
                multilingual = self.capabilities.languages is None
                segments, info = model.transcribe(
                    audio,
                    language=detected if multilingual else options.language,
                    initial_prompt=options.prompt,
                    beam_size=self.beam_size,
                    vad_filter=False,
                    **({"temperature": 0.0} if multilingual else {}),
                )
                for segment in segments:
                    if stop.is_set():
                        return
                    put(_Segment(segment.text))
                put(_Finished(getattr(info, "language", None)))
            except BaseException as exc:
                put(_Failed(exc))

        worker = loop.run_in_executor(None, work)
        parts: list[str] = []
        try:
            while True:
                item = await queue.get()
                if isinstance(item, _Failed):
                    raise BackendError(
                        "stt", f"faster-whisper failed to transcribe: {item.error}"
                    ) from item.error
                if isinstance(item, _Finished):
                    finished = item
                    break
                text = item.text.strip()
                if text:
                    # Deltas concatenate to the final text.
                    yield TranscriptDelta(text if not parts else " " + text)
                    parts.append(text)
        finally:
            # On cancellation the worker stops after its current segment; it cannot be killed.
            stop.set()
        await worker
        extra: dict[str, object] = {"language": finished.language} if finished.language else {}
        yield TranscriptDone(" ".join(parts), audio_seconds, extra)

    # Loading ------------------------------------------------------------------------------

    def _load(self) -> WhisperLike:
        try:
            import faster_whisper
        except ImportError as exc:
            raise MissingDependencyError("stt", "faster-whisper") from exc
        log.info("loading the faster-whisper model", extra={"model": self.model})
        path = locate_model(self.model, self.download_root)
        start = time.perf_counter()
        try:
            model: WhisperLike = faster_whisper.WhisperModel(
                path,
                device=self.device,
                compute_type=self.compute_type,
                # One thread per decode, decodes in parallel: on a busy few-core machine a
                # second thread per decode barely helps (docs/models.md).
                cpu_threads=self.cpu_threads,
                num_workers=self.workers,
            )
            # The first decode allocates CTranslate2's buffers: pay for it now, not mid-turn, in
            # the window turns use. With the short window that is only it (`load`): a warm-up
            # in the 30 s window too cost 0.8 s of the start (tiny.en), and a first long turn
            # decoded no slower without it (issue 9).
            if not self.short_window:
                _warm_up(model, self.beam_size)
        except Exception as exc:
            raise BackendError(
                "stt",
                f"could not load the faster-whisper model in {path} ({one_line(exc)}); {FIX}",
                code="model_not_found",
            ) from exc
        log.info(
            "faster-whisper model loaded",
            extra={"model": self.model, "path": path, "seconds": time.perf_counter() - start},
        )
        return model


def _warm_up(model: WhisperLike, beam_size: int) -> None:
    import numpy as np

    silence = np.zeros(SAMPLE_RATE // 2, dtype=np.float32)
    # Told the language: a multilingual model would otherwise detect it (~1.7 s for base). One
    # short pass at temperature 0 warms the same kernels: on silence, base otherwise runs long
    # hallucinated decodes and retries them at higher temperatures (7.8 s against 1.9 s).
    segments, _ = model.transcribe(
        silence,
        language="en",
        beam_size=beam_size,
        vad_filter=False,
        temperature=0.0,
        max_new_tokens=8,
    )
    for _ in segments:
        pass
