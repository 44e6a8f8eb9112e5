"""Embedded speech-to-text with CMU PocketSphinx: English only, no download, low accuracy.

The `pocketsphinx` wheel ships a US-English acoustic model, dictionary and 3-gram LM, so this
backend works out of the box. Its accuracy is low — roughly 67-75% word error rate on synthetic
(espeak-ng) speech, measured on 15 short sentences — so treat it as a default that proves the
pipeline, not as a recogniser to rely on; use faster-whisper or an HTTP backend for real use.

What shapes this file (all measured on 2 CPU cores):

- A `Decoder` takes ~0.4-0.7 s to build (it loads the model files), so ready decoders are kept in
  a pool — one per worker thread at most, built lazily, returned after use. One is never used by
  two threads at once.
- The binding holds the GIL inside `process_raw` and `end_utt`, so a worker thread alone would
  still stall the event loop (and every other session) for the whole decode. Audio is fed in
  50 ms blocks so the GIL is released between them, and the second "fwdflat" pass, which runs
  inside `end_utt` over the whole utterance, is off: on the 15 sentences it moved WER by under a
  point but halved decode time and cut the stall at the end of an utterance from ~0.6 s to
  ~25 ms. Concurrent decodes interleave rather than run in parallel.
- A decoder carries state from one utterance to the next (the cepstral mean it normalises with,
  the noise estimate), so a pooled decoder would transcribe the same audio differently depending
  on whose audio it heard last. Each utterance therefore starts from the initial state and first
  runs a cheap keyphrase pass (~3% of the decode time) to learn its own cepstral mean; the real
  pass starts from that. Starting cold instead costs ~15 points of WER.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

from ..base import Capabilities
from ..errors import BackendError, MissingDependencyError
from .base import (
    SAMPLE_RATE,
    TranscriptDone,
    TranscriptEvent,
    TranscriptionOptions,
    audio_seconds,
    whole_transcript,
)

log = logging.getLogger(__name__)

# 50 ms of PCM16 per process_raw call: the event loop waits at most a few tens of milliseconds
# for the GIL, and per-call overhead stays negligible.
_BLOCK_BYTES = SAMPLE_RATE * 2 // 20
# Below 100 ms there is no word to find, and the decoder logs an error for a near-empty
# utterance ("Couldn't find <s> in first frame"), so such audio is not decoded at all.
_MIN_BYTES = SAMPLE_RATE * 2 // 10
# Any phrase will do: the pass only runs the audio through the front end to measure its mean.
_CMN_SEARCH, _CMN_PHRASE = "cmn", "oh mighty computer"


class _Decoder:
    """One pocketsphinx Decoder and the state to reset it to; not thread-safe."""

    def __init__(self) -> None:
        try:
            import pocketsphinx
        except ImportError as exc:
            raise MissingDependencyError("stt", "pocketsphinx") from exc
        started = time.perf_counter()
        # The defaults are the bundled en-us model; quiet, as its log goes straight to stderr.
        self._decoder: Any = pocketsphinx.Decoder(loglevel="ERROR", fwdflat=False)
        self._lm_search = self._decoder.current_search()
        self._initial_cmn = self._decoder.get_cmn()
        self._decoder.add_keyphrase(_CMN_SEARCH, _CMN_PHRASE)
        log.debug("pocketsphinx decoder built", extra={"seconds": time.perf_counter() - started})

    def decode(self, pcm: bytes) -> str:
        d = self._decoder
        d.reinit_feat()  # forgets the noise estimate; cheap (~0.1 ms)
        d.set_cmn(self._initial_cmn)
        d.activate_search(_CMN_SEARCH)
        self._run(pcm)
        d.set_cmn(d.get_cmn(True))  # this utterance's own mean
        d.activate_search(self._lm_search)
        self._run(pcm)
        hyp = d.hyp()
        return hyp.hypstr.strip() if hyp is not None else ""

    # Streaming: one pass with live mean normalisation, partial hypotheses as audio comes.
    def start_stream(self) -> None:
        d = self._decoder
        d.reinit_feat()
        d.set_cmn(self._initial_cmn)
        d.activate_search(self._lm_search)
        d.start_utt()

    def feed(self, pcm: bytes) -> str:
        for start in range(0, len(pcm), _BLOCK_BYTES):
            self._decoder.process_raw(pcm[start : start + _BLOCK_BYTES])
        hyp = self._decoder.hyp()
        return hyp.hypstr.strip() if hyp is not None else ""

    def end_stream(self) -> str:
        self._decoder.end_utt()
        hyp = self._decoder.hyp()
        return hyp.hypstr.strip() if hyp is not None else ""

    def _run(self, pcm: bytes) -> None:
        self._decoder.start_utt()
        for start in range(0, len(pcm), _BLOCK_BYTES):
            self._decoder.process_raw(pcm[start : start + _BLOCK_BYTES])
        self._decoder.end_utt()


class _DecoderPool:
    """Idle decoders, built on demand; holds at most as many as ever ran at once."""

    def __init__(self) -> None:
        self._idle: list[_Decoder] = []
        self._lock = threading.Lock()
        self.created = 0

    @contextmanager
    def decoder(self) -> Iterator[_Decoder]:
        decoder = self.acquire()
        yield decoder
        # Only reached on success: a decoder that raised mid-utterance is dropped, not reused.
        self.release(decoder)

    def acquire(self) -> _Decoder:
        with self._lock:
            decoder = self._idle.pop() if self._idle else None
        if decoder is None:
            decoder = _Decoder()
            with self._lock:
                self.created += 1
        return decoder

    def try_acquire(self, limit: int) -> _Decoder | None:
        """An idle decoder, or a new one while fewer than `limit` exist; else None."""
        with self._lock:
            if self._idle:
                return self._idle.pop()
            if self.created >= limit:
                return None
            self.created += 1
        return _Decoder()

    def release(self, decoder: _Decoder) -> None:
        with self._lock:
            self._idle.append(decoder)


class PocketsphinxTranscriber:
    """The embedded default `Transcriber`. Thread-safe; share one instance across sessions."""

    name = "pocketsphinx"
    capabilities = Capabilities(streaming=True, languages=frozenset({"en"}), local_model=True)

    def __init__(self, workers: int | None = None) -> None:
        # Decodes serialise on the GIL anyway (see above), so a few workers only bound the
        # number of decoders in memory and let a short utterance overtake a long one.
        self.workers = workers or min(4, os.cpu_count() or 1)
        self._pool = _DecoderPool()
        self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix="pocketsphinx")

    @property
    def decoders_created(self) -> int:
        return self._pool.created

    def load(self) -> None:
        """Build the workers' decoders now (blocking, at start-up): a build holds the GIL for
        ~0.5 s, which mid-session would freeze every session."""
        decoders = [self._pool.acquire() for _ in range(self.workers)]
        for decoder in decoders:
            self._pool.release(decoder)

    async def transcribe(
        self, pcm16k: bytes, options: TranscriptionOptions
    ) -> AsyncIterator[TranscriptEvent]:
        if not self.capabilities.handles_language(options.language):
            log.debug("pocketsphinx is English only", extra={"language": options.language})
        if len(pcm16k) < _MIN_BYTES:
            yield TranscriptDone("", audio_seconds(pcm16k))
            return
        pcm = pcm16k[: len(pcm16k) // 2 * 2]  # a trailing odd byte is not a sample
        loop = asyncio.get_running_loop()
        try:
            text = await loop.run_in_executor(self._executor, self._decode, pcm)
        except BackendError:
            raise
        except Exception as exc:  # pocketsphinx raises bare RuntimeErrors
            raise BackendError("stt", f"pocketsphinx failed to decode: {exc}") from exc
        for event in whole_transcript(text, pcm16k):
            yield event

    def open_stream(self, options: TranscriptionOptions) -> PocketsphinxStream:
        """Decode while the user speaks: the transcript is ready as the turn ends."""
        return PocketsphinxStream(self._pool, self._executor, self.workers)

    def _decode(self, pcm: bytes) -> str:
        with self._pool.decoder() as decoder:
            return decoder.decode(pcm)

    async def aclose(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


class PocketsphinxStream:
    """One utterance decoded as it arrives. Calls come one at a time (the runtime feeds in
    order), each on the worker pool; the decoder is held from the first audio to the end."""

    def __init__(self, pool: _DecoderPool, executor: ThreadPoolExecutor, limit: int) -> None:
        self._pool = pool
        self._executor = executor
        self._limit = limit
        self._decoder: _Decoder | None = None
        # When every decoder is taken, the utterance is kept and decoded whole at the end:
        # slower for this turn, but memory (~90 MiB a decoder) and GIL stalls stay bounded.
        self._held: bytearray | None = None
        self._bytes = 0
        self._last = ""
        self._busy: Future[Any] | None = None  # the call on the pool, if any

    async def feed(self, pcm16k: bytes) -> str | None:
        pcm = pcm16k[: len(pcm16k) // 2 * 2]
        self._bytes += len(pcm)
        if self._decoder is None and self._held is None:
            self._decoder = self._pool.try_acquire(self._limit)
            if self._decoder is None:
                self._held = bytearray()
            else:
                await self._run(self._decoder.start_stream)
        if self._held is not None:
            self._held += pcm
            return None
        text = await self._run(self._feed, pcm)
        if text == self._last:
            return None
        self._last = text
        return text

    async def finish(self) -> TranscriptDone:
        seconds = self._bytes / 2 / SAMPLE_RATE
        if self._bytes < _MIN_BYTES:
            await self.aclose()
            return TranscriptDone("", seconds)
        if self._held is not None:
            held, self._held = bytes(self._held), None
            return TranscriptDone(await self._run(self._decode_held, held), seconds)
        text = await self._run(self._end)
        return TranscriptDone(text, seconds)

    async def aclose(self) -> None:
        self._held = None
        if self._decoder is not None:
            await self._run(self._end)

    def _feed(self, pcm: bytes) -> str:
        assert self._decoder is not None
        return self._decoder.feed(pcm)

    def _decode_held(self, pcm: bytes) -> str:
        with self._pool.decoder() as decoder:
            return decoder.decode(pcm)

    def _end(self) -> str:
        decoder, self._decoder = self._decoder, None
        if decoder is None:
            return ""
        text = decoder.end_stream()
        self._pool.release(decoder)
        return text

    async def _run(self, work: Any, *args: Any) -> Any:
        # The decoder is not thread-safe, and a cancelled caller (a cleared turn, a client
        # gone) leaves its call running on the pool: the next call waits for it to end
        # instead of using the decoder alongside it.
        if self._busy is not None and not self._busy.done():
            await asyncio.wait([asyncio.wrap_future(self._busy)])
        self._busy = self._executor.submit(work, *args)
        try:
            return await asyncio.wrap_future(self._busy)
        except Exception as exc:  # pocketsphinx raises bare RuntimeErrors
            self._decoder = None  # a decoder that failed mid-utterance is not reused
            raise BackendError("stt", f"pocketsphinx failed to decode: {exc}") from exc
