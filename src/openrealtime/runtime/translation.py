"""Runs one translation session: audio in, VAD phrases, then per phrase, in order, speech to
text → LLM translation (streamed, previous phrases as context) → speech, sentence by
sentence. The rules live in core/translation.py; this module does the I/O.

A failed backend gives an `error` event for that phrase, and the session goes on.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import numpy as np

from ..audio.resample import StreamResampler
from ..backends.errors import BackendError
from ..backends.llm.base import TextDelta
from ..backends.registry import Backends
from ..backends.stt.base import TranscriptDone, TranscriptionOptions
from ..core.segmenter import SentenceSegmenter
from ..core.translation import Phrase, TranslationSession
from ..protocol import errors
from ..protocol import translation as wire
from ..protocol.errors import ProtocolError
from ..protocol.server_events import error as error_event
from .vad_scheduler import VadResult, scheduler_for

log = logging.getLogger(__name__)

Sink = Callable[[dict[str, Any]], None]
# The voice a target language is spoken with when the synthesizer has no voice of that name.
DEFAULT_VOICE = "alloy"


class TranslationDriver:
    """The event source a socket talks to (transports/websocket.py `EventSource`)."""

    def __init__(self, session: TranslationSession, backends: Backends) -> None:
        self.session = session
        self._backends = backends
        self._sinks: list[Sink] = []
        self._resampler = StreamResampler(wire.INPUT_RATE, 16_000, quality="LQ")
        self._vad_stream = backends.vad.new_stream()
        self._frame_ms = backends.vad.frame_samples * 1000 / backends.vad.sample_rate
        self._frames_seen = 0
        self._busy = False  # a phrase is being translated
        self._detecting = 0  # VAD submissions not yet answered
        self._closing = False  # `session.close` came: no more input
        self._phrases: asyncio.Queue[Phrase | None] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None
        self._started = {"input": False, "output": False}  # a phrase was sent on that stream
        self.closed = asyncio.Event()  # set once `session.close` has been answered

    # -- EventSource ------------------------------------------------------------------------

    def add_sink(self, sink: Sink) -> None:
        self._sinks.append(sink)

    def remove_sink(self, sink: Sink) -> None:
        with contextlib.suppress(ValueError):
            self._sinks.remove(sink)

    def reject(self, error: ProtocolError) -> None:
        self._emit(error_event(error.as_error()))

    def receive(self, event: Any) -> None:
        if isinstance(event, wire.SessionUpdate):
            try:
                self.session.update(event.session)
            except ProtocolError as error:
                error.event_id = event.event_id
                self.reject(error)
                return
            self._emit(wire.session_updated(self.session.snapshot()))
        elif isinstance(event, wire.AudioAppend):
            self._append(event)
        elif isinstance(event, wire.SessionClose) and not self._closing:
            self._closing = True  # the audio the VAD still holds is translated first
            if not self._detecting:
                self._finish_input()

    def _finish_input(self) -> None:
        if (phrase := self.session.flush()) is not None:
            self._phrases.put_nowait(phrase)
        self._phrases.put_nowait(None)  # the worker says session.closed after the rest

    # -- lifetime (the server's age limit and shutdown see these, server/lifecycle.py) -------

    @property
    def session_id(self) -> str:
        return self.session.id

    @property
    def responding(self) -> bool:
        """A phrase is being translated or waits to be: a shutdown lets it finish."""
        return self._busy or not self._phrases.empty()

    def cancel_responses(self) -> None:
        """The server ends the session: `close()`, which follows, stops the phrase under way."""

    def start(self) -> None:
        """Start translating; `session.created` is the transport's to send first."""
        self._worker = asyncio.create_task(self._work())

    async def _load_recognizer(self) -> None:
        """The translation recognizer (Whisper base beside tiny.en) loads on the first session,
        on a thread, while the first phrase is still being spoken. A failure is the first
        phrase's to report (its own load attempt raises it again)."""
        try:
            await asyncio.to_thread(self._backends.translation_recognizer.load)
        except Exception as failure:
            log.warning("the translation recognizer failed to load: %s", failure)

    async def close(self) -> None:
        scheduler_for(self._backends.vad).forget(self._vad_stream)
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker

    # -- input ------------------------------------------------------------------------------

    def _append(self, event: wire.AudioAppend) -> None:
        if self._closing:
            return
        try:
            raw = base64.b64decode(event.audio, validate=True)
        except ValueError:
            raw = b""
        if not raw or len(raw) % 2:
            self.reject(
                ProtocolError(
                    "Invalid 'audio': expected base64-encoded 24 kHz PCM16 mono audio "
                    "(a whole number of 16-bit samples).",
                    errors.INVALID_AUDIO,
                    "audio",
                    event_id=event.event_id,
                )
            )
            return
        self.append_audio(raw)

    def append_audio(self, raw: bytes) -> None:
        """24 kHz PCM16 mono, already checked (a WebRTC call's track, decoded)."""
        if self._closing:
            return
        pcm16k = self._resampler.process(np.frombuffer(raw, np.int16))
        self.session.audio(pcm16k.tobytes())
        if scheduler_for(self._backends.vad).submit(self._vad_stream, pcm16k, self._detected):
            self._detecting += 1

    def _detected(self, result: VadResult) -> None:
        self._detecting -= 1
        try:
            self._phrases_of(result)
        finally:
            if self._closing and not self._detecting:
                self._finish_input()

    def _phrases_of(self, result: VadResult) -> None:
        if isinstance(result, Exception):
            log.warning("voice activity detection failed: %s", result)
            self.reject(ProtocolError("Voice activity detection failed.", "vad_error"))
            return
        self._frames_seen += len(result)
        end_ms = self._frames_seen * self._frame_ms
        for phrase in self.session.frames(result, self._frame_ms, end_ms):
            self._phrases.put_nowait(phrase)

    # -- phrases, one at a time, in order ---------------------------------------------------

    async def _work(self) -> None:
        await self._load_recognizer()
        while (phrase := await self._phrases.get()) is not None:
            self._busy = True
            try:
                await self._translate(phrase)
            except BackendError as failure:
                log.warning("a phrase could not be translated: %s", failure)
                self._failed(failure.code, failure.message)
            except Exception:  # a bug on one phrase must not silence the rest of the session
                log.exception("a phrase could not be translated")
                self._failed(errors.SERVER_ERROR, "The phrase could not be translated.")
            finally:
                self._busy = False
        self._emit(wire.session_closed())
        self.closed.set()

    async def _translate(self, phrase: Phrase) -> None:
        session, elapsed = self.session, phrase.elapsed_ms
        options = TranscriptionOptions(model=None, language=session.source_language)
        source = ""
        recognizer = self._backends.translation_recognizer
        async for event in recognizer.transcribe(phrase.pcm16k, options):
            if isinstance(event, TranscriptDone):
                source = event.text.strip()
                detected = event.extra.get("language")
                if options.language is None and source and isinstance(detected, str):
                    session.heard_in(detected)
        if not source:
            return
        if session.transcription is not None:
            # Deltas are appended as they come: a phrase after the first starts with a space.
            self._emit(wire.input_transcript_delta(self._joined(source, "input"), elapsed))
        sentences = SentenceSegmenter()
        translation = ""
        async for piece in self._backends.llm.stream(session.translation_request(source)):
            if not isinstance(piece, TextDelta) or not piece.text:
                continue
            delta = piece.text if translation else self._joined(piece.text.lstrip(), "output")
            translation += piece.text
            self._emit(wire.output_transcript_delta(delta, elapsed))
            for sentence in sentences.push(piece.text):
                await self._speak(sentence, elapsed)
        for sentence in sentences.flush():
            await self._speak(sentence, elapsed)
        session.translated(source, translation.strip())

    def _joined(self, text: str, stream: str) -> str:
        """The first delta of a phrase, with a space before it if a phrase came before."""
        started, self._started[stream] = self._started[stream], True
        return f" {text}" if started else text

    async def _speak(self, sentence: str, elapsed: int) -> None:
        tts = self._backends.tts
        voice = tts.resolve_voice(self.session.language) or tts.resolve_voice(DEFAULT_VOICE)
        if voice is None:
            return
        async for chunk in tts.synthesize(sentence, voice):
            if chunk:
                audio = base64.b64encode(chunk).decode()
                self._emit(wire.output_audio_delta(audio, tts.sample_rate, elapsed))

    def _failed(self, code: str, message: str) -> None:
        error = {"type": errors.SERVER_ERROR, "code": code, "message": message, "param": None}
        self._emit(error_event({**error, "event_id": None}))

    def _emit(self, event: dict[str, Any]) -> None:
        for sink in list(self._sinks):
            sink(event)
