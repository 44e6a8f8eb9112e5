"""Embedded speech-to-text with CMU PocketSphinx: English only, no download, low accuracy.

The `pocketsphinx` wheel ships a US-English acoustic model, dictionary and 3-gram LM, so this
backend works out of the box. Its accuracy is low — roughly 67% word error rate on synthetic
(espeak-ng) speech — so treat it as a default that proves the pipeline, not as a recogniser to
rely on; use faster-whisper or an HTTP backend for real use.

Two costs shape this file:

- A `Decoder` takes ~0.4-0.7 s to build (it loads the model files), so ready decoders are kept in
  a pool — one per worker thread at most, built lazily, returned after use. A decoder keeps
  per-utterance state, so one is never shared by two threads at once.
- The binding holds the GIL inside `process_raw` and `end_utt`, so a worker thread alone would
  still stall the event loop (and every other session) for the whole decode. Audio is fed in
  short blocks so the GIL is released between them, and the second "fwdflat" pass, which runs
  inside `end_utt` over the whole utterance, is off: measured on 15 espeak sentences it changed
  WER by under one point (75.2% → 76.0%) but halved decode time and cut the stall at the end of
  an utterance from ~0.6 s to ~25 ms. Concurrent decodes interleave rather than run in parallel.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

from openrealtime.backends.errors import BackendError, MissingDependencyError
from openrealtime.backends.stt.base import (
    TranscriptDelta,
    TranscriptDone,
    TranscriptEvent,
    TranscriptionOptions,
)

log = logging.getLogger(__name__)

SAMPLE_RATE = 16_000
# 50 ms of PCM16 per process_raw call: short enough that the event loop waits at most a few
# tens of milliseconds for the GIL, long enough that per-call overhead stays negligible.
_BLOCK_BYTES = SAMPLE_RATE * 2 // 20
# Below 100 ms there is no word to find, and the decoder logs an error for a near-empty
# utterance ("Couldn't find <s> in first frame"), so such audio is not decoded at all.
_MIN_BYTES = SAMPLE_RATE * 2 // 10


def _new_decoder() -> Any:
    try:
        import pocketsphinx
    except ImportError as exc:
        raise MissingDependencyError("stt", "pocketsphinx") from exc
    started = time.perf_counter()
    # Defaults are the bundled en-us model; quiet, since its log goes straight to stderr.
    decoder = pocketsphinx.Decoder(loglevel="ERROR", fwdflat=False)
    log.debug("pocketsphinx decoder built", extra={"seconds": time.perf_counter() - started})
    return decoder


class _DecoderPool:
    """Idle decoders, built on demand; holds at most as many as ever ran at once."""

    def __init__(self) -> None:
        self._idle: list[Any] = []
        self._lock = threading.Lock()
        self.created = 0

    @contextmanager
    def decoder(self) -> Iterator[Any]:
        with self._lock:
            decoder = self._idle.pop() if self._idle else None
        if decoder is None:
            decoder = _new_decoder()
            with self._lock:
                self.created += 1
        yield decoder
        # Only reached on success: a decoder that raised mid-utterance is dropped, not reused.
        with self._lock:
            self._idle.append(decoder)

    @property
    def idle(self) -> int:
        with self._lock:
            return len(self._idle)


class PocketsphinxTranscriber:
    """The embedded default `Transcriber`. Thread-safe; share one instance across sessions."""

    name = "pocketsphinx"

    def __init__(self, workers: int | None = None) -> None:
        # Decodes serialise on the GIL anyway (see the module docstring), so a few workers
        # only bound the number of decoders in memory and let short utterances overtake.
        self.workers = workers or min(4, os.cpu_count() or 1)
        self._pool = _DecoderPool()
        self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix="pocketsphinx")

    @property
    def decoders_created(self) -> int:
        return self._pool.created

    def load(self) -> None:
        """Build one decoder now (blocking), so the first utterance does not pay for it."""
        with self._pool.decoder():
            pass

    async def transcribe(
        self, pcm16k: bytes, options: TranscriptionOptions
    ) -> AsyncIterator[TranscriptEvent]:
        if options.language and not options.language.lower().startswith("en"):
            log.debug("pocketsphinx is English only", extra={"language": options.language})
        audio_seconds = len(pcm16k) // 2 / SAMPLE_RATE
        if len(pcm16k) < _MIN_BYTES:
            yield TranscriptDone("", audio_seconds)
            return
        loop = asyncio.get_running_loop()
        try:
            text = await loop.run_in_executor(self._executor, self._decode, pcm16k)
        except BackendError:
            raise
        except Exception as exc:  # pocketsphinx raises bare RuntimeErrors
            raise BackendError("stt", f"pocketsphinx failed to decode: {exc}") from exc
        if text:
            yield TranscriptDelta(text)
        yield TranscriptDone(text, audio_seconds)

    def _decode(self, pcm16k: bytes) -> str:
        pcm = pcm16k[: len(pcm16k) // 2 * 2]  # a trailing odd byte is not a sample
        with self._pool.decoder() as decoder:
            decoder.start_utt()
            for start in range(0, len(pcm), _BLOCK_BYTES):
                decoder.process_raw(pcm[start : start + _BLOCK_BYTES])
            decoder.end_utt()
            hyp = decoder.hyp()
        return hyp.hypstr.strip() if hyp is not None else ""

    async def aclose(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
