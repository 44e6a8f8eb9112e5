"""hibari in-process: a small neural synthesizer (`hibari-tts`, Apache-2.0 code and weights).

A 7.9 MB ONNX voice distilled from Kokoro-82M, its own phonemizer (no espeak), 24 kHz output,
about 1% real time on one core. Only the default voice, "heart" (American English, female),
ships in the wheel; hibari downloads its other voices on first use, which a server must never do
mid-conversation, so they are refused here and every OpenAI voice name maps to "heart".

The model is loaded once per process and shared. Synthesis runs on worker threads (onnxruntime
releases the GIL in `run`; the phonemizer is read-only once warmed), one sentence or clause at a
time, and each is handed to the event loop as soon as it exists. Resampling to the session's
rate is the runtime's job (`runtime/speech.py`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import AsyncGenerator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from openrealtime.backends.base import BackendBase, Capabilities
from openrealtime.backends.errors import BackendError, MissingDependencyError
from openrealtime.backends.tts.base import OPENAI_VOICES

if TYPE_CHECKING:  # numpy loads with the model, on the warm-up's thread, not before listening
    import numpy as np

log = logging.getLogger(__name__)

SHIPPED_VOICE = "heart"
# Every OpenAI voice speaks with the one voice in the wheel: hibari's other voices (fenrir, emma,
# fable, kore) are downloads, so offline there is nothing else to tell the names apart with.
VOICE_MAP: dict[str, str] = dict.fromkeys(OPENAI_VOICES, SHIPPED_VOICE)
SAMPLE_RATE = 24_000
_SPEED_MIN, _SPEED_MAX = 0.5, 2.0  # hibari's range; OpenAI's is 0.25-1.5
_CHUNK_SAMPLES = SAMPLE_RATE // 10  # 100 ms per chunk handed on, for fine-grained playout
# hibari starts every piece with ~0.2 s of digital silence and ~50 ms of a fade-in below
# -72 dBFS (at most 8 of 32767) before the first phoneme: dropped, but for a 10 ms margin, as
# it delays first audio and shifts barge-in offsets.
_SILENCE_LEVEL = 8 / 32767
_ONSET_MARGIN = SAMPLE_RATE // 100
# An unknown word sends the phonemizer to its OOV net, which loads lazily: warm it at start-up.
_WARM_UP_TEXT = "Warm up, zyxquorble."


class _Engine:
    """The process's one hibari model; thread-safe once constructed."""

    def __init__(self, threads: int) -> None:
        try:
            from hibari import Hibari
            from hibari.voices import voice_path
        except ImportError as exc:
            raise MissingDependencyError("tts", "hibari-tts") from exc
        start = time.perf_counter()
        try:
            # download_missing=False: the shipped voice's path, or an error, never a download.
            model = voice_path(SHIPPED_VOICE, download_missing=False)
            self._tts: Any = Hibari(voice=SHIPPED_VOICE, model=model, threads=threads)
            self._tts.from_phonemes(self._tts.phonemize(_WARM_UP_TEXT)[0], seed=0)
        except Exception as exc:
            raise BackendError(
                "tts", f"cannot load the hibari voice {SHIPPED_VOICE!r}: {exc}"
            ) from exc
        log.info("hibari loaded", extra={"seconds": time.perf_counter() - start})

    def synthesize(
        self, text: str, speed: float, seed: int | None, sink: Callable[[np.ndarray], bool]
    ) -> None:
        """Speak `text` into `sink` a clause at a time; stops when the sink returns False."""
        import numpy as np

        rng = np.random.default_rng(seed)  # the noise component; a seed makes output repeatable
        for phonemes in self._tts.phonemize(text):
            audio = self._tts.from_ids(self._tts.ids(phonemes), speed, rng)
            if not sink(without_leading_silence(audio)):
                return


def without_leading_silence(audio: np.ndarray) -> np.ndarray:
    """`audio` from 10 ms before its first sample above the silence level (all of it if none
    is: that is not for this function to judge)."""
    import numpy as np

    loud = np.flatnonzero(np.abs(audio) > _SILENCE_LEVEL)
    return audio[max(0, int(loud[0]) - _ONSET_MARGIN) :] if len(loud) else audio


_engine: _Engine | None = None
_engine_lock = threading.Lock()
# Its own pool: sentences waiting for a core must not tie up the default executor that other
# backends use. Two workers, as the model and the phonemizer tolerate concurrent calls.
_executor = ThreadPoolExecutor(max_workers=min(2, os.cpu_count() or 1), thread_name_prefix="hibari")


def _get_engine(threads: int) -> _Engine:
    global _engine
    with _engine_lock:
        if _engine is None:
            _engine = _Engine(threads)
        return _engine


class HibariSynthesizer(BackendBase):
    """A `Synthesizer`; share one instance across sessions."""

    name = "hibari"
    sample_rate = SAMPLE_RATE
    capabilities = Capabilities(streaming=True, languages=frozenset({"en"}), local_model=True)

    def __init__(self, threads: int = 1, seed: int | None = 0) -> None:
        # The model loads in `load()` (at start-up, off the event loop), or at the first call.
        self._threads = threads
        self._engine: _Engine | None = None
        self._seed = seed

    def load(self) -> None:
        """Load and warm the process's hibari model (blocking, ~1-3 s). Safe to call again."""
        self._engine = _get_engine(self._threads)

    def resolve_voice(self, voice: str) -> str | None:
        key = voice.strip().lower()
        if key == SHIPPED_VOICE:
            return key
        return VOICE_MAP.get(key)

    async def synthesize(
        self, text: str, voice: str, speed: float = 1.0
    ) -> AsyncGenerator[bytes, None]:
        if voice != SHIPPED_VOICE:
            raise BackendError(
                "tts",
                f"hibari has no voice {voice!r} offline; use {SHIPPED_VOICE!r} or an OpenAI voice name",
            )
        if not text.strip():
            return
        if self._engine is None:
            await asyncio.to_thread(self.load)
        engine = self._engine
        assert engine is not None
        import numpy as np

        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        stop = threading.Event()
        speed = max(_SPEED_MIN, min(_SPEED_MAX, speed))

        def sink(audio: np.ndarray) -> bool:
            if stop.is_set():
                return False
            pcm = (np.clip(audio, -1.0, 1.0) * 32767.0).astype("<i2")
            try:
                for start in range(0, len(pcm), _CHUNK_SAMPLES):
                    chunk = pcm[start : start + _CHUNK_SAMPLES].tobytes()
                    loop.call_soon_threadsafe(queue.put_nowait, chunk)
            except RuntimeError:  # the loop is closed: nobody is listening
                return False
            return True

        def work() -> None:
            if not stop.is_set():  # skip it if cancelled while queued behind others
                engine.synthesize(text, speed, self._seed, sink)

        job = loop.run_in_executor(_executor, work)
        # Completion reaches the loop after every chunk the worker scheduled before it.
        job.add_done_callback(lambda _: queue.put_nowait(None))
        try:
            while (chunk := await queue.get()) is not None:
                yield chunk
            try:
                job.result()
            except Exception as exc:
                raise BackendError("tts", f"hibari failed to synthesize: {exc}") from exc
        finally:
            stop.set()
            # The worker stops after the clause in hand (tens of ms); wait, so that a cancelled
            # response does not leave CPU work behind it.
            if not job.done():
                await asyncio.wait([job])
            if not job.cancelled() and job.exception() is not None:
                log.debug("hibari failed after its consumer left: %s", job.exception())
